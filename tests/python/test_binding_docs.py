"""The code blocks of docs/python.md run as written."""

import os
import re

import pytest


def _blocks(repo_root):
    path = os.path.join(repo_root, "docs", "python.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _has_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def test_docs_have_examples(repo_root):
    blocks = _blocks(repo_root)
    assert len(blocks) >= 4
    assert any("torch.nn.Module" in b for b in blocks)
    assert any("import torch" not in b and "NumpyMoEBlock" in b
               for b in blocks)


@pytest.mark.parametrize("index", range(8))
def test_docs_example_runs(repo_root, index, capsys):
    blocks = _blocks(repo_root)
    if index >= len(blocks):
        pytest.skip("docs/python.md has %d python blocks" % len(blocks))
    code = blocks[index]
    if "import torch" in code and not _has_torch():
        pytest.skip("example %d needs torch, which is not installed" % index)
    exec(compile(code, "docs/python.md[%d]" % index, "exec"),
         {"__name__": "__docs__"})
