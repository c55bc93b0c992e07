"""Build the Cython kernels.  `pip install .` is all that is needed.

FASTRNN_DEBUG=1 compiles with bounds checks and assertions on (slow; for debugging kernels).
No -march=native: wheels must run on any x86-64 / aarch64 CPU.
"""
import os
import sys

import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FASTRNN_DEBUG", "0") not in ("", "0")

if sys.platform == "win32":
    extra_compile_args = ["/O2"]
    extra_link_args = []
else:
    # -fno-trapping-math lets the compiler if-convert the branch-free activation code
    # (csrc/fr_simd.c) into vector selects; nothing in fastrnn reads FP exception flags.
    user_flags = os.environ.get("CFLAGS", "").split()
    # -O3 unless CFLAGS asks for an optimisation level (e.g. a sanitizer build's -O1)
    extra_compile_args = [] if any(f.startswith("-O") for f in user_flags) else ["-O3"]
    extra_compile_args += ["-fno-math-errno", "-fno-trapping-math"]
    # release builds carry no debug info (Python's own CFLAGS say -g: 9 MB of .so instead
    # of about 1.5 MB); FASTRNN_DEBUG=1, or -g in CFLAGS, keeps it
    extra_link_args = []
    if "-g" not in user_flags:
        extra_compile_args += ["-g0"]
        extra_link_args = ["-Wl,--strip-debug"]
    if DEBUG:
        extra_compile_args = ["-O0", "-g"]
        extra_link_args = []



def openmp_flags():
    """-fopenmp if the C compiler accepts it (the recurrences split hidden units across
    threads with OpenMP); FASTRNN_OPENMP=0 builds single-threaded kernels."""
    if os.environ.get("FASTRNN_OPENMP", "1") in ("", "0") or sys.platform == "win32":
        return []
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.sysconfig import customize_compiler
    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp.c")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n")
        try:
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=["-fopenmp"])
            compiler.link_executable(objs, os.path.join(tmp, "omp"), extra_postargs=["-fopenmp"])
        except Exception:
            print("fastrnn: the C compiler does not support OpenMP; kernels run single-threaded")
            return []
    return ["-fopenmp"]


OPENMP = openmp_flags()

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}

# the compiled engine: src/fastrnn/engine/<name>.pyx -> fastrnn.engine.<name>
MODULES = ["blas", "simd", "rnn", "lstm", "lstmp", "gru", "variants", "optim", "loss"]
C_SOURCES = {"simd": ["csrc/fr_simd.c", "csrc/fr_gemm.c", "csrc/fr_norm.c"]}

extensions = [
    Extension(
        f"fastrnn.engine.{name}",
        [f"src/fastrnn/engine/{name}.pyx"] + C_SOURCES.get(name, []),
        include_dirs=[np.get_include(), "csrc"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=extra_compile_args + OPENMP,
        extra_link_args=extra_link_args + OPENMP,
    )
    for name in MODULES
]

setup(
    ext_modules=cythonize(extensions, compiler_directives=directives,
                          include_path=["src"]),
)
