#!/usr/bin/env bash
# one-off device run: interleaved rounds; dynamic walk twins; placement
set -uo pipefail
OUT=${OUT:-/tmp/moe-out}; mkdir -p "$OUT"
. bench/device_env.sh
B=/tmp/moe-bins; rm -rf $B; mkdir -p $B; tar xzf build-carry/bins.tgz -C $B
L=$B/dyn; export LD_LIBRARY_PATH=$L:$LD_LIBRARY_PATH
nvidia-smi --query-gpu=name,clocks.sm --format=csv,noheader
V="--variant b2=cuda-sm90:MOE_SM90_GAP_Y=0 --variant dyn=cuda-sm90:MOE_SM90_DYN=1 --variant dyn2=cuda-sm90:MOE_SM90_DYN=1,MOE_SM90_GAP_Y=0"
V+=" --variant ds=cuda-sm90:MOE_SM90_DYN=1,MOE_SM90_IDLE_SKIP=1"
t0=$(date +%s)
timeout 200 python3 bench/bench_moe.py --lib $L/libmoe.so --out $OUT/dyn.json --no-peers --rounds 7 $V \
  --backends cuda-sm90,b2,dyn,dyn2,ds --presets nemotron3-nano,qwen3-30b-a3b,mixtral-8x7b,gpt-oss-120b \
  --tokens 4096,16384 > $OUT/bench_dyn.log 2>&1; echo "bench dyn rc=$? $(( $(date +%s)-t0 ))s"
timeout 120 python3 bench/bench_moe.py --lib $L/libmoe.so --out $OUT/dyn_ds.json --no-peers --rounds 7 $V \
  --backends cuda-sm90,b2,dyn,dyn2 --presets deepseek-v3 \
  --tokens 4096,16384 > $OUT/bench_dyn_ds.log 2>&1; echo "bench dyn ds rc=$? $(( $(date +%s)-t0 ))s"
G="--variant x1=cuda-sm90:MOE_SM90_GAP_Y=0 --variant a64k=cuda-sm90:MOE_SM90_GAP_ACT=65536 --variant a2m=cuda-sm90:MOE_SM90_GAP_ACT=2097152"
G+=" --variant y64k=cuda-sm90:MOE_SM90_GAP_Y=65536 --variant xp64k=cuda-sm90:MOE_SM90_GAP_XP=65536 --variant apad=cuda-sm90:MOE_SM90_ACT_PAD=64"
timeout 150 python3 bench/bench_moe.py --lib $L/libmoe.so --out $OUT/gap.json --no-peers --rounds 7 $G \
  --backends cuda-sm90,x1,a64k,a2m,y64k,xp64k,apad --presets mixtral-8x7b,nemotron3-nano --tokens 1024,4096 > $OUT/bench_gap.log 2>&1; echo "bench gap rc=$? $(( $(date +%s)-t0 ))s"
python3 - <<'PY'
import json,os,collections
O=os.environ.get('OUT','/tmp/moe-out')
for f in ('dyn.json','dyn_ds.json','gap.json'):
    try: d=json.load(open(os.path.join(O,f)))
    except Exception as e: print(f,e); continue
    t=collections.OrderedDict()
    for r in d['rows']: t.setdefault((r['preset'],r['tokens']),{})[r['backend']]=(r['us'],r.get('rel_err_vs_torch'))
    for k,v in t.items():
        b=v.get('cuda-sm90')[0]
        print(f[:4],k[0][:8],k[1],' '.join('%s %.0f(%.3f)'%(n,u[0],u[0]/b) for n,u in v.items()), 'err %.4f'%max(u[1] or 0 for u in v.values()))
PY
