#!/usr/bin/env python3
"""Per-kernel times of one layer call, from an ncu log of
bench/profile_kernels.py run on a single case (bench/kernel_times.sh):
the kernels of the measured forward are the last n of the log, where n is
the longest tail that repeats the n kernels before it (the warm-up
forward; the creation's self-check runs a smaller problem first). PyTorch's
own kernels (weights, inputs) are left out.
    kernel_times.py NCU_LOG"""
import re
import sys

UNITS = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0,
         "msecond": 1e3, "ms": 1e3, "second": 1e6, "s": 1e6}


def kernels(path):
    seq, name = [], None
    for ln in open(path, errors="replace"):
        if ("Context" in ln and ln.startswith("  ")
                and not ln.startswith("    ")):
            name = re.sub(r"^void ", "", ln.strip().split("(")[0])
        elif "gpu__time_duration.sum" in ln and name:
            f = ln.split()
            seq.append((name, float(f[-1].replace(",", "")) * UNITS[f[-2]]))
            name = None
    return [k for k in seq if not k[0].startswith("at::")]


def measured(seq):
    names = [k[0] for k in seq]
    for n in range(len(seq) // 2, 0, -1):
        if names[-n:] == names[-2 * n:-n]:
            return seq[-n:]
    return []


def main():
    fwd = measured(kernels(sys.argv[1]))
    if not fwd:
        print("no repeated forward in %s" % sys.argv[1])
        return 1
    for name, us in fwd:
        print("%10.1f us  %s" % (us, name[:70]))
    print("%10.1f us  total (%d kernels, each alone)" %
          (sum(us for _, us in fwd), len(fwd)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
