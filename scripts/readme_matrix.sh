#!/usr/bin/env bash
# Regenerates the planner matrix in README.md (between the matrix markers)
# from `moe plan --matrix` of a build that has every backend compiled in.
set -euo pipefail
cd "$(dirname "$0")/.."
MOE=${MOE:-build/moe}
python3 - "$MOE" <<'PY'
import re, subprocess, sys
table = subprocess.run([sys.argv[1], "plan", "--matrix"], check=True,
                       capture_output=True, text=True).stdout.strip()
readme = open("README.md").read()
block = "<!-- matrix:begin -->\n" + table + "\n<!-- matrix:end -->"
new, n = re.subn(r"<!-- matrix:begin -->.*?<!-- matrix:end -->", block,
                 readme, flags=re.S)
if n != 1:
    sys.exit("README.md has no matrix markers")
open("README.md", "w").write(new)
PY
