#!/usr/bin/env bash
# Runs on the GPU machine: where one kernel's warps stall, per SASS
# instruction. Builds libmoe with -lineinfo, profiles the N-th launch of
# the kernels matching REGEX in profile_kernels.py's cases with ncu's
# source counters, and prints the instructions with the most stall samples.
#   bench/profile_sass.sh REGEX SKIP CASES [BACKEND] [extra CUDA flags]
# With LIB=path/libmoe.so (a -lineinfo build carried by
# bench/carry_build.sh "prof=-lineinfo"), nothing is built here.
# Logs and the per-instruction CSV go to $OUT.
set -uo pipefail
RE=$1 SKIP=$2 CASES=$3 BACKEND=${4:-cuda-sm90} FLAGS=${5:-}
OUT=${OUT:-/tmp/moe-out}
mkdir -p "$OUT"
. bench/device_env.sh # .debs packages: SYS, LIBDIR, CFLAGS, loader path
lib=${LIB:-}
if [ -z "$lib" ]; then
  dir=build-lineinfo
  cmake -S . -B $dir -G Ninja -DMOE_CUDA=ON -DMOE_CUDA_ARCHS=${MOE_ARCH:-90a} \
    -DMOE_BUILD_TESTS=OFF -DCMAKE_CUDA_FLAGS="-lineinfo $FLAGS" \
    -DCMAKE_C_FLAGS="-I$SYS/usr/include" \
    >"$OUT/build_lineinfo.log" 2>&1 && ninja -C $dir libmoe.so \
    >>"$OUT/build_lineinfo.log" 2>&1 || { tail -20 "$OUT/build_lineinfo.log"; exit 1; }
  lib=$PWD/$dir/libmoe.so
fi
libdir=$(dirname "$lib")
export LD_LIBRARY_PATH=$libdir:$LD_LIBRARY_PATH
rep=/tmp/prof_sass
rm -f $rep.ncu-rep
timeout 300 ncu --clock-control none --set full --import-source yes \
  -k regex:"$RE" --launch-skip "$SKIP" --launch-count 1 -o $rep \
  python3 bench/profile_kernels.py --lib "$lib" \
  --backend "$BACKEND" --cases "$CASES" >"$OUT/ncu_sass.log" 2>&1
echo "ncu rc=$?"
ncu -i $rep.ncu-rep --page source --print-source sass --csv \
  >"$OUT/sass.csv" 2>"$OUT/sass.err"
echo "export rc=$? ($(wc -l <"$OUT/sass.csv") lines)"
ncu -i $rep.ncu-rep --page details --section SpeedOfLight \
  --section WarpStateStats | grep -E "Duration|Throughput|Stall|Frequency" |
  head -24
# the clocks under load and the tensor pipe's activity
ncu -i $rep.ncu-rep --page raw --csv 2>/dev/null | python3 -c '
import csv, re, sys
r = list(csv.reader(sys.stdin))
if len(r) >= 3:
    for i, n in enumerate(r[0]):
        if re.search(r"pipe_tensor.*(active|cycles)|elapsed.avg.per_second|"
                     r"sm__throughput.avg.pct|issue_active.avg.pct", n):
            print("%-70s %s %s" % (n, r[2][i], r[1][i]))
'
python3 - "$OUT/sass.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
hdr = next((i for i, r in enumerate(rows) if "Source" in r), None)
if hdr is None:
    print("no Source column"); sys.exit()
h = rows[hdr]
col = next((i for i, c in enumerate(h) if c.startswith("Warp Stall Sampling (All")), None)
src = h.index("Source")
if col is None:
    print("columns:", h[:12]); sys.exit()
body = [r for r in rows[hdr + 1:] if len(r) > col]
def num(x):
    try: return float(x.replace(",", ""))
    except ValueError: return 0.0
tot = sum(num(r[col]) for r in body) or 1
print("total stall samples %.0f" % tot)
for r in sorted(body, key=lambda r: -num(r[col]))[:45]:
    print("%5.1f%%  %s" % (100 * num(r[col]) / tot, r[src][:110]))
PY
