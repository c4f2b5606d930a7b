#!/usr/bin/env bash
# Checks that the cuda-sm90 GEMM kernels are on the wgmma path: builds the
# library's objects with -DMOE_SM90_BACKEND=ON for sm_90a only and reads the
# SASS of src/cuda_sm90/gemm_sm90.cu with cuobjdump. Every sm90_gemm_kernel
# instance must hold HGMMA (wgmma), UTMALDG (TMA loads) and USETMAXREG
# (register hand-over), no local-memory traffic (LDL/STL: spills), and its
# wgmmas must stay pipelined: ptxas serialises them (a wait for each wgmma,
# `WARPGROUP.DEPBAR.LE gsb0, 0x0`, after every HGMMA) when it cannot prove
# the pipeline safe, e.g. two wgmma shapes in branches of the K loop
# (measured 6-15 % slower; bench/NOTES.md cuda-sm90 v24); such an instance
# holds at least as many of those waits as HGMMAs.
# Exits 0 when all hold, 1 when one does not, 2 when it cannot check.
#   bench/check_hgmma.sh [build-dir]     (default build-hgmma)
#   HGMMA_OBJ_DIR=build bench/check_hgmma.sh   reads the sm_90a SASS of
#                         gemm_sm90.cu.o found under an existing build (the
#                         ctest sm90_sass) instead of building one
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-hgmma}

# cuobjdump (needs nvdisasm beside it or on PATH): the toolkit's, or the
# PyPI packages nvidia-cuda-cuobjdump + nvidia-cuda-nvdisasm.
find_tool() {
  local t=$1
  if [ -n "${CUOBJDUMP:-}" ] && [ "$t" = cuobjdump ]; then echo "$CUOBJDUMP"; return; fi
  if command -v "$t" >/dev/null 2>&1; then command -v "$t"; return; fi
  for d in /usr/local/cuda/bin; do
    [ -x "$d/$t" ] && { echo "$d/$t"; return; }
  done
  local py
  py=$(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, "cu13", "bin") for p in nvidia.__path__))' 2>/dev/null || true)
  for d in $py; do
    [ -x "$d/$t" ] && { echo "$d/$t"; return; }
  done
}
CUOBJ=$(find_tool cuobjdump)
DISASM=$(find_tool nvdisasm)
if [ -z "$CUOBJ" ] || [ -z "$DISASM" ]; then
  echo "check_hgmma: cuobjdump/nvdisasm not found (CUDA toolkit, or" \
    "pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)" >&2
  exit 2
fi
export PATH="$(dirname "$DISASM"):$PATH"
if [ -n "${HGMMA_OBJ_DIR:-}" ]; then
  BUILD=$HGMMA_OBJ_DIR
else
  mkdir -p "$BUILD"
  LOG="$BUILD/check_hgmma.log"
  cmake -S . -B "$BUILD" -DMOE_SM90_BACKEND=ON -DMOE_CUDA=ON \
    -DMOE_CUDA_ARCHS=90a -DMOE_BUILD_TESTS=OFF >"$LOG" 2>&1 || {
    tail -20 "$LOG"; exit 2; }
  cmake --build "$BUILD" --target moe_obj -j"$(nproc)" >>"$LOG" 2>&1 || {
    tail -20 "$LOG"; exit 2; }
fi
OBJ=$(find "$BUILD" -name 'gemm_sm90.cu.o' | head -1)
[ -n "$OBJ" ] || { echo "check_hgmma: gemm_sm90.cu.o not built" >&2; exit 2; }

SASS="$BUILD/gemm_sm90.sass"
"$CUOBJ" --dump-sass --gpu-architecture sm_90a "$OBJ" >"$SASS" || {
  echo "check_hgmma: $CUOBJ could not read $OBJ" >&2; exit 2; }
# Per function: HGMMA, UTMALDG, USETMAXREG, LDL/STL counts.
rc=0
awk '
  /Function : / { fn = $NF; fns[fn] = 1; next }
  fn != "" && /HGMMA/ { hg[fn]++ }
  fn != "" && /UTMALDG/ { tma[fn]++ }
  fn != "" && /USETMAXREG/ { reg[fn]++ }
  fn != "" && /[^A-Z](LDL|STL)[. ]/ { loc[fn]++ }
  fn != "" && /WARPGROUP\.DEPBAR\.LE gsb0, 0x0/ { dep0[fn]++ }
  END {
    bad = 0; n = 0
    for (f in fns) {
      if (f !~ /sm90_gemm_kernel/) continue
      n++
      printf "%-60s HGMMA %3d  UTMALDG %2d  USETMAXREG %d  LDL/STL %d  waits %d\n",
             f, hg[f], tma[f], reg[f], loc[f], dep0[f]
      if (hg[f] == 0 || tma[f] == 0 || reg[f] == 0 || loc[f] > 0) bad = 1
      if (dep0[f] >= hg[f]) { print "  wgmmas serialised: " f; bad = 1 }
    }
    if (n < 10) { print "expected 10 sm90_gemm_kernel instances (2 dtypes x (4 activations + GEMM2)), found " n; bad = 1 }
    exit bad
  }' "$SASS" || rc=$?
if [ $rc -eq 0 ]; then
  echo "check_hgmma: PASS ($(grep -c HGMMA "$SASS") HGMMA instructions in $OBJ)"
else
  echo "check_hgmma: FAIL (see $SASS)"
fi
exit $rc
