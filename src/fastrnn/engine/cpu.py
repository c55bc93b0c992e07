"""CPU features and the BLAS core choice, settled before SciPy's BLAS library loads.

OpenBLAS (in the NumPy and SciPy wheels, through 0.3.34) identifies some AVX-512 CPUs (AMD
Zen 4/5) as "Haswell" and then runs its AVX2 kernels at about half the speed its AVX-512
("SkylakeX") kernels reach.  The choice is read from OPENBLAS_CORETYPE once, when the library
loads.  So, on import, fastrnn sets OPENBLAS_CORETYPE=SkylakeX for SciPy's BLAS when the
CPU and the OS really support AVX-512 (F, DQ, BW, VL) and the user has not chosen a core,
loads that library, and removes the variable again so nothing loaded later sees it.

Control: FASTRNN_BLAS_CORE=off keeps OpenBLAS's own choice; FASTRNN_BLAS_CORE=<name> asks for
core <name>; an OPENBLAS_CORETYPE already in the environment always wins.
"""
import os
import sys

AVX512_FLAGS = ("avx512f", "avx512dq", "avx512bw", "avx512vl")

# what happened at import, for show_config()
blas_core_choice = {"requested": None, "reason": ""}


def cpu_flags():
    """The CPU feature flags the OS reports (Linux /proc/cpuinfo), as a set; empty elsewhere.
    The kernel only lists AVX-512 when it also saves the AVX-512 registers, so a listed flag
    can be used."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


_L2_DEFAULT = 1 << 20


def _read_l2_cache_bytes():
    """One core's L2 cache in bytes: Linux sysfs, else sysconf, else 1 MiB."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for index in sorted(os.listdir(base)):
            path = os.path.join(base, index)
            with open(os.path.join(path, "level")) as f:
                if f.read().strip() != "2":
                    continue
            with open(os.path.join(path, "size")) as f:
                text = f.read().strip().upper()
            scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
            return int(text.rstrip("KMG")) * scale
    except (OSError, ValueError):
        pass
    try:
        size = os.sysconf("SC_LEVEL2_CACHE_SIZE")
        if size > 0:
            return size
    except (ValueError, OSError, AttributeError):
        pass
    return _L2_DEFAULT


_l2_bytes = None


def l2_cache_bytes():
    """One core's L2 cache in bytes (read once)."""
    global _l2_bytes
    if _l2_bytes is None:
        _l2_bytes = _read_l2_cache_bytes()
    return _l2_bytes


def _blas_already_loaded():
    if "scipy.linalg" in sys.modules or "scipy.linalg.cython_blas" in sys.modules:
        return True
    try:
        with open("/proc/self/maps") as f:
            return any("scipy_openblas" in line and "scipy.libs" in line for line in f)
    except OSError:
        return False


def choose_blas_core():
    """Pick OpenBLAS's core for SciPy's BLAS (see the module docstring) and load it."""
    wanted = os.environ.get("FASTRNN_BLAS_CORE", "auto")
    if "OPENBLAS_CORETYPE" in os.environ:
        blas_core_choice.update(requested=os.environ["OPENBLAS_CORETYPE"],
                                reason="OPENBLAS_CORETYPE set by the user")
    elif wanted.lower() == "off":
        blas_core_choice.update(reason="FASTRNN_BLAS_CORE=off: OpenBLAS's own detection")
    elif _blas_already_loaded():
        blas_core_choice.update(reason="SciPy's BLAS was loaded before fastrnn: its own "
                                       "detection stands")
    else:
        core = None
        if wanted.lower() != "auto":
            core, reason = wanted, "FASTRNN_BLAS_CORE"
        elif all(flag in cpu_flags() for flag in AVX512_FLAGS):
            core, reason = "SkylakeX", "CPU and OS support AVX-512"
        else:
            reason = "no AVX-512 on this CPU: OpenBLAS's own detection"
        blas_core_choice.update(requested=core, reason=reason)
        if core is not None:
            os.environ["OPENBLAS_CORETYPE"] = core
            try:
                import scipy.linalg.cython_blas  # noqa: F401  (loads the library now)
            finally:
                del os.environ["OPENBLAS_CORETYPE"]
