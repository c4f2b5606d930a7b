#!/usr/bin/env python3
"""The table of bench/sweep_builds.sh: per (preset, tokens, backend) the
fastest pass of each build, in us, and with two or more builds each one's
ratio to the first build.
    sweep_table.py OUT PASSES NAME..."""
import json
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)["rows"]
    except (OSError, ValueError, KeyError):
        return []


def main():
    out, passes, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    rows = {}
    for n in names:
        for p in range(1, passes + 1):
            suffix = "" if p == 1 else "_p%d" % p
            for r in load("%s/sweep_%s%s.json" % (out, n, suffix)):
                key = (r["preset"], r["tokens"], r["backend"])
                cell = rows.setdefault(key, {})
                cell[n] = min(cell.get(n, float("inf")), r["us"])
    ratios = names[1:] if len(names) > 1 else []
    print("%-15s %6s %-10s" % ("preset", "M", "backend") +
          "".join("%10s" % n[:10] for n in names) +
          "".join("%10s" % ("/" + names[0])[:10] for _ in ratios) +
          ("   (fastest of %d passes)" % passes if passes > 1 else ""))
    for (p, m, b), v in rows.items():
        line = "%-15s %6d %-10s" % (p, m, b[:10])
        line += "".join("%10.1f" % v[n] if n in v else "%10s" % "-"
                        for n in names)
        for n in ratios:
            if n in v and names[0] in v:
                line += "%10.3f" % (v[n] / v[names[0]])
            else:
                line += "%10s" % "-"
        print(line)


if __name__ == "__main__":
    main()
