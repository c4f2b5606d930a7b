#!/usr/bin/env bash
# Bounded fuzzing of the file parsers with libFuzzer + ASan + UBSan (leak
# checking on): the safetensors header reader and the config.json reader,
# MOE_FUZZ_SECONDS each (default 35). Fails on a crash, a leak, a sanitizer
# report or a build error. Needs clang and its runtime (scripts/setup.sh
# installs libclang-rt-<version>-dev). Committed seeds are read from
# tests/fuzz/corpus/<target>/; new inputs go to fuzz-out/, never into the
# repository.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${MOE_FUZZ_SECONDS:-35}
OUT=${MOE_FUZZ_OUT:-fuzz-out}
CC=${MOE_FUZZ_CC:-}
if [ -z "$CC" ]; then
  for c in clang clang-14 clang-15 clang-16; do
    if command -v "$c" >/dev/null 2>&1; then CC=$c; break; fi
  done
fi
if [ -z "$CC" ]; then
  echo "fuzz: no clang found (run scripts/setup.sh)" >&2
  exit 1
fi

mkdir -p "$OUT"
FLAGS=(-std=c11 -g -O1 -fno-omit-frame-pointer
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -Iinclude -Isrc)
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n){return 0;}' \
  >"$OUT/probe.c"
if ! "$CC" "${FLAGS[@]}" "$OUT/probe.c" -o "$OUT/probe" 2>"$OUT/probe.log"; then
  cat "$OUT/probe.log" >&2
  echo "fuzz: $CC cannot link libFuzzer (install libclang-rt-<version>-dev;" \
       "scripts/setup.sh does)" >&2
  exit 1
fi

declare -A SOURCES=(
  [st_header]="src/io/safetensors.c src/io/dequant.c src/convert.c"
  [model_config]="src/io/model_config.c"
)

status=0
for target in st_header model_config; do
  bin="$OUT/fuzz_$target"
  # shellcheck disable=SC2086
  "$CC" "${FLAGS[@]}" "tests/fuzz/fuzz_$target.c" ${SOURCES[$target]} \
    -ljansson -lm -o "$bin"
  work="$OUT/corpus/$target"
  mkdir -p "$work" "$OUT/artifacts/$target"
  log="$OUT/$target.log"
  echo "fuzz: $target for ${SECONDS_EACH}s"
  if ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
     UBSAN_OPTIONS=print_stacktrace=1 \
     "$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=4096 \
       -max_len=65536 -print_final_stats=1 -dict="tests/fuzz/$target.dict" \
       -artifact_prefix="$OUT/artifacts/$target/" \
       "$work" "tests/fuzz/corpus/$target" >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" |
           grep -o '[0-9]*$' || echo '?')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    echo "fuzz: $target ok: $runs executions in ${SECONDS_EACH}s ($cov)"
  else
    echo "fuzz: $target FAILED; log tail:" >&2
    tail -60 "$log" >&2
    ls "$OUT/artifacts/$target" >&2 || true
    status=1
  fi
done
exit $status
