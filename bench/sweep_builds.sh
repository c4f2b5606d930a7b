#!/usr/bin/env bash
# Builds libmoe once per set of extra CUDA flags and runs bench_moe.py on
# each build, on the GPU machine. For compile-time kernel shapes or paths
# that have no runtime knob (e.g. gemv.cu's GV_S, GV_U, GV_MINB, or
# -DMMA_DIRECT_EPI).
#   [PASSES=n] bench/sweep_builds.sh "NAME=FLAGS" ... -- [bench_moe.py args]
# With PASSES > 1 (default 1) the builds are benchmarked n times, the
# order reversed on every other pass, so that drift within the session
# does not favour one build; the table shows the fastest pass of each
# build and, for two or more builds, each one's ratio to the first.
# Results: $OUT/sweep_NAME.json (pass 1), $OUT/sweep_NAME_pP.json (pass P
# > 1); the table last.
set -uo pipefail
OUT=${OUT:-/tmp/moe-out}
ARCH=${MOE_ARCH:-90a}
PASSES=${PASSES:-1}
. bench/device_env.sh # .debs packages: SYS, LIBDIR, CFLAGS, loader path
builds=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do builds+=("$1"); shift; done
shift || true
ok=()
for b in "${builds[@]}"; do
  name=${b%%=*} flags=${b#*=}
  dir=build-sweep-$name
  cmake -S . -B "$dir" -G Ninja -DMOE_CUDA=ON -DMOE_CUDA_ARCHS="$ARCH" \
    -DMOE_BUILD_TESTS=OFF -DCMAKE_CUDA_FLAGS="$flags" >"$OUT/build_$name.log" 2>&1 &&
    ninja -C "$dir" libmoe.so >>"$OUT/build_$name.log" 2>&1 ||
    { echo "build $name failed"; tail -20 "$OUT/build_$name.log"; continue; }
  ok+=("$name")
done
for ((p = 1; p <= PASSES; p++)); do
  order=("${ok[@]}")
  if ((p % 2 == 0)); then # reversed
    order=()
    for ((i = ${#ok[@]} - 1; i >= 0; i--)); do order+=("${ok[i]}"); done
  fi
  for name in "${order[@]}"; do
    out="$OUT/sweep_$name.json"
    [ "$p" -gt 1 ] && out="$OUT/sweep_${name}_p$p.json"
    python3 bench/bench_moe.py --lib "$PWD/build-sweep-$name/libmoe.so" \
      --out "$out" "$@" >"$OUT/bench_$name.log" 2>&1 ||
      { echo "bench $name (pass $p) failed"; tail -20 "$OUT/bench_$name.log"; }
  done
done
python3 bench/sweep_table.py "$OUT" "$PASSES" "${builds[@]%%=*}"
