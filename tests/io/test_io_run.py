"""`moe run` on a small checkpoint of each family, compared with the numpy
reference of that family's MoE layer (io_reference.py), plus the CLI's error
paths. The binary comes from MOE_BIN (set by ctest), else build/moe.

Run: MOE_BIN=build/moe python3 -m pytest tests/io
"""

import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import io_fixtures as fixtures  # noqa: E402
import io_reference as reference  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
MOE = os.environ.get("MOE_BIN", os.path.join(ROOT, "build", "moe"))
TIMEOUT = 120


def moe_run(*args):
    return subprocess.run([MOE, "run", *args], capture_output=True,
                          text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    if not os.path.exists(MOE):
        pytest.skip("no moe binary at %s (set MOE_BIN)" % MOE)
    base = tmp_path_factory.mktemp("ckpt")
    seed = int(os.environ.get("MOE_TEST_SEED", "0")) or \
        int.from_bytes(os.urandom(4), "little")
    print("fixture seed: MOE_TEST_SEED=%d" % seed)
    rng = np.random.default_rng(seed)
    out = {}
    for name, (writer, layer) in fixtures.FAMILIES.items():
        path = str(base / name)
        tensors, cfg = writer(path, rng)
        out[name] = (path, tensors, cfg, layer)
    return out


def rel_error(got, ref):
    assert np.all(np.isfinite(got)), "non-finite output"
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


def check_family(checkpoints, tmp_path, name, dtype, tol, tokens=7):
    path, tensors, cfg, layer = checkpoints[name]
    out = str(tmp_path / ("%s.safetensors" % name))
    r = moe_run("--model", path, "--layer", str(layer), "--tokens",
                str(tokens), "--dtype", dtype, "--output", out, "--seed",
                str(np.random.default_rng().integers(1, 1 << 30)))
    assert r.returncode == 0, r.stderr + r.stdout
    assert "chosen" in r.stdout  # the plan is printed
    assert "forward: %d tokens" % tokens in r.stdout
    res = reference.load_safetensors(out)
    assert res["output"].shape == (tokens, cfg["hidden_size"])
    x = reference.f64(res["input"])
    family = "gpt_oss" if name.startswith("gpt_oss") else name
    ref = reference.moe_layer(family, tensors, cfg, layer, x)
    err = rel_error(reference.f64(res["output"]), ref)
    print("%s %s: relative error %.3g" % (name, dtype, err))
    assert err < tol, "%s %s: relative error %g" % (name, dtype, err)


@pytest.mark.parametrize("name", sorted(fixtures.FAMILIES))
def test_family_bf16(checkpoints, tmp_path, name):
    check_family(checkpoints, tmp_path, name, "bf16", 1e-2)


def test_qwen3_fp32_tight(checkpoints, tmp_path):
    # fp32 checkpoint and fp32 layer: only accumulation order differs.
    check_family(checkpoints, tmp_path, "qwen3_moe", "f32", 1e-4, tokens=33)


@pytest.mark.parametrize("name", ["gpt_oss", "gpt_oss_mxfp4", "deepseek_v3"])
def test_dequant_fp32_tight(checkpoints, tmp_path, name):
    # FP8 block scales and MXFP4 dequantised exactly into fp32 weights.
    check_family(checkpoints, tmp_path, name, "f32", 1e-4)


def test_input_file(checkpoints, tmp_path):
    """--input: tokens from a file written by the official package."""
    from safetensors.numpy import save_file
    path, tensors, cfg, layer = checkpoints["nemotron_h"]
    x = np.random.default_rng().standard_normal((3, cfg["hidden_size"]))
    inp, out = str(tmp_path / "in.safetensors"), str(tmp_path / "out.st")
    save_file({"input": x.astype(np.float32)}, inp)
    r = moe_run("--model", path, "--layer", str(layer), "--input", inp,
                "--output", out, "--dtype", "f32")
    assert r.returncode == 0, r.stderr
    res = reference.load_safetensors(out)
    assert "input" not in res
    ref = reference.moe_layer("nemotron_h", tensors, cfg, layer,
                              reference.f64(x.astype(np.float32)))
    assert rel_error(reference.f64(res["output"]), ref) < 1e-4


def test_default_layer_is_first_moe_layer(checkpoints, tmp_path):
    path, _, _, _ = checkpoints["qwen3_moe"]
    r = moe_run("--model", path, "--tokens", "1")
    assert r.returncode == 0, r.stderr
    assert "layer 0:" in r.stdout


@pytest.mark.parametrize("name,layer", [("qwen3_moe", 1),
                                        ("deepseek_v3", 0),
                                        ("nemotron_h", 0),
                                        ("nemotron_h", 3)])
def test_dense_layer_refused(checkpoints, name, layer):
    path = checkpoints[name][0]
    r = moe_run("--model", path, "--layer", str(layer))
    assert r.returncode == 1
    assert "is not a MoE layer" in r.stderr


def test_layer_out_of_range(checkpoints):
    r = moe_run("--model", checkpoints["mixtral"][0], "--layer", "99")
    assert r.returncode == 1 and "out of range" in r.stderr


def test_missing_tensor_named(checkpoints, tmp_path):
    """A shard that lost a tensor: the error names the tensor, no output."""
    import shutil
    src = checkpoints["mixtral"][0]
    dst = str(tmp_path / "mixtral")
    shutil.copytree(src, dst)
    idx = os.path.join(dst, "model.safetensors.index.json")
    import json
    with open(idx) as f:
        j = json.load(f)
    victim = "model.layers.1.block_sparse_moe.experts.5.w3.weight"
    del j["weight_map"][victim]
    with open(idx, "w") as f:
        json.dump(j, f)
    out = str(tmp_path / "o.safetensors")
    r = moe_run("--model", dst, "--layer", "1", "--output", out)
    assert r.returncode == 1
    assert victim in r.stderr and "MOE_ERR_FORMAT" in r.stderr
    assert not os.path.exists(out)


def test_usage_errors():
    if not os.path.exists(MOE):
        pytest.skip("no moe binary")
    assert moe_run().returncode == 2
    assert moe_run("--model").returncode == 2
    assert moe_run("--model", "x", "--dtype", "f8").returncode == 2
    r = moe_run("--model", "/nonexistent-dir")
    assert r.returncode == 1 and "/nonexistent-dir/config.json" in r.stderr
