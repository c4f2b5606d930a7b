# Checkpoint readers (safetensors, config.json) and the layer loader.
set(MOE_IO_SOURCES
  src/io/safetensors.c
  src/io/st_writer.c
  src/io/checkpoint.c
  src/io/dequant.c
  src/io/model_config.c
  src/io/families.c
  src/io/layer_load.c
)
set(MOE_IO_LIBS jansson)
