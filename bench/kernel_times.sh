#!/usr/bin/env bash
# Runs on the GPU machine: the time of each kernel of one layer call, per
# case (ncu, each kernel alone, clocks not locked; bench/kernel_times.py
# finds the measured forward in the log).
#   bench/kernel_times.sh LIB [BACKEND] [CASES]   CASES: preset:M,...
# Logs go to $OUT/kernels_<preset>_<M>.log.
set -uo pipefail
LIB=$1 BACKEND=${2:-cuda-sm90} CASES=${3:-qwen3-30b-a3b:4096}
OUT=${OUT:-/tmp/moe-out}
mkdir -p "$OUT"
. bench/device_env.sh # .debs packages: SYS, LIBDIR, CFLAGS, loader path
libdir=$(dirname "$LIB")
export LD_LIBRARY_PATH=$libdir:$LD_LIBRARY_PATH
for c in ${CASES//,/ }; do
  log="$OUT/kernels_${c//:/_}.log"
  timeout 300 ncu --clock-control none --metrics gpu__time_duration.sum \
    python3 bench/profile_kernels.py --lib "$LIB" --backend "$BACKEND" \
    --cases "$c" >"$log" 2>&1
  echo "== $c ($BACKEND): ncu rc=$?"
  python3 bench/kernel_times.py "$log"
done
