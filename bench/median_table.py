#!/usr/bin/env python3
"""The median of several bench_moe.py tables of the same build on the same
machine: per row, the median time of each backend and of each peer (the
floor is the same in every run), the ceilings' medians, and "runs": how
many. One run's point can move by several percent on these machines
(bench/NOTES.md); the median of three is what bench/results/h200.json
holds.
    median_table.py OUT.json RUN1.json RUN2.json [RUN3.json ...]"""
import json
import statistics
import sys


def median(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 2) if xs else None


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    runs = [json.load(open(f)) for f in sys.argv[2:]]
    first = runs[0]
    keys = [(r["preset"], r["tokens"], r["backend"]) for r in first["rows"]]
    by = [{(r["preset"], r["tokens"], r["backend"]): r for r in run["rows"]}
          for run in runs]
    for run in runs[1:]:
        if run["commit"] != first["commit"]:
            sys.exit("runs of different commits: %s, %s" %
                     (first["commit"], run["commit"]))
    rows = []
    for k in keys:
        if any(k not in b for b in by):
            sys.exit("row %s missing from a run" % (k,))
        rs = [b[k] for b in by]
        r = dict(rs[0])
        r["us"] = median([x["us"] for x in rs])
        r["pct_floor"] = round(100.0 * r["floor_us"] / r["us"], 1)
        r["peers"] = {p: median([x["peers"].get(p) for x in rs])
                      for p in rs[0]["peers"]}
        r["rel_err_vs_torch"] = max(x["rel_err_vs_torch"] for x in rs)
        rows.append(r)
    out = {k: v for k, v in first.items() if k != "rows"}
    out["ceilings"] = {c: median([run["ceilings"][c] for run in runs])
                       for c in first["ceilings"]}
    out["runs"] = len(runs)
    out["rows"] = rows
    with open(sys.argv[1], "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
