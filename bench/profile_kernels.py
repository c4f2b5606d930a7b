#!/usr/bin/env python3
"""Per-kernel view of a few layer calls, for `ncu` (one forward per case,
after one warm-up). Run: ncu --clock-control none --metrics
gpu__time_duration.sum python3 bench/profile_kernels.py --lib ..."""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_moe as B  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--lib", default="build/libmoe.so")
ap.add_argument("--backend", default="cuda-mma",
                help="as bench_moe.py --backends (one name)")
ap.add_argument("--cases", default="qwen3-30b-a3b:1,qwen3-30b-a3b:16,"
                "deepseek-v3:1,mixtral-8x7b:256,qwen3-30b-a3b:4096")
ap.add_argument("--routed", action="store_true",
                help="caller routing (moe_forward_routed): no routing kernels")
a = ap.parse_args()
moe = B.Moe(a.lib)
for case in a.cases.split(","):
    name, M = case.split(":")
    M = int(M)
    p = B.PRESETS[name]
    w = B.make_weights(p)
    h = moe.layer(p, w, max(M, 16), a.backend)
    x = torch.randn(M, p["H"], dtype=torch.bfloat16, device="cuda")
    lg = torch.randn(M, p["E"], device="cuda")
    out = torch.empty_like(x)
    if a.routed:
        w_, ids = torch.topk(torch.softmax(lg, -1), p["k"], -1)
        ids, w_ = ids.to(torch.int32).contiguous(), w_.contiguous()

    def fwd():
        if not a.routed:
            return moe.forward(h, x, lg, out)
        st = moe.lib.moe_forward_routed(
            h, B.ptr(x), B.ptr(ids), B.ptr(w_), M, B.ptr(out),
            B.C.c_void_p(torch.cuda.current_stream().cuda_stream))
        assert st == 0, st
    torch.cuda.nvtx.range_push(case)
    print("=== warm-up", case, flush=True)
    fwd()
    torch.cuda.synchronize()
    print("=== case", case, flush=True)
    fwd()
    torch.cuda.synchronize()
    torch.cuda.nvtx.range_pop()
    moe.lib.moe_layer_destroy(h)
    del w
    torch.cuda.empty_cache()
