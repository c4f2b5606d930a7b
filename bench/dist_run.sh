#!/usr/bin/env bash
# Runs on a machine with 2 (or more) GPUs, from the repository root: builds
# libmoe with NCCL for the machine's arch, runs the multi-GPU tests and the
# multi-GPU benchmark, and writes $OUT/h200x2.json (copied to
# bench/results/h200x2.json when the tree is writable). Logs go to $OUT.
#   bench/dist_run.sh [test|bench|all]
# Environment: MOE_ARCH (default 90a), GPUS (default 2), PRESETS (default
# "deepseek-v3 qwen3-30b-a3b mixtral-8x7b"), OUT (default /tmp/moe-out).
set -uo pipefail
MODE=${1:-all}
OUT=${OUT:-/tmp/moe-out}
mkdir -p "$OUT"
ARCH=${MOE_ARCH:-90a}
GPUS=${GPUS:-2}
PRESETS=${PRESETS:-"deepseek-v3 qwen3-30b-a3b mixtral-8x7b"}
# This machine requires NVLink multicast (NVLS) off.
export NCCL_NVLS_ENABLE=0
. bench/device_env.sh # .debs packages: SYS, LIBDIR, CFLAGS, loader path
# NCCL: the system's, else the one PyTorch ships (its library has no
# unversioned link, so one is made beside it).
if [ -z "${NCCL_HOME:-}" ] && ! ldconfig -p | grep -q "libnccl.so "; then
  d=$(python3 -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__))' 2>/dev/null ||
    python3 -c 'import nvidia.nccl; print(list(nvidia.nccl.__path__)[0])' 2>/dev/null)
  if [ -n "$d" ] && [ -f "$d/include/nccl.h" ]; then
    mkdir -p /tmp/nccl/lib
    ln -sf "$d/include" /tmp/nccl/include
    ln -sf "$(ls "$d"/lib/libnccl.so* | head -1)" /tmp/nccl/lib/libnccl.so
    export NCCL_HOME=/tmp/nccl LD_LIBRARY_PATH=$d/lib:$LD_LIBRARY_PATH
  fi
fi
echo "NCCL_HOME=${NCCL_HOME:-system}"
nvidia-smi --query-gpu=name,driver_version --format=csv | tee "$OUT/gpus.txt"
nvidia-smi topo -m >"$OUT/topo.txt" 2>&1 || true

t0=$(date +%s)
cmake -S . -B build-dist-dev -G Ninja -DMOE_CUDA=ON -DMOE_NCCL=ON \
  -DMOE_CUDA_ARCHS="$ARCH" -DCMOCKA_INCLUDE_DIR=$SYS/usr/include \
  -DCMOCKA_LIBRARY=$LIBDIR/libcmocka.so >"$OUT/build.log" 2>&1 &&
  ninja -C build-dist-dev test_dist_gpu test_dist_host moe_cli \
    >>"$OUT/build.log" 2>&1
rc=$?
echo "build rc=$rc in $(($(date +%s) - t0)) s"
if [ $rc -ne 0 ]; then tail -40 "$OUT/build.log"; exit 1; fi

summary=""
if [ "$MODE" = test ] || [ "$MODE" = all ]; then
  ./build-dist-dev/tests/test_dist_host >"$OUT/test_host.log" 2>&1
  summary+="test_dist_host rc=$?\n"
  t0=$(date +%s)
  NCCL_DEBUG=${NCCL_DEBUG:-WARN} timeout 300 ./build-dist-dev/tests/test_dist_gpu \
    >"$OUT/test_gpu.log" 2>&1
  r=$?
  grep -E "rel err|SKIP|PASSED|FAILED|rank|Error|error" "$OUT/test_gpu.log" | tail -40
  summary+="test_dist_gpu rc=$r ($(($(date +%s) - t0)) s)\n"
fi
if [ "$MODE" = bench ] || [ "$MODE" = all ]; then
  commit=${MOE_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo "")}
  parts=()
  for p in $PRESETS; do
    # Decode: many launches per repetition; prefill: one.
    timeout 240 ./build-dist-dev/moe bench --gpus "$GPUS" --preset "$p" \
      --parallel tp,ep,ep-a2a --tokens 1,8,16,32,64,128,256 --launches 10 \
      --commit "$commit" --json "$OUT/dist_${p}_decode.json" \
      2>>"$OUT/bench.log" | tee -a "$OUT/bench.txt"
    summary+="bench $p decode rc=${PIPESTATUS[0]}\n"
    parts+=("$OUT/dist_${p}_decode.json")
    timeout 300 ./build-dist-dev/moe bench --gpus "$GPUS" --preset "$p" \
      --parallel tp,ep,ep-a2a --tokens 4096,16384 --launches 1 \
      --commit "$commit" --json "$OUT/dist_${p}_prefill.json" \
      2>>"$OUT/bench.log" | tee -a "$OUT/bench.txt"
    summary+="bench $p prefill rc=${PIPESTATUS[0]}\n"
    parts+=("$OUT/dist_${p}_prefill.json")
  done
  # One file: the first part's header, every part's rows.
  python3 - "$OUT/h200x2.json" "${parts[@]}" <<'PY'
import json, sys
out, parts = sys.argv[1], sys.argv[2:]
doc, rows = None, []
for p in parts:
    try:
        d = json.load(open(p))
    except Exception as e:
        print("skipping", p, e)
        continue
    if doc is None:
        doc = {k: v for k, v in d.items() if k not in ("rows", "preset")}
    rows += d["rows"]
if doc is not None:
    doc["nccl_nvls_enable"] = 0
    doc["target"] = "deepseek-v3 ep on 2 GPUs at 64-256 tokens <= 0.6 x one GPU"
    doc["rows"] = rows
    json.dump(doc, open(out, "w"), indent=1)
    for r in rows:
        if r["preset"] == "deepseek-v3" and r["mode"].startswith("ep") \
                and 64 <= r["tokens"] <= 256:
            print("target %-7s M=%-4d ratio %.2f %s" % (r["mode"], r["tokens"],
                  r["ratio_vs_one_gpu"],
                  "met" if r["ratio_vs_one_gpu"] <= 0.6 else "NOT met"))
PY
  cp "$OUT/h200x2.json" bench/results/h200x2.json 2>/dev/null || true
fi
printf "%b" "$summary" | tee "$OUT/summary.txt"
