"""The README's Python code blocks run as written, in order, in one namespace (so they
stay true).  A block that needs torch is skipped when torch is not installed."""
import importlib.util
import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _blocks():
    with open(README, encoding="utf-8") as f:
        return re.findall(r"^```python\n(.*?)^```", f.read(), flags=re.S | re.M)


@pytest.mark.skipif(not os.path.exists(README), reason="README.md is not shipped with installs")
def test_readme_python_blocks_run_in_order(tmp_path, monkeypatch):
    blocks = _blocks()
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)                      # the blocks write model files
    namespace = {"__name__": "__readme__"}
    has_torch = importlib.util.find_spec("torch") is not None
    ran = 0
    for i, code in enumerate(blocks):
        if "import torch" in code and not has_torch:
            continue
        try:
            exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"README python block {i + 1} failed: {exc!r}\n{code}") from exc
        ran += 1
    assert ran >= len(blocks) - 1
    # what the blocks promise
    assert (tmp_path / "classifier.fastrnn").exists() and (tmp_path / "log.csv").exists()
    history = namespace["history"]
    assert len(history.history["val_accuracy"]) == len(history.epoch) >= 1
