#!/usr/bin/env bash
# Builds libmoe once per set of extra CUDA flags and runs bench_moe.py on
# each build, on the GPU machine. For compile-time kernel shapes that have
# no runtime knob (e.g. gemv.cu's GV_S, GV_U, GV_MINB).
#   bench/sweep_builds.sh "NAME=FLAGS" ... -- [bench_moe.py args]
# Results: $OUT/sweep_NAME.json; a table of every build's rows last.
set -uo pipefail
OUT=${OUT:-/tmp/moe-out}
ARCH=${MOE_ARCH:-90a}
. bench/device_env.sh # .debs packages: SYS, LIBDIR, CFLAGS, loader path
builds=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do builds+=("$1"); shift; done
shift || true
for b in "${builds[@]}"; do
  name=${b%%=*} flags=${b#*=}
  dir=build-sweep-$name
  cmake -S . -B "$dir" -G Ninja -DMOE_CUDA=ON -DMOE_CUDA_ARCHS="$ARCH" \
    -DMOE_BUILD_TESTS=OFF -DCMAKE_CUDA_FLAGS="$flags" >"$OUT/build_$name.log" 2>&1 &&
    ninja -C "$dir" libmoe.so >>"$OUT/build_$name.log" 2>&1 ||
    { echo "build $name failed"; tail -20 "$OUT/build_$name.log"; continue; }
  python3 bench/bench_moe.py --lib "$PWD/$dir/libmoe.so" \
    --out "$OUT/sweep_$name.json" "$@" >"$OUT/bench_$name.log" 2>&1 ||
    { echo "bench $name failed"; tail -20 "$OUT/bench_$name.log"; }
done
python3 - "$OUT" "${builds[@]}" <<'PY'
import json, sys
out, names = sys.argv[1], [b.split("=", 1)[0] for b in sys.argv[2:]]
rows = {}
for n in names:
    try:
        for r in json.load(open("%s/sweep_%s.json" % (out, n)))["rows"]:
            rows.setdefault((r["preset"], r["tokens"], r["backend"]), {})[n] = r["us"]
    except OSError:
        pass
print("%-15s %6s %-10s" % ("preset", "M", "backend") +
      "".join("%10s" % n[:10] for n in names))
for (p, m, b), v in rows.items():
    print("%-15s %6d %-10s" % (p, m, b[:10]) +
          "".join("%10s" % (v.get(n, "-")) for n in names))
PY
