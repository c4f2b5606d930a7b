#!/usr/bin/env bash
# Runs on the GPU machine, from the repository root, on the builds that
# bench/carry_build.sh packed into build-carry/bins.tgz. What it runs is
# set by the environment (each a space-separated list of build names):
#   TEST="a b"    test_cuda_mma and test_cuda_sm90 of each build
#   SAN="a"       compute-sanitizer memcheck on both tests and racecheck on
#                 test_cuda_sm90 (RACE_MMA=1: on test_cuda_mma too), quick set
#   AB="a b"      bench_moe.py on each build, PASSES times (default 2) in
#                 alternating order, with the arguments in AB_ARGS; then
#                 sweep_table.py's table (fastest pass, ratios to the first)
#   TABLE="a"     the full table (three backends and the peers) to h200.json
#   KT="a"        bench/kernel_times.sh on that build: each kernel's time
#                 in one call of KT_CASES (default qwen3-30b-a3b:16384),
#                 backend KT_BACKEND (default cuda-sm90)
#   PROF="a"      bench/profile_sass.sh on that build (carried with
#                 -lineinfo) with PROF_RE, PROF_SKIP, PROF_CASES: where the
#                 kernel's warps stall, per SASS instruction
# Logs go to /tmp; to $OUT (at most 8 files come back): tests.log,
# sweep_*.json, h200.json. A short summary prints last.
set -uo pipefail
OUT=${OUT:-/tmp/moe-out}
mkdir -p "$OUT"
. bench/device_env.sh # .debs packages: SYS, LIBDIR, CFLAGS, loader path
B=/tmp/moe-bins
rm -rf "$B"
mkdir -p "$B"
if ! tar xzf build-carry/bins.tgz -C "$B"; then
  echo "no build-carry/bins.tgz (bench/carry_build.sh)"
  exit 1
fi
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
sum=""
lib() { echo "$B/$1"; }
for n in ${TEST:-}; do
  for t in test_cuda_mma test_cuda_sm90; do
    t0=$(date +%s)
    LD_LIBRARY_PATH=$(lib "$n"):$LD_LIBRARY_PATH timeout 300 \
      "$(lib "$n")/$t" >"/tmp/${n}_$t.log" 2>&1
    r=$?
    worst=$(grep -oE 'rel err [0-9.e+-]+' "/tmp/${n}_$t.log" |
      awk '{print $3}' | sort -g | tail -1)
    sum+="$n $t rc=$r ($(($(date +%s) - t0)) s): $(grep -c 'rel err' \
      "/tmp/${n}_$t.log") case lines, worst ${worst:-none}\n"
    grep -E "FAILED|rror" "/tmp/${n}_$t.log" | head -5
  done
done
for n in ${SAN:-}; do
  runs="test_cuda_mma:memcheck test_cuda_sm90:memcheck test_cuda_sm90:racecheck"
  [ -n "${RACE_MMA:-}" ] && runs+=" test_cuda_mma:racecheck"
  for x in $runs; do
    t=${x%%:*} tool=${x#*:} t0=$(date +%s)
    skip=0
    [ "$tool" = racecheck ] && skip=1 # the tuned-crossover test: minutes
    MOE_GPU_TEST_QUICK=1 MOE_GPU_TEST_SKIP_TUNE=$skip \
      LD_LIBRARY_PATH=$(lib "$n"):$LD_LIBRARY_PATH \
      timeout 200 compute-sanitizer --tool "$tool" --error-exitcode 3 \
      "$(lib "$n")/$t" >"/tmp/${n}_${t}_$tool.log" 2>&1
    r=$?
    sum+="$n $t $tool rc=$r ($(($(date +%s) - t0)) s): $(grep -E \
      'ERROR SUMMARY|RACECHECK SUMMARY' "/tmp/${n}_${t}_$tool.log" | tail -1)\n"
  done
done
cat /tmp/*_test_cuda_*.log >"$OUT/tests.log" 2>/dev/null
if [ -n "${AB:-}" ]; then
  read -r -a names <<<"$AB"
  P=${PASSES:-2}
  for ((p = 1; p <= P; p++)); do
    order=("${names[@]}")
    if ((p % 2 == 0)); then
      order=()
      for ((i = ${#names[@]} - 1; i >= 0; i--)); do order+=("${names[i]}"); done
    fi
    for n in "${order[@]}"; do
      s=""
      ((p > 1)) && s="_p$p"
      # shellcheck disable=SC2086 # AB_ARGS is a list of arguments
      LD_LIBRARY_PATH=$(lib "$n"):$LD_LIBRARY_PATH timeout 300 python3 \
        bench/bench_moe.py --lib "$(lib "$n")/libmoe.so" \
        --out "$OUT/sweep_$n$s.json" ${AB_ARGS:-} >"/tmp/bench_$n$s.log" 2>&1
      sum+="bench $n pass $p rc=$?\n"
    done
  done
  python3 bench/sweep_table.py "$OUT" "$P" "${names[@]}"
fi
for n in ${TABLE:-}; do
  PYTHONUNBUFFERED=1 LD_LIBRARY_PATH=$(lib "$n"):$LD_LIBRARY_PATH \
    timeout 400 python3 bench/bench_moe.py --lib "$(lib "$n")/libmoe.so" \
    --out "$OUT/h200.json" --backends cuda-mma,cuda-sm90,cuda-sm90-gemm \
    >"/tmp/table_$n.log" 2>&1
  sum+="table $n rc=$?\n"
  tail -4 "/tmp/table_$n.log"
done
for n in ${KT:-}; do
  OUT=$OUT timeout 500 bash bench/kernel_times.sh "$(lib "$n")/libmoe.so" \
    "${KT_BACKEND:-cuda-sm90}" "${KT_CASES:-qwen3-30b-a3b:16384}" \
    >"/tmp/kt_$n.log" 2>&1
  sum+="kernel times $n rc=$?\n"
  cat "/tmp/kt_$n.log"
done
for n in ${PROF:-}; do
  LIB=$(lib "$n")/libmoe.so timeout 400 bash bench/profile_sass.sh \
    "${PROF_RE:-sm90_gemm}" "${PROF_SKIP:-1}" \
    "${PROF_CASES:-deepseek-v3:4096}" >"$OUT/prof_$n.log" 2>&1
  sum+="profile $n rc=$?\n"
  head -60 "$OUT/prof_$n.log"
done
printf '\n==== summary ====\n%b' "$sum"
