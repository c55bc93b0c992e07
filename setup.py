"""Build the Cython kernels.  `pip install .` is all that is needed.

FASTRNN_DEBUG=1 compiles with bounds checks and assertions on (slow; for debugging kernels).
No -march=native: wheels must run on any x86-64 / aarch64 CPU.
"""
import os
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FASTRNN_DEBUG", "0") not in ("", "0")

if sys.platform == "win32":
    extra_compile_args = ["/O2"]
else:
    # -fno-trapping-math lets the compiler if-convert the branch-free activation code
    # (csrc/fr_simd.c) into vector selects; nothing in fastrnn reads FP exception flags.
    extra_compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math"]
    if DEBUG:
        extra_compile_args = ["-O0", "-g"]

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}

MODULES = ["_blas", "_simd", "_rnn", "_lstm", "_gru"]
C_SOURCES = {"_simd": ["csrc/fr_simd.c"]}

extensions = [
    Extension(
        f"fastrnn.{name}",
        [f"src/fastrnn/{name}.pyx"] + C_SOURCES.get(name, []),
        include_dirs=[np.get_include(), "csrc"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=extra_compile_args,
    )
    for name in MODULES
]

setup(
    ext_modules=cythonize(extensions, compiler_directives=directives,
                          include_path=["src"]),
)
