#!/usr/bin/env bash
# The CPU benchmark of record: qwen3-30b-a3b decode and prefill on every CPU
# backend, against this machine's measured read bandwidth. Writes
# bench/results/cpu.json. Run from the repository root after `make build`.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
"$BUILD/moe" bench --preset qwen3-30b-a3b --tokens 1,4,256 \
  --backend cpu-avx512,cpu-avx2,cpu-ref \
  --commit "$(git rev-parse --short HEAD)" --json bench/results/cpu.json
