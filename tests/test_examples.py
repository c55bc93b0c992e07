"""The scripts in examples/ run (quick mode) and print what they promise."""
import os
import subprocess
import sys

import pytest

import fastrnn

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


@pytest.mark.parametrize("script,expect", [
    ("classify_sequences.py", "validation: {'accuracy'"),
    ("forecast.py", "forecast:"),
    ("char_lm.py", "perplexity"),
    ("numpy_dropin.py", "final loss"),
    ("attention_classifier.py", "most attention at step"),
    ("regularized_lm.py", "recurrent_dropout=0.25"),
])
def test_example_runs(script, expect):
    path = os.path.join(EXAMPLES, script)
    if not os.path.exists(path):
        pytest.skip("examples/ is not shipped with installed packages")
    # the fastrnn under test, however it was found (installed or a source tree on the path)
    here = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [here] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    out = subprocess.run([sys.executable, path, "--quick"], capture_output=True, text=True,
                         timeout=600, cwd=EXAMPLES, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert expect in out.stdout + out.stderr
