"""What fastrnn runs on: BLAS, kernel level, threads, CPU.  `fastrnn.show_config()` or
`fastrnn --version --verbose`."""
import os
import platform
import sys

import numpy as np
import scipy

from fastrnn._version import __version__
from fastrnn.engine import blas as _blas, cpu as _cpu, simd as _simd, threads as _threads


def config():
    """The configuration as a dict (what show_config prints)."""
    flags = _cpu.cpu_flags()
    interesting = ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw",
                   "avx512vl", "avx512_bf16", "amx_tile", "asimd", "sve"]
    blas = _blas.blas_info()
    return {
        "fastrnn": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "cpu": _cpu.cpu_model(),
        "cpu_features": [f for f in interesting if f in flags],
        "logical_cpus": os.cpu_count(),
        "l2_cache_per_core": f"{_cpu.l2_cache_bytes() >> 10} KiB (the parallel scheme's cost model)",
        "kernel_level": _simd.current(),
        "kernel_level_best": _simd.supported(),
        "openmp": _simd.openmp_threads_available(),
        "engine_threads": _threads.get_num_threads(),
        "thread_mode": ("fixed" if _threads._fixed_threads is not None else
                        "adaptive (CPUs other programs leave free)"),
        "threads_now": _threads.threads_now(),
        "blas_library": blas.get("library"),
        "blas_config": blas.get("config"),
        "blas_core": blas.get("core"),
        "blas_core_choice": dict(_cpu.blas_core_choice),
        "blas_threads": _blas.get_blas_threads(),
    }


def show_config(file=None):
    """Print the BLAS in use, the kernel level chosen, thread counts and CPU features."""
    cfg = config()
    choice = cfg.pop("blas_core_choice")
    lines = [f"{k:18s} {v}" for k, v in cfg.items() if k != "cpu_features"]
    lines.insert(6, f"{'cpu_features':18s} {' '.join(cfg['cpu_features']) or '-'}")
    lines.append(f"{'blas_core_choice':18s} {choice['requested'] or 'library default'}"
                 f" ({choice['reason']})")
    print("\n".join(lines), file=file or sys.stdout)
