"""show_config / --version --verbose, the kernel-level override and the BLAS core choice
(each import-time setting checked in a fresh interpreter)."""
import json
import os
import subprocess
import sys

import pytest

import fastrnn
from fastrnn.__main__ import main


def _run(code, **env):
    full = dict(os.environ, **env)
    for name in [k for k, v in env.items() if v is None]:      # None: unset in the child
        del full[name]
    src = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    full["PYTHONPATH"] = os.pathsep.join([src, full.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full, timeout=120)


def test_show_config_lists_blas_kernel_threads_cpu(capsys):
    fastrnn.show_config()
    out = capsys.readouterr().out
    for key in ("kernel_level", "engine_threads", "blas_library", "blas_core", "cpu",
                "blas_core_choice", "openmp"):
        assert key in out
    cfg = fastrnn.config()
    assert cfg["kernel_level"] in ("generic", "avx2", "avx512")
    assert cfg["engine_threads"] == fastrnn.get_num_threads()


def test_version_verbose(capsys):
    assert main(["--version", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"fastrnn {fastrnn.__version__}\n")
    assert "blas_core" in out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"fastrnn {fastrnn.__version__}\n"


def test_simd_override_and_bad_value():
    ok = _run("import fastrnn; print(fastrnn.config()['kernel_level'])", FASTRNN_SIMD="generic")
    assert ok.returncode == 0 and ok.stdout.strip() == "generic"
    bad = _run("import fastrnn", FASTRNN_SIMD="sse9")
    assert bad.returncode != 0 and "FASTRNN_SIMD must be one of" in bad.stderr


def test_blas_core_request_applies_to_scipy_blas_only():
    """FASTRNN_BLAS_CORE picks OpenBLAS's core for SciPy's BLAS (Sandybridge: AVX kernels,
    which every x86-64 CPU with AVX runs) and leaves no OPENBLAS_CORETYPE behind."""
    if "avx" not in fastrnn.engine.cpu.cpu_flags():
        pytest.skip("needs an x86-64 CPU with AVX")
    code = ("import os, json, fastrnn; c = fastrnn.config(); "
            "print(json.dumps([c['blas_core'], c['blas_core_choice'], "
            "'OPENBLAS_CORETYPE' in os.environ]))")
    # some machines set OPENBLAS_CORETYPE globally: the child runs without it
    res = _run(code, FASTRNN_BLAS_CORE="Sandybridge", OPENBLAS_CORETYPE=None)
    assert res.returncode == 0, res.stderr
    core, choice, leaked = json.loads(res.stdout)
    if core is None:
        pytest.skip("SciPy's BLAS is not OpenBLAS")
    assert core.lower() == "sandybridge"
    assert choice["requested"] == "Sandybridge" and not leaked
    off = _run(code, FASTRNN_BLAS_CORE="off", OPENBLAS_CORETYPE=None)
    assert off.returncode == 0 and json.loads(off.stdout)[1]["requested"] is None
