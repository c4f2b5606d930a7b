#!/usr/bin/env bash
# Builds libmoe and the two GPU tests for sm_90a on this machine (no GPU
# needed), once per "NAME=EXTRA CUDA FLAGS", and packs them into
# build-carry/bins.tgz, which bench/carried_run.sh unpacks on the GPU
# machine: the device's minutes go to tests and measurements, not to
# compiling. Run the device command with carry [".debs", "build-carry"].
#   bench/carry_build.sh "base=" "st2=-DSM90_STAGES=2" ...
# Build folders: $CARRY_BUILD_ROOT/moe-carry-NAME (default /tmp), kept
# between calls so that a second run rebuilds only what changed.
set -euo pipefail
ARCH=${MOE_ARCH:-90a}
ROOT=${CARRY_BUILD_ROOT:-/tmp}
[ $# -gt 0 ] || { echo "usage: $0 NAME=FLAGS ..." >&2; exit 2; }
pk=$(mktemp -d)
trap 'rm -rf "$pk"' EXIT
for b in "$@"; do
  name=${b%%=*} flags=${b#*=}
  dir=$ROOT/moe-carry-$name
  echo "== $name: $flags"
  cmake -S . -B "$dir" -G Ninja -DMOE_CUDA=ON -DMOE_CUDA_ARCHS="$ARCH" \
    -DCMAKE_CUDA_FLAGS="$flags" >"$dir.log" 2>&1
  ninja -C "$dir" libmoe.so test_cuda_mma test_cuda_sm90 >>"$dir.log" 2>&1 ||
    { tail -20 "$dir.log"; exit 1; }
  mkdir -p "$pk/$name"
  cp -a "$dir"/libmoe.so* "$dir/tests/test_cuda_mma" \
    "$dir/tests/test_cuda_sm90" "$pk/$name/"
done
mkdir -p build-carry
tar czf build-carry/bins.tgz -C "$pk" .
ls -l build-carry/bins.tgz
