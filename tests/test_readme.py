"""The README's Python code blocks run as written, in order, in one namespace (so they
stay true).  A block that imports an optional package that is not installed (torch, keras,
onnx, onnxruntime, matplotlib) is skipped, and so is a later block that uses a name only
such a block defines."""
import ast
import importlib.util
import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _blocks():
    with open(README, encoding="utf-8") as f:
        return re.findall(r"^```python\n(.*?)^```", f.read(), flags=re.S | re.M)


OPTIONAL = {"torch", "keras", "onnx", "onnxruntime", "matplotlib"}


def _imports(tree):
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module.split(".")[0])
    return out


def _assigns(tree):
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
            and isinstance(n.ctx, ast.Store)}


def _reads(tree):
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
            and isinstance(n.ctx, ast.Load)} - _assigns(tree)


@pytest.mark.filterwarnings("ignore::DeprecationWarning:keras")      # Keras's own, on NumPy 2
@pytest.mark.skipif(not os.path.exists(README), reason="README.md is not shipped with installs")
def test_readme_python_blocks_run_in_order(tmp_path, monkeypatch):
    blocks = _blocks()
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)                      # the blocks write model files
    namespace = {"__name__": "__readme__"}
    missing = {m for m in OPTIONAL if importlib.util.find_spec(m) is None}
    ran, unavailable = 0, set()
    for i, code in enumerate(blocks):
        tree = ast.parse(code)
        if _imports(tree) & missing or _reads(tree) & unavailable:
            unavailable |= _assigns(tree)
            continue
        try:
            exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"README python block {i + 1} failed: {exc!r}\n{code}") from exc
        ran += 1
    assert ran >= 6
    # what the blocks promise
    assert (tmp_path / "classifier.fastrnn").exists() and (tmp_path / "log.csv").exists()
    history = namespace["history"]
    assert len(history.history["val_accuracy"]) == len(history.epoch) >= 1
