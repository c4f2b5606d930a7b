#!/usr/bin/env python3
"""Benchmark of the whole MoE layer (router logits -> output) on a CUDA GPU.

moe (libmoe.so through ctypes and the public API of include/moe.h) against
two PyTorch peers on the same machine, all three replayed from CUDA graphs:
  torch_grouped_mm  sort by expert, torch._grouped_mm, activation,
                    torch._grouped_mm, weighted scatter (index_add_)
  torch_loop        a per-expert loop of torch.matmul (dispatch indices fixed
                    at capture time, as a graph needs)
Weights are rotated over two copies so that L2 does not flatter small M;
each timing is the median over many replays, per forward.

Floor = max(bytes / 4.8 TB/s, flops / 989 TFLOP/s) with bytes = experts
touched x expert bytes + activations, flops = 2 M k (N1 H + H I) (+ shared).

Usage: bench_moe.py --lib build/libmoe.so --out bench/results/h200.json
"""
import argparse
import ctypes as C
import datetime
import json
import math
import os
import subprocess
import sys
import time
import zlib

import torch
import torch.nn.functional as F

PRESETS = {
    "nemotron3-nano": dict(E=128, k=6, H=2688, I=1856, act="relu2", gated=0,
                           scoring="sigmoid", n_group=1, topk_group=1,
                           renorm=1, scale=2.5, Is=3712, ebias=0),
    "qwen3-30b-a3b": dict(E=128, k=8, H=2048, I=768, act="silu", gated=1,
                          scoring="softmax", n_group=1, topk_group=1,
                          renorm=1, scale=1.0, Is=0, ebias=0),
    "mixtral-8x7b": dict(E=8, k=2, H=4096, I=14336, act="silu", gated=1,
                         scoring="softmax", n_group=1, topk_group=1, renorm=1,
                         scale=1.0, Is=0, ebias=0),
    "deepseek-v3": dict(E=256, k=8, H=7168, I=2048, act="silu", gated=1,
                        scoring="sigmoid", n_group=8, topk_group=4, renorm=1,
                        scale=2.5, Is=2048, ebias=0),
    "gpt-oss-120b": dict(E=128, k=4, H=2880, I=2880, act="swiglu_oai",
                         gated=1, scoring="softmax", n_group=1, topk_group=1,
                         renorm=1, scale=1.0, Is=0, ebias=1),
}
ACT = {"silu": 0, "gelu": 1, "relu2": 2, "swiglu_oai": 3}
BW_PEAK, FLOPS_PEAK = 4.8e12, 989e12
ALPHA, LIMIT = 1.702, 7.0


class Routing(C.Structure):
    _fields_ = [("scoring", C.c_int), ("n_group", C.c_int),
                ("topk_group", C.c_int), ("renormalize", C.c_int),
                ("routed_scaling_factor", C.c_float)]


class LayerDesc(C.Structure):
    _fields_ = [("num_experts", C.c_int), ("top_k", C.c_int),
                ("hidden", C.c_int), ("intermediate", C.c_int),
                ("activation", C.c_int), ("gated", C.c_int),
                ("swiglu_alpha", C.c_float), ("swiglu_limit", C.c_float),
                ("dtype", C.c_int), ("routing", Routing),
                ("shared_intermediate", C.c_int),
                ("expert_map", C.c_void_p), ("max_tokens", C.c_int),
                ("backend", C.c_char_p), ("allow_fallback", C.c_int),
                ("self_check", C.c_int)]


class Weights(C.Structure):
    _fields_ = [("memory", C.c_int), ("w13", C.c_void_p), ("w2", C.c_void_p),
                ("w13_bias", C.c_void_p), ("w2_bias", C.c_void_p),
                ("correction_bias", C.c_void_p), ("shared_w13", C.c_void_p),
                ("shared_w2", C.c_void_p)]


def ptr(t):
    return C.c_void_p(t.data_ptr()) if t is not None else None


class Moe:
    def __init__(self, path):
        self.lib = C.CDLL(os.path.abspath(path))
        L = self.lib
        L.moe_context_create.argtypes = [C.c_void_p, C.POINTER(C.c_void_p)]
        L.moe_last_error.restype = C.c_char_p
        L.moe_last_error.argtypes = [C.c_void_p]
        L.moe_layer_desc_init.argtypes = [C.POINTER(LayerDesc)]
        L.moe_layer_create.argtypes = [C.c_void_p, C.POINTER(LayerDesc),
                                       C.POINTER(Weights),
                                       C.POINTER(C.c_void_p)]
        L.moe_forward.argtypes = [C.c_void_p, C.c_void_p, C.c_void_p, C.c_int,
                                  C.c_void_p, C.c_void_p]
        L.moe_layer_backend.restype = C.c_char_p
        L.moe_layer_backend.argtypes = [C.c_void_p]
        L.moe_layer_destroy.argtypes = [C.c_void_p]
        L.moe_layer_plan.restype = C.c_void_p
        L.moe_layer_plan.argtypes = [C.c_void_p]
        L.moe_plan_explain.restype = C.c_size_t
        L.moe_plan_explain.argtypes = [C.c_void_p, C.c_char_p, C.c_size_t]
        self.ctx = C.c_void_p()
        assert L.moe_context_create(None, C.byref(self.ctx)) == 0

    def layer(self, p, w, max_tokens, backend="cuda-mma"):
        d = LayerDesc()
        self.lib.moe_layer_desc_init(C.byref(d))
        d.num_experts, d.top_k, d.hidden, d.intermediate = (
            p["E"], p["k"], p["H"], p["I"])
        d.activation, d.gated, d.dtype = ACT[p["act"]], p["gated"], 2
        d.routing.scoring = 1 if p["scoring"] == "sigmoid" else 0
        d.routing.n_group, d.routing.topk_group = p["n_group"], p["topk_group"]
        d.routing.renormalize = p["renorm"]
        d.routing.routed_scaling_factor = p["scale"]
        d.shared_intermediate = p["Is"]
        # Variants: a backend with tuning variables set at create, to
        # measure a path on its own (VARIANTS); BENCH_MAX_TOKENS=N in a
        # variant creates its layer for N tokens instead (larger calls are
        # then run in chunks of N).
        base, env = VARIANTS.get(backend, (backend, {}))
        d.max_tokens = int(env.get("BENCH_MAX_TOKENS", max_tokens))
        env_old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        d.backend = base.encode()
        # timing probes (wrong results by design) must skip the self-check
        d.self_check = 0 if os.environ.get("BENCH_NO_SELF_CHECK") else 1
        ww = Weights(1, ptr(w["w13"]), ptr(w["w2"]), ptr(w.get("b13")),
                     ptr(w.get("b2")), ptr(w.get("cb")), ptr(w.get("sw13")),
                     ptr(w.get("sw2")))
        h = C.c_void_p()
        st = self.lib.moe_layer_create(self.ctx, C.byref(d), C.byref(ww),
                                       C.byref(h))
        for k, v in env_old.items():
            if v is None:
                os.environ.pop(k)
            else:
                os.environ[k] = v
        if st != 0:
            raise RuntimeError("moe_layer_create: %d %s" % (
                st, self.lib.moe_last_error(self.ctx).decode()))
        return h

    def chosen(self, h):
        """The plan's line for the backend that serves layer h."""
        buf = C.create_string_buffer(16384)
        self.lib.moe_plan_explain(self.lib.moe_layer_plan(h), buf, len(buf))
        for line in buf.value.decode(errors="replace").splitlines():
            if " chosen " in line:
                return " ".join(line.split())
        return ""

    def forward(self, h, x, logits, out):
        st = self.lib.moe_forward(h, ptr(x), ptr(logits), x.shape[0],
                                  ptr(out),
                                  C.c_void_p(torch.cuda.current_stream()
                                             .cuda_stream))
        if st != 0:
            raise RuntimeError("moe_forward: %d %s" % (
                st, self.lib.moe_last_error(self.ctx).decode()))


# ---- the PyTorch peers ----
def route_torch(p, logits, cb):
    k = p["k"]
    if p["scoring"] == "softmax":
        s = torch.softmax(logits, -1)
        w, ids = torch.topk(s, k, -1)
    else:
        s = torch.sigmoid(logits)
        c = s + cb
        if p["n_group"] > 1:
            M, E, G = c.shape[0], c.shape[1], p["n_group"]
            gs = c.view(M, G, E // G).topk(2, -1).values.sum(-1)
            gi = gs.topk(p["topk_group"], -1).indices
            gm = torch.zeros_like(gs).scatter_(1, gi, 1.0)
            mask = gm.unsqueeze(-1).expand(M, G, E // G).reshape(M, E)
            c = c.masked_fill(mask == 0, float("-inf"))
        ids = torch.topk(c, k, -1).indices
        w = s.gather(1, ids)
    if p["renorm"]:
        w = w / w.sum(-1, keepdim=True)
    return ids, w * p["scale"]


def act_torch(p, h):
    if p["act"] == "relu2":
        return torch.relu(h).square()
    if p["act"] == "swiglu_oai":
        g = h[:, 0::2].clamp(max=LIMIT)
        u = h[:, 1::2].clamp(-LIMIT, LIMIT)
        return (u + 1) * g * torch.sigmoid(ALPHA * g)
    I = h.shape[1] // 2
    return F.silu(h[:, :I]) * h[:, I:]


def shared_torch(p, w, x):
    if not p["Is"]:
        return None
    return act_torch(p, x @ w["sw13"].t()) @ w["sw2"].t()


def grouped_peer(p, w, x, logits):
    E, k = p["E"], p["k"]
    ids, wts = route_torch(p, logits, w.get("cb"))
    flat = ids.reshape(-1)
    order = torch.argsort(flat, stable=True)
    tok = order // k
    counts = torch.zeros(E, dtype=torch.int32, device=x.device)
    counts.index_add_(0, flat.to(torch.int32).long(),
                      torch.ones_like(flat, dtype=torch.int32))
    offs = torch.cumsum(counts, 0, dtype=torch.int32)
    xs = x.index_select(0, tok)
    h = torch._grouped_mm(xs, w["w13t"], offs=offs)
    if "b13" in w:
        h = h + w["b13"].index_select(0, flat[order]).to(h.dtype)
    a = act_torch(p, h)
    y = torch._grouped_mm(a, w["w2t"], offs=offs)
    if "b2" in w:
        y = y + w["b2"].index_select(0, flat[order]).to(y.dtype)
    y = y * wts.reshape(-1)[order].unsqueeze(1).to(y.dtype)
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    out.index_add_(0, tok, y.float())
    sh = shared_torch(p, w, x)
    if sh is not None:
        out += sh.float()
    return out.to(x.dtype)


def loop_peer_builder(p, w, x, logits):
    """Dispatch indices are fixed before capture (a graph needs them)."""
    ids, _ = route_torch(p, logits, w.get("cb"))
    flat = ids.reshape(-1).cpu()
    per = {}
    for e in flat.unique().tolist():
        pos = (flat == e).nonzero().squeeze(1)
        per[e] = pos.to(x.device)

    def run():
        ids2, wts = route_torch(p, logits, w.get("cb"))
        wf = wts.reshape(-1)
        out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
        for e, pos in per.items():
            tok = pos // p["k"]
            xe = x.index_select(0, tok)
            h = torch.matmul(xe, w["w13"][e].t())
            if "b13" in w:
                h = h + w["b13"][e].to(h.dtype)
            y = torch.matmul(act_torch(p, h), w["w2"][e].t())
            if "b2" in w:
                y = y + w["b2"][e].to(y.dtype)
            out.index_add_(0, tok, (y * wf.index_select(0, pos)
                                    .unsqueeze(1).to(y.dtype)).float())
        sh = shared_torch(p, w, x)
        if sh is not None:
            out += sh.float()
        return out.to(x.dtype)
    return run


# ---- timing ----
def graph_time(fns, reps):
    """fns: one callable per weight copy; a graph runs them in turn. Returns
    the median microseconds per call over `reps` replays."""
    g = make_graph(fns)
    warm_graph(g, WARM_MS[0])
    t = time_graph(g, reps, len(fns))
    del g
    return t


def make_graph(fns):
    """Runs fns once, then captures them in one graph (warmed up)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for f in fns:
            f()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for f in fns:
            f()
    for _ in range(3):
        g.replay()
    torch.cuda.synchronize()
    return g


WARM_MS = [60.0]  # --warm-ms


def warm_graph(g, ms):
    """Replays g for at least ms milliseconds, untimed: the card's clock
    then reflects this graph's own load, not the one timed before it."""
    t0 = time.perf_counter()
    while (time.perf_counter() - t0) * 1e3 < ms:
        g.replay()
        torch.cuda.synchronize()


def time_graph(g, reps, nf):
    """Median microseconds per call (nf calls a replay) over reps replays."""
    ts = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) * 1000.0 / nf)
    ts.sort()
    return ts[len(ts) // 2]


def ceilings():
    n = 4 << 30
    a = torch.empty(n // 2, dtype=torch.bfloat16, device="cuda").normal_()
    torch.cuda.synchronize()
    ts = []
    for _ in range(10):
        e0 = torch.cuda.Event(enable_timing=True)
        e1 = torch.cuda.Event(enable_timing=True)
        e0.record()
        a.sum(dtype=torch.float32)
        e1.record()
        e1.synchronize()
        ts.append(e0.elapsed_time(e1) / 1000)
    ts.sort()
    bw = n / ts[len(ts) // 2]
    del a
    m = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    for _ in range(3):
        m @ m
    torch.cuda.synchronize()
    e0 = torch.cuda.Event(enable_timing=True)
    e1 = torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(10):
        m @ m
    e1.record()
    e1.synchronize()
    tf = 10 * 2 * 8192 ** 3 / (e0.elapsed_time(e1) / 1000)
    return bw, tf


def make_weights(p, dev="cuda"):
    E, H, I, Is = p["E"], p["H"], p["I"], p["Is"]
    N1 = 2 * I if p["gated"] else I
    N1s = 2 * Is if p["gated"] else Is
    w = {}
    w["w13"] = torch.randn(E, N1, H, dtype=torch.bfloat16, device=dev) * (
        1 / math.sqrt(H))
    w["w2"] = torch.randn(E, H, I, dtype=torch.bfloat16, device=dev) * (
        1 / math.sqrt(I))
    w["w13t"] = w["w13"].transpose(1, 2)
    w["w2t"] = w["w2"].transpose(1, 2)
    if Is:
        w["sw13"] = torch.randn(N1s, H, dtype=torch.bfloat16, device=dev) * (
            1 / math.sqrt(H))
        w["sw2"] = torch.randn(H, Is, dtype=torch.bfloat16, device=dev) * (
            1 / math.sqrt(Is))
    if p["scoring"] == "sigmoid":
        w["cb"] = torch.rand(E, device=dev) * 0.1
    if p["ebias"]:
        w["b13"] = torch.randn(E, N1, device=dev) * 0.1
        w["b2"] = torch.randn(E, H, device=dev) * 0.1
    return w


def floor_us(p, ids, M):
    E, k, H, I, Is = p["E"], p["k"], p["H"], p["I"], p["Is"]
    N1 = 2 * I if p["gated"] else I
    N1s = 2 * Is if p["gated"] else Is
    touched = int(torch.unique(ids).numel())
    eb = (N1 * H + H * I) * 2
    byts = touched * eb + (N1s * H + H * Is) * 2 + M * H * 2 * 2 + M * E * 4
    flops = 2 * M * k * (N1 * H + H * I) + 2 * M * (N1s * H + H * Is)
    return max(byts / BW_PEAK, flops / FLOPS_PEAK) * 1e6, byts, flops


# Pseudo-backends: (backend, {variable: value} set while it is created).
VARIANTS = {
    # cuda-sm90 with every call on its wgmma GEMMs (crossover at 0)
    "cuda-sm90-gemm": ("cuda-sm90", {"MOE_SM90_CROSSOVER": "0"}),
    # cuda-mma on its tile path at every M (no gemv, no decode kernel)
    "cuda-mma-tile": ("cuda-mma", {"MOE_MMA_GEMV_TOKENS": "0",
                                   "MOE_MMA_DECODE_ROWS": "0"}),
    # cuda-mma with gemv up to its limit (8 tokens), the tile path above
    "cuda-mma-gemv": ("cuda-mma", {"MOE_MMA_GEMV_TOKENS": "8",
                                   "MOE_MMA_DECODE_ROWS": "0"}),
    # cuda-mma with the decode kernel wherever its workspace allows
    "cuda-mma-decode": ("cuda-mma", {"MOE_MMA_GEMV_TOKENS": "0",
                                     "MOE_MMA_DECODE_ROWS": "100000"}),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default="build/libmoe.so")
    ap.add_argument("--out", default="bench/results/h200.json")
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--tokens", default="1,4,16,64,256,1024,4096,16384")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--no-abba", action="store_true",
                    help="with --rounds 1: time each backend once a point, "
                    "in the given order (else twice, A B B A, the mean)")
    ap.add_argument("--rounds", type=int, default=7,
                    help="R > 1 (default 7): capture every backend's graph, "
                    "then time them in R interleaved rounds (order rotated "
                    "each round) and keep the median round; R <= 1: each "
                    "backend in one block, A B B A (--no-abba: once)")
    ap.add_argument("--warm-ms", type=float, default=60.0,
                    help="replay each graph this long, untimed, before "
                    "each of its timed blocks (backends and peers; the "
                    "clock after a lighter backend runs faster for tens of "
                    "ms; bench/NOTES.md, cuda-sm90 v23)")
    ap.add_argument("--backends", default="cuda-mma",
                    help="comma-separated; also the variants " +
                    ", ".join(VARIANTS))
    ap.add_argument("--ab-pdl", action="store_true",
                    help="also time M <= 256 with MOE_CUDA_PDL=1")
    ap.add_argument("--seed-per-point", action="store_true",
                    help="draw each preset's weights and each point's "
                    "inputs and logits from a seed of their own (preset "
                    "name, tokens), so that a run of a few points routes "
                    "them as every run with this flag does")
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME=BACKEND:K=V[,K=V...]: a backend run with "
                    "those environment variables, named NAME")
    a = ap.parse_args()
    WARM_MS[0] = a.warm_ms
    for v in a.variant:
        name, rest = v.split("=", 1)
        base, _, kv = rest.partition(":")
        VARIANTS[name] = (base, dict(x.split("=", 1) for x in kv.split(",")
                                     if x))
    torch.manual_seed(0)
    moe = Moe(a.lib)
    bw, tf = ceilings()
    print("ceilings: read %.2f TB/s, bf16 matmul %.0f TFLOP/s" %
          (bw / 1e12, tf / 1e12), flush=True)
    commit = os.environ.get("MOE_COMMIT")  # set where .git lags the tree
    try:
        commit = commit or subprocess.check_output(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=os.path.dirname(os.path.abspath(__file__))).decode().strip()
    except Exception:
        commit = os.environ.get("MOE_COMMIT", "unknown")
    res = {"device": torch.cuda.get_device_name(), "commit": commit,
           "date": datetime.date.today().isoformat(),
           "ceilings": {"read_tbs": round(bw / 1e12, 3),
                        "bf16_matmul_tflops": round(tf / 1e12, 1)},
           "floor_model": {"bw_tbs": BW_PEAK / 1e12,
                           "tflops": FLOPS_PEAK / 1e12},
           "rows": []}
    tokens = [int(t) for t in a.tokens.split(",")]
    for name in a.presets.split(","):
        p = PRESETS[name]
        if a.seed_per_point:
            torch.manual_seed(zlib.crc32(name.encode()))
        ws = [make_weights(p), make_weights(p)]
        maxm = max(tokens)
        backends = a.backends.split(",")
        layers = {b: [moe.layer(p, w, maxm, b) for w in ws] for b in backends}
        # what each backend chose at creation (cuda-sm90: its crossover)
        res.setdefault("plans", {})[name] = {
            b: moe.chosen(layers[b][0]) for b in backends}
        for b in backends:
            print("  %s %s: %s" % (name, b, res["plans"][name][b]), flush=True)
        layers_nopdl = []
        if a.ab_pdl:  # same kernels with programmatic dependent launch
            os.environ["MOE_CUDA_PDL"] = "1"
            layers_nopdl = [moe.layer(p, w, min(maxm, 256)) for w in ws]
            os.environ.pop("MOE_CUDA_PDL")
        for M in tokens:
            if a.seed_per_point:
                torch.manual_seed(zlib.crc32(("%s:%d" % (name, M)).encode()))
            x = torch.randn(M, p["H"], dtype=torch.bfloat16, device="cuda")
            logits = torch.randn(M, p["E"], device="cuda")
            outs = [torch.empty_like(x) for _ in ws]
            reps = a.reps if M <= 1024 else max(8, a.reps // 3)
            ids, _ = route_torch(p, logits, ws[0].get("cb"))
            fl, byts, flops = floor_us(p, ids, M)
            ref = grouped_peer(p, ws[0], x, logits).float()
            peers = {}
            if not a.no_peers:
                for peer in ("torch_grouped_mm", "torch_loop"):
                    try:
                        if peer == "torch_grouped_mm":
                            pf = [(lambda w=w: grouped_peer(p, w, x, logits))
                                  for w in ws]
                        else:
                            pf = [loop_peer_builder(p, w, x, logits)
                                  for w in ws]
                        peers[peer] = round(graph_time(pf, reps), 2)
                    except Exception as ex:  # a peer that cannot run
                        peers[peer] = None
                        print("  %s failed: %s" % (peer, str(ex)[:200]),
                              flush=True)
            # Backends timed in blocks drift with the card's clock under
            # sustained load: identical layers timed A B C .. C B A measured
            # up to 10 % apart, and within 1.6 % when their graphs were
            # interleaved in rounds (bench/NOTES.md, cuda-sm90 v22). Rounds
            # by default; --rounds 1: each backend twice, A B B A, the mean.
            order = []  # blocks, A B B A (--rounds 1)
            if a.rounds <= 1:
                order = list(backends)
                if not a.no_abba and len(backends) > 1:
                    order += backends[::-1]
            times, errs = {}, {}
            if a.rounds > 1:
                graphs = {}
                for bk in backends:
                    for o in outs:
                        o.fill_(float("nan"))
                    fns = [(lambda h=h, o=o: moe.forward(h, x, logits, o))
                           for h, o in zip(layers[bk], outs)]
                    graphs[bk] = make_graph(fns)
                    errs[bk] = ((outs[0].float() - ref).norm() /
                                ref.norm()).item()
                rr = max(5, reps // 2)
                for r in range(a.rounds):
                    rot = backends[r % len(backends):] + \
                        backends[:r % len(backends)]
                    for bk in (rot[::-1] if r % 2 else rot):
                        warm_graph(graphs[bk], a.warm_ms)
                        times.setdefault(bk, []).append(
                            time_graph(graphs[bk], rr, len(ws)))
                for bk in backends:  # the median round
                    t = sorted(times[bk])
                    times[bk] = [t[len(t) // 2]]
                del graphs
            for bk in order:
                for o in outs:
                    o.fill_(float("nan"))  # poison: every row must be written
                fns = [(lambda h=h, o=o: moe.forward(h, x, logits, o))
                       for h, o in zip(layers[bk], outs)]
                times.setdefault(bk, []).append(graph_time(fns, reps))
                if bk not in errs:
                    # correctness against the grouped peer (bf16 tolerance)
                    errs[bk] = ((outs[0].float() - ref).norm() /
                                ref.norm()).item()
            for bk in backends:
                us = sum(times[bk]) / len(times[bk])
                err = errs[bk]
                row = {"preset": name, "tokens": M, "backend": bk,
                       "us": round(us, 2), "floor_us": round(fl, 2),
                       "pct_floor": round(100 * fl / us, 1),
                       "peers": dict(peers)}
                row["rel_err_vs_torch"] = round(err, 5)
                if bk == backends[0] and layers_nopdl and M <= 256:
                    fns0 = [(lambda h=h, o=o: moe.forward(h, x, logits, o))
                            for h, o in zip(layers_nopdl, outs)]
                    row["us_with_pdl"] = round(graph_time(fns0, reps), 2)
                res["rows"].append(row)
                print("%-15s M=%-6d %-15s %10.1f us  floor %9.1f  %5.1f%%  "
                      "grouped %s  loop %s  err %.1e" % (
                          name, M, bk, us, fl, row["pct_floor"],
                          peers.get("torch_grouped_mm"),
                          peers.get("torch_loop"), err), flush=True)
            del x, logits, outs
        for h in [h for v in layers.values() for h in v] + layers_nopdl:
            moe.lib.moe_layer_destroy(h)
        del ws
        torch.cuda.empty_cache()
        os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    # summary table
    print("\n%-15s %6s %-15s %9s %6s %9s %9s %9s" % (
        "preset", "M", "backend", "us", "%floor", "grouped", "loop", "pdl"))
    for r in res["rows"]:
        print("%-15s %6d %-15s %9.1f %6.1f %9s %9s %9s" % (
            r["preset"], r["tokens"], r["backend"], r["us"], r["pct_floor"],
            r["peers"].get("torch_grouped_mm"), r["peers"].get("torch_loop"),
            r.get("us_with_pdl", "")))


if __name__ == "__main__":
    main()
