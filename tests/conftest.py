"""Test-session settings.

FASTRNN_TESTS_NO_TORCH=1 hides torch (its tests skip as when it is not installed): the
sanitizer job (.ci/sanitize) runs the suite on an instrumented build, and torch is not."""
import os
import sys

if os.environ.get("FASTRNN_TESTS_NO_TORCH", "") not in ("", "0"):
    sys.modules["torch"] = None          # import torch -> ImportError -> importorskip skips
