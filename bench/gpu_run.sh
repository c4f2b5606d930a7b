#!/usr/bin/env bash
# Runs on the GPU machine, from the repository root: builds libmoe for the
# machine's arch only, runs the GPU tests, the two sanitizers, the benchmark
# and (when present) the Python binding's tests. Logs go to $OUT.
#   bench/gpu_run.sh [test|bench|all] [bench args...]
set -uo pipefail
MODE=${1:-all}
shift || true
OUT=${OUT:-/tmp/moe-out}
mkdir -p "$OUT"
ARCH=${MOE_ARCH:-90a}
. bench/device_env.sh # .debs packages: SYS, LIBDIR, CFLAGS, loader path
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv \
  | tee /tmp/gpu.txt

t0=$(date +%s)
cmake -S . -B build-dev -G Ninja -DMOE_CUDA=ON -DMOE_CUDA_ARCHS="$ARCH" \
  -DCMOCKA_INCLUDE_DIR=$SYS/usr/include \
  -DCMOCKA_LIBRARY=$LIBDIR/libcmocka.so >/tmp/build.log 2>&1 &&
  ninja -C build-dev libmoe.so test_cuda_mma test_cuda_sm90 >>/tmp/build.log 2>&1
rc=$?
echo "build rc=$rc in $(($(date +%s) - t0)) s"
if [ $rc -ne 0 ]; then tail -40 /tmp/build.log; exit 1; fi

summary=""
TESTS=${TESTS:-"test_cuda_mma test_cuda_sm90"}
if [ "$MODE" = test ] || [ "$MODE" = all ]; then
  for t in $TESTS; do
    t0=$(date +%s)
    timeout 200 ./build-dev/tests/$t >"$OUT/$t.log" 2>&1
    r=$?
    grep -E "graph|SKIP|PASSED|FAILED|mismatch|Error|error" "$OUT/$t.log" |
      tail -8
    summary+="$t rc=$r ($(($(date +%s) - t0)) s)\n"
  done
fi
if [ "$MODE" = bench ] || [ "$MODE" = all ]; then
  PYTHONUNBUFFERED=1 python3 bench/bench_moe.py --lib $PWD/build-dev/libmoe.so \
    --out "$OUT/h200.json" "$@" 2>&1 | tee "$OUT/bench.log" | tail -60
  summary+="bench rc=$?\n"
fi
if { [ "$MODE" = test ] || [ "$MODE" = all ]; } && [ -z "${NO_SAN:-}" ]; then
  for t in $TESTS; do
    for tool in memcheck racecheck; do
      t0=$(date +%s)
      MOE_GPU_TEST_QUICK=1 timeout ${SAN_TIMEOUT:-100} compute-sanitizer \
        --tool $tool --error-exitcode 3 ./build-dev/tests/$t \
        >"$OUT/san_${t}_$tool.log" 2>&1
      r=$?
      summary+="$t compute-sanitizer $tool rc=$r ($(($(date +%s) - t0)) s): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/san_${t}_$tool.log" | tail -1)\n"
    done
  done
fi
if [ "$MODE" = all ] && [ -z "${NO_NCU:-}" ] && command -v ncu >/dev/null; then
  # per-kernel durations of a few cases (second forward of each)
  timeout 150 ncu --clock-control none --metrics gpu__time_duration.sum \
    -k regex:"grouped|route|permute|combine|act_reduce|decode|gemv" \
    python3 bench/profile_kernels.py --lib $PWD/build-dev/libmoe.so \
    >"$OUT/ncu.log" 2>&1
  summary+="ncu rc=$?\n"
  grep -E "^  [a-z_]+.*\(|gpu__time_duration|=== case" "$OUT/ncu.log" | tail -80
fi
if [ "$MODE" = py ] || [ "$MODE" = all ]; then
  if [ -d tests/python ] && [ -d python/moe ]; then
    MOE_LIBRARY=$PWD/build-dev/libmoe.so PYTHONPATH=$PWD/python \
      timeout 300 python3 -m pytest tests/python -q >"$OUT/pytest.log" 2>&1
    summary+="pytest tests/python rc=$?: $(tail -1 "$OUT/pytest.log")\n"
  fi
fi
printf "\n==== summary ====\n$summary"
