#!/usr/bin/env python3
"""Static view of the GEMM kernels' main loops, from their SASS: per kernel
the instruction count, the main loop's (from the first DEPBAR.LE, the
cp.async wait, to the last HMMA or HGMMA), its MMA, ldmatrix and cp.async
counts, and the size of each branch-free block of the loop that issues at
least MIN cp.async (the copy paths; bench/NOTES.md, cuda-mma v9).

    bench/sass_loop.py OBJECT_OR_SASS [FILTER] [--min N]

OBJECT_OR_SASS: an object file or library (cuobjdump -sass runs on it) or
a saved `cuobjdump -sass` listing; FILTER: a substring of the mangled
kernel name (e.g. "128ELi128" for cuda-mma's 128-row tile)."""
import argparse
import re
import subprocess
import sys

INS = re.compile(r"\s+/\*[0-9a-f]{4,}\*/\s+(.*?)\s*;")


def kernels(text):
    name, ins = None, []
    for line in text.split("\n"):
        if "Function :" in line:
            if name:
                yield name, ins
            name, ins = line.split()[-1], []
        else:
            m = INS.match(line)
            if m and name:
                ins.append(m.group(1))
    if name:
        yield name, ins


def opcode(ins):
    parts = ins.split()
    if parts and parts[0].startswith("@"):
        parts = parts[1:]
    return parts[0].split(".")[0] if parts else ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("filter", nargs="?", default="")
    ap.add_argument("--min", type=int, default=4)
    a = ap.parse_args()
    if a.path.endswith(".sass") or a.path.endswith(".txt"):
        text = open(a.path).read()
    else:
        try:
            text = subprocess.run(["cuobjdump", "-sass", a.path], check=True,
                                  capture_output=True, text=True).stdout
        except (OSError, subprocess.CalledProcessError) as e:
            sys.exit("cuobjdump -sass %s: %s" % (a.path, e))
    for name, ins in kernels(text):
        if a.filter not in name:
            continue
        ops = [opcode(i) for i in ins]
        waits = [i for i, o in enumerate(ops) if o == "DEPBAR"]
        mmas = [i for i, o in enumerate(ops) if o in ("HMMA", "HGMMA")]
        print("%s: %d instructions" % (name, len(ins)))
        if not waits or not mmas or mmas[-1] < waits[0]:
            continue
        body = ins[waits[0]:mmas[-1] + 1]
        bops = ops[waits[0]:mmas[-1] + 1]
        print("  main loop %d: %d MMA, %d LDSM, %d LDGSTS" % (
            len(body), sum(o in ("HMMA", "HGMMA") for o in bops),
            bops.count("LDSM"), bops.count("LDGSTS")))
        blocks, start = [], 0
        for i, o in enumerate(bops + ["BRA"]):
            if o == "BRA":
                n = bops[start:i + 1].count("LDGSTS")
                if n >= a.min:
                    blocks.append("%d (%d LDGSTS)" % (i + 1 - start, n))
                start = i + 1
        if blocks:
            print("  copy blocks: " + ", ".join(blocks))


if __name__ == "__main__":
    main()
