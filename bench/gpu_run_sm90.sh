#!/usr/bin/env bash
# Runs on the H200 machine, from the repository root: builds libmoe with the
# Hopper backend (-DMOE_SM90_BACKEND=ON, sm_90a only), runs
# tests/gpu/test_cuda_sm90, optionally under the two sanitizers, and, where
# cuobjdump exists, bench/check_hgmma.sh. Logs go to $OUT.
#   bench/gpu_run_sm90.sh [test|san|all]
set -uo pipefail
MODE=${1:-test}
OUT=${OUT:-/tmp/moe-out}
mkdir -p "$OUT"
. bench/device_env.sh # .debs packages: SYS, LIBDIR, CFLAGS, loader path
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader

t0=$(date +%s)
GEN=""
command -v ninja >/dev/null && GEN="-G Ninja"
cmake -S . -B build-sm90-dev $GEN -DMOE_CUDA=ON -DMOE_SM90_BACKEND=ON \
  -DMOE_CUDA_ARCHS=90a -DCMOCKA_INCLUDE_DIR=$SYS/usr/include \
  -DCMOCKA_LIBRARY=$LIBDIR/libcmocka.so >"$OUT/build.log" 2>&1 &&
  cmake --build build-sm90-dev -j"$(nproc)" --target test_cuda_sm90 \
    >>"$OUT/build.log" 2>&1
rc=$?
echo "build rc=$rc in $(($(date +%s) - t0)) s"
if [ $rc -ne 0 ]; then tail -40 "$OUT/build.log"; exit 1; fi
grep -iE "warning|C7508" "$OUT/build.log" | head -10

t0=$(date +%s)
timeout ${TEST_TIMEOUT:-150} ./build-sm90-dev/tests/test_cuda_sm90 \
  >"$OUT/test.log" 2>&1
r=$?
tail -40 "$OUT/test.log"
echo "test_cuda_sm90 rc=$r ($(($(date +%s) - t0)) s; 124 = timed out: a hang)"

if [ "$MODE" = san ] || [ "$MODE" = all ]; then
  for tool in memcheck racecheck; do
    MOE_GPU_TEST_QUICK=1 timeout ${SAN_TIMEOUT:-150} compute-sanitizer \
      --tool $tool --error-exitcode 3 ./build-sm90-dev/tests/test_cuda_sm90 \
      >"$OUT/san_$tool.log" 2>&1
    echo "compute-sanitizer $tool rc=$?"
    tail -3 "$OUT/san_$tool.log"
  done
fi
if [ "$MODE" = all ] && command -v cuobjdump >/dev/null; then
  bench/check_hgmma.sh build-hgmma-dev 2>&1 | tail -8
fi
exit $r
