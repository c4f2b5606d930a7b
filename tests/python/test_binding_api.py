"""Version, build information, plans, contexts and finding the library."""

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import moe
import binding_reference as ref


def test_version_and_build_info():
    v = moe.version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", v)
    assert v.split(".")[0] == moe.__version__.split(".")[0]
    info = moe.build_info()
    assert "backends:" in info
    names = moe.backends()
    assert names and "cpu-ref" in names
    assert os.path.isfile(moe.library_path())
    assert moe.device_info()


def test_plan_what_if():
    p = moe.plan(num_experts=16, top_k=4, hidden=64, intermediate=32,
                 dtype="f32", scoring="sigmoid", n_group=4, topk_group=2)
    assert isinstance(p, moe.Plan)
    assert p.chosen in moe.backends()
    chosen = [e for e in p if e.verdict == moe.Verdict.CHOSEN]
    assert [e.backend for e in chosen] == [p.chosen]
    for e in p.entries:
        assert isinstance(e, moe.PlanEntry)
        assert isinstance(e.verdict, moe.Verdict) and isinstance(e.reason,
                                                                 str)
        assert e.backend
    assert p.chosen in str(p) and str(p) == p.text
    assert p.entry(p.chosen).verdict == moe.Verdict.CHOSEN
    assert str(moe.Verdict.FAILED_CHECK) == "failed-check"
    assert "chosen" in repr(p)
    assert not p.fell_back


def test_plan_named_backend_and_fallback():
    p = moe.plan(num_experts=8, top_k=2, hidden=64, intermediate=32,
                 dtype="f32", backend="cpu-ref")
    assert p.chosen == "cpu-ref"
    with pytest.raises(moe.MoeError, match="not-a-backend"):
        moe.plan(num_experts=8, top_k=2, hidden=64, intermediate=32,
                 backend="not-a-backend")
    # asking for CUDA memory on a machine or build without CUDA: either no
    # backend is chosen or the planner says why it cannot serve
    try:
        p = moe.plan(num_experts=8, top_k=2, hidden=64, intermediate=32,
                     memory="cuda", device="sm_90")
    except moe.UnsupportedError as e:
        assert e.message
    else:
        assert p.chosen is None or p.chosen.startswith("cuda")


def test_plan_rejects_bad_descriptor():
    with pytest.raises(moe.InvalidArgumentError, match="top_k"):
        moe.plan(num_experts=8, top_k=9, hidden=64, intermediate=32)
    with pytest.raises(ValueError, match="memory"):
        moe.plan(num_experts=8, top_k=2, hidden=64, intermediate=32,
                 memory="disk")


def test_layer_plan_and_backend(rng):
    w13 = ref.random(rng, (8, 64, 32), 0.3)
    w2 = ref.random(rng, (8, 32, 32), 0.3)
    with moe.Layer(w13, w2, top_k=2, backend="cpu-ref") as layer:
        assert layer.backend == "cpu-ref" == layer.plan.chosen
        assert "cpu-ref" in str(layer.plan)
        assert "cpu-ref" in repr(layer)
    with moe.Layer(w13, w2, top_k=2) as layer:
        assert layer.backend == layer.plan.chosen
        assert layer.backend in moe.backends()


def test_shared_context(rng):
    w13 = ref.random(rng, (8, 64, 32), 0.3)
    w2 = ref.random(rng, (8, 32, 32), 0.3)
    x = ref.random(rng, (3, 32))
    logits = ref.random(rng, (3, 8))
    with moe.Context(num_threads=1, ref_double_accumulation=True) as ctx:
        assert ctx.device_info
        a = moe.Layer(w13, w2, top_k=2, context=ctx)
        b = moe.Layer(w13, w2, top_k=3, context=ctx)
        assert a.context is ctx and b.context is ctx
        a.forward(x, logits)
        b.forward(x, logits)
        a.close()
        b.close()
        assert ctx.handle  # the shared context outlives its layers
    with pytest.raises(TypeError, match="moe.Context"):
        moe.Layer(w13, w2, top_k=2, context=object())
    # closing a context closes the layers made on it
    ctx = moe.Context()
    layer = moe.Layer(w13, w2, top_k=2, context=ctx)
    ctx.close()
    assert layer.closed
    with pytest.raises(ValueError, match="closed"):
        layer.forward(x, logits)
    with pytest.raises(ValueError, match="closed"):
        moe.Layer(w13, w2, top_k=2, context=ctx)


def test_fault_free_layer_keeps_weights_alive(rng):
    """The layer borrows the weights: dropping the caller's names must not
    free them."""
    w13 = ref.random(rng, (8, 64, 32), 0.3)
    w2 = ref.random(rng, (8, 32, 32), 0.3)
    keep13, keep2 = w13.copy(), w2.copy()
    layer = moe.Layer(w13, w2, top_k=2)
    del w13, w2
    x = ref.random(rng, (5, 32))
    logits = ref.random(rng, (5, 8))
    out = layer.forward(x, logits)
    assert ref.rel_error(out, ref.forward(x, logits, keep13, keep2, 2)) < 1e-4
    layer.close()


# ---- finding the library ----


def _run(code, env_extra, pythonpath):
    env = {k: v for k, v in os.environ.items()
           if k not in ("MOE_LIBRARY", "PYTHONPATH")}
    env.update(env_extra)
    env["PYTHONPATH"] = pythonpath
    return subprocess.run([sys.executable, "-c", code], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def package_copy(tmp_path, repo_root):
    """The package copied where no build/ directory is near it."""
    dst = tmp_path / "site" / "moe"
    shutil.copytree(os.path.join(repo_root, "python", "moe"), dst,
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    return dst


def test_library_from_environment(package_copy):
    lib = moe.library_path()
    r = _run("import moe; print(moe.library_path()); print(moe.version())",
             {"MOE_LIBRARY": lib}, str(package_copy.parent))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == lib


def test_bad_environment_path_is_a_clear_error(package_copy, tmp_path):
    missing = str(tmp_path / "nowhere" / "libmoe.so")
    r = _run("import moe\ntry:\n moe.version()\nexcept moe.LibraryNotFoundError"
             " as e:\n print('ERR', e)",
             {"MOE_LIBRARY": missing}, str(package_copy.parent))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ERR") and missing in r.stdout


def test_library_next_to_package(package_copy):
    shutil.copyfile(moe.library_path(), package_copy / "libmoe.so")
    r = _run("import moe; print(moe.library_path())", {},
             str(package_copy.parent))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(package_copy / "libmoe.so")


def test_library_not_found_lists_the_search(package_copy):
    r = _run("import moe\ntry:\n moe.Layer\n moe.version()\n"
             "except moe.LibraryNotFoundError as e:\n print('ERR', e)",
             {"LD_LIBRARY_PATH": ""}, str(package_copy.parent))
    assert r.returncode == 0, r.stderr
    if not r.stdout.startswith("ERR"):
        pytest.skip("a libmoe is installed system-wide")
    assert "MOE_LIBRARY" in r.stdout and "find_library" in r.stdout
