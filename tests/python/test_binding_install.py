"""pip install of python/ bundles the library the package was built with."""

import os
import shutil
import subprocess
import sys

import pytest

import moe


def _pip(args, env):
    return subprocess.run([sys.executable, "-m", "pip"] + args, env=env,
                          capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_pip_install_target_bundles_library(tmp_path, repo_root):
    src = tmp_path / "src"
    # A copy, so that the build leaves nothing in the source tree.
    shutil.copytree(os.path.join(repo_root, "python"), src,
                    ignore=shutil.ignore_patterns(
                        "__pycache__", "build", "*.egg-info", "libmoe.so"))
    site = tmp_path / "site"
    env = dict(os.environ, MOE_LIBRARY=moe.library_path(),
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    base = ["install", "-q", "--no-deps", "--target", str(site), str(src)]
    r = _pip(["--no-input"] + base[:1] + ["--no-build-isolation",
                                           "--no-index"] + base[1:], env)
    if r.returncode != 0:
        # No local build tools (setuptools, wheel): try an isolated build,
        # which downloads them.
        r2 = _pip(base[:1] + ["--retries", "0", "--timeout", "10"] + base[1:],
                  env)
        if r2.returncode != 0:
            pytest.skip("pip cannot build the package here:\n%s\n%s"
                        % (r.stderr[-800:], r2.stderr[-800:]))
    bundled = site / "moe" / "libmoe.so"
    assert bundled.is_file()

    run_env = {k: v for k, v in os.environ.items()
               if k not in ("MOE_LIBRARY", "PYTHONPATH")}
    run_env["PYTHONPATH"] = str(site)
    code = ("import moe, numpy as np\n"
            "print(moe.library_path())\n"
            "w13 = np.ones((2, 8, 4), np.float32) * 0.1\n"
            "w2 = np.ones((2, 4, 4), np.float32) * 0.1\n"
            "with moe.Layer(w13, w2, top_k=1, num_threads=1) as layer:\n"
            "    out = layer.forward(np.ones((3, 4), np.float32),\n"
            "                        np.ones((3, 2), np.float32))\n"
            "print(out.shape)\n")
    r = subprocess.run([sys.executable, "-c", code], env=run_env,
                       capture_output=True, text=True, timeout=60,
                       cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert lines[0] == str(bundled)
    assert lines[1] == "(3, 4)"
