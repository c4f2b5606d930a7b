#!/usr/bin/env python3
"""docs/bench_h200.png from bench/results/h200.json: percent of the floor
(max(bytes / 4.8 TB/s, flops / 989 TFLOP/s)) against tokens, one panel per
preset, each moe backend in the file and the two PyTorch peers."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src = sys.argv[1] if len(sys.argv) > 1 else "bench/results/h200.json"
dst = sys.argv[2] if len(sys.argv) > 2 else "docs/bench_h200.png"
d = json.load(open(src))
presets = []
for r in d["rows"]:
    if r["preset"] not in presets:
        presets.append(r["preset"])
fig, axes = plt.subplots(1, len(presets), figsize=(4 * len(presets), 3.6),
                         sharey=True)
for ax, p in zip(axes, presets):
    rows = [r for r in d["rows"] if r["preset"] == p]
    backends = []
    for r in rows:
        if r["backend"] not in backends:
            backends.append(r["backend"])
    for b, st in zip(backends, ("o-", "D-", "x-.", "v-")):
        br = [r for r in rows if r["backend"] == b]
        ax.plot([r["tokens"] for r in br], [r["pct_floor"] for r in br], st,
                label="moe " + b)
    rows = [r for r in rows if r["backend"] == backends[0]]  # peers once
    for peer, st in (("torch_grouped_mm", "s--"), ("torch_loop", "^:")):
        pts = [(r["tokens"], 100 * r["floor_us"] / r["peers"][peer])
               for r in rows if r["peers"].get(peer)]
        if pts:
            ax.plot([a for a, _ in pts], [b for _, b in pts], st, label=peer)
    ax.set_xscale("log", base=2)
    ax.set_title(p)
    ax.set_xlabel("tokens (M)")
    ax.grid(True, alpha=0.3)
    ax.axhline(60, color="grey", lw=0.8, ls="-.")
axes[0].set_ylabel("% of floor")
axes[0].legend(fontsize=8)
fig.suptitle("%s, commit %s, %s: %% of max(bytes/4.8 TB/s, flops/989 TFLOP/s)"
             % (d["device"], d["commit"], d["date"]), fontsize=10)
fig.tight_layout()
fig.savefig(dst, dpi=110)
print("wrote", dst)
