# The multi-GPU layer (src/dist). Paths relative to the root.
# The host parts always build: their argument checks and helpers (expert
# placement, TP weight slicing, buffer arithmetic) work without NCCL, and
# without NCCL the layer's functions fail with MOE_ERR_UNSUPPORTED. With
# CUDA and NCCL found (MOE_NCCL AUTO or ON), the NCCL side and the EP_A2A
# kernels join and NCCL is linked. Defines MOE_HAVE_NCCL, MOE_DIST_SOURCES,
# MOE_DIST_LIBS, NCCL_INCLUDE_DIR.
set(MOE_NCCL "AUTO" CACHE STRING "Build the multi-GPU layer with NCCL: AUTO, ON or OFF")
set(MOE_HAVE_NCCL OFF)
set(MOE_DIST_LIBS "")
set(MOE_DIST_SOURCES src/dist/dist_host.c src/dist/dist_layer.c)
if(MOE_HAVE_CUDA AND NOT MOE_NCCL STREQUAL "OFF")
  find_path(NCCL_INCLUDE_DIR nccl.h
            HINTS $ENV{NCCL_HOME}/include ${CUDAToolkit_INCLUDE_DIRS})
  find_library(NCCL_LIBRARY nccl
               HINTS $ENV{NCCL_HOME}/lib ${CUDAToolkit_LIBRARY_DIR})
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    set(MOE_HAVE_NCCL ON)
    list(APPEND MOE_DIST_SOURCES src/dist/dist_nccl.c src/dist/a2a.cu)
    set(MOE_DIST_LIBS ${NCCL_LIBRARY})
  endif()
endif()
if(MOE_NCCL STREQUAL "ON" AND NOT MOE_HAVE_NCCL)
  message(FATAL_ERROR "MOE_NCCL=ON but CUDA or NCCL (nccl.h, libnccl) was not found")
endif()
message(STATUS "moe: multi-GPU (NCCL) ${MOE_HAVE_NCCL}")
