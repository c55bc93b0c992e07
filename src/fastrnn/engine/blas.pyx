"""Fused float/double GEMM over scipy's BLAS, row-major.

`gemm` computes C (m, n) = alpha * op(A) @ op(B) + beta * C where op(A) is (m, k), op(B) is
(k, n), and lda/ldb/ldc are row strides in elements.  `_gemm` is a Python entry point used by
the tests to compare the wrapper with NumPy.
"""
import ctypes
import glob
import os

import numpy as np
from cython.parallel cimport parallel, prange
from scipy.linalg.cython_blas cimport sgemm, dgemm

cdef enum:
    SPLIT_ROWS = 64
    SPLIT_BLOCKS = 12
    SPLIT_COLS = 128
    SPLIT_COL_BLOCKS = 4


def loaded_openblas():
    """Paths of every OpenBLAS this process has loaded (NumPy and SciPy each bring their
    own copy), from /proc/self/maps; empty where that is not available."""
    paths = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                path = parts[len(parts) - 1] if parts else ""
                if "openblas" in os.path.basename(path).lower() and path not in paths:
                    paths.append(path)
    except OSError:
        pass
    return paths


def _find_blas_library():
    """Path of the BLAS library scipy.linalg.cython_blas is linked against, or None."""
    for path in loaded_openblas():
        if "scipy" in path:
            return path
    import scipy
    hits = glob.glob(os.path.join(os.path.dirname(os.path.dirname(scipy.__file__)),
                                  "scipy.libs", "*openblas*"))
    return hits[0] if hits else None


BLAS_LIBRARY = _find_blas_library()
_blas_handle = None
_set_threads = _get_threads = None
if BLAS_LIBRARY is not None:
    try:
        _blas_handle = ctypes.CDLL(BLAS_LIBRARY)
    except OSError:
        _blas_handle = None
if _blas_handle is not None:
    for _prefix in ("scipy_openblas", "openblas"):
        _set_threads = getattr(_blas_handle, _prefix + "_set_num_threads", None)
        _get_threads = getattr(_blas_handle, _prefix + "_get_num_threads", None)
        if _set_threads is not None and _get_threads is not None:
            _set_threads.argtypes = [ctypes.c_int]
            _set_threads.restype = None
            _get_threads.restype = ctypes.c_int
            break
        _set_threads = _get_threads = None


def get_blas_threads():
    """Threads SciPy's BLAS uses per call, or None if it cannot be controlled."""
    return None if _get_threads is None else int(_get_threads())


def set_blas_threads(int n):
    """Set SciPy's BLAS thread count (no-op if it cannot be controlled)."""
    if _set_threads is not None:
        _set_threads(n)


def blas_info():
    """dict: library path, OpenBLAS core and configuration, thread count (when available)."""
    info = {"library": BLAS_LIBRARY, "thread_control": _set_threads is not None}
    if _blas_handle is not None:
        for key, names in (("core", ("scipy_openblas_get_corename", "openblas_get_corename")),
                           ("config", ("scipy_openblas_get_config", "openblas_get_config"))):
            for name in names:
                fn = getattr(_blas_handle, name, None)
                if fn is not None:
                    fn.restype = ctypes.c_char_p
                    info[key] = fn().decode()
                    break
        for name in ("scipy_openblas_get_num_threads", "openblas_get_num_threads"):
            fn = getattr(_blas_handle, name, None)
            if fn is not None:
                info["threads"] = fn()
                break
    return info


cdef void gemm(bint trans_a, bint trans_b, int m, int n, int k,
               floating alpha, const floating* a, int lda,
               const floating* b, int ldb,
               floating beta, floating* c, int ldc) noexcept nogil:
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if m == 0 or n == 0:
        return
    # row-major C = op(A) op(B)  <=>  column-major C^T = op(B)^T op(A)^T
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda,
              &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda,
              &beta, c, &ldc)


def matmul(a, b, c, bint trans_a=False, bint trans_b=False, bint accumulate=False,
           int nthreads=1):
    """c (+)= op(a) @ op(b) for C-contiguous 2-D arrays of one float dtype, GIL released: fixed
    row (or column) blocks of single-threaded BLAS spread over `nthreads` OpenMP threads, so
    the result does not depend on the thread count.  The caller checks the arguments."""
    cdef float[:, ::1] af, bf, cf
    cdef double[:, ::1] ad, bd, cd
    cdef int m = c.shape[0], n = c.shape[1]
    cdef int k = a.shape[0] if trans_a else a.shape[1]
    cdef bint by_cols = m < n
    if c.dtype == np.float32:
        af, bf, cf = a, b, c
        if m and n:
            with nogil:
                gemm_split[float](trans_a, trans_b, m, n, k, &af[0, 0], af.shape[1],
                                  &bf[0, 0], bf.shape[1], accumulate, &cf[0, 0], n,
                                  nthreads, by_cols)
    else:
        ad, bd, cd = a, b, c
        if m and n:
            with nogil:
                gemm_split[double](trans_a, trans_b, m, n, k, &ad[0, 0], ad.shape[1],
                                   &bd[0, 0], bd.shape[1], accumulate, &cd[0, 0], n,
                                   nthreads, by_cols)
    return c


def _gemm(a, b, c, bint trans_a=False, bint trans_b=False, alpha=1.0, beta=0.0):
    """c = alpha * op(a) @ op(b) + beta * c, in place on the C-contiguous array c (tests only)."""
    cdef float[:, ::1] af, bf, cf
    cdef double[:, ::1] ad, bd, cd
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    if (a.shape[1] if trans_a else a.shape[0]) != m or (b.shape[1] if trans_b else b.shape[0]) != k \
            or (b.shape[0] if trans_b else b.shape[1]) != n:
        raise ValueError("_gemm: incompatible shapes")
    if c.dtype == np.float32:
        af, bf, cf = a, b, c
        gemm[float](trans_a, trans_b, m, n, k, alpha, &af[0, 0], af.shape[1],
                    &bf[0, 0], bf.shape[1], beta, &cf[0, 0], cf.shape[1])
    elif c.dtype == np.float64:
        ad, bd, cd = a, b, c
        gemm[double](trans_a, trans_b, m, n, k, alpha, &ad[0, 0], ad.shape[1],
                     &bd[0, 0], bd.shape[1], beta, &cd[0, 0], cd.shape[1])
    else:
        raise TypeError(f"_gemm: c must be float32 or float64, got {c.dtype}")
    return c


cdef void gemm_split(bint trans_a, bint trans_b, int m, int n, int k,
                     const floating* a, int lda, const floating* b, int ldb,
                     bint accumulate, floating* c, int ldc, int nthreads,
                     bint by_cols) noexcept nogil:
    # Blocks of rows (or of columns) that depend on the problem size only, never on nthreads,
    # so every BLAS call (and so every result bit) is the same for any thread count.  Few,
    # large blocks: BLAS repacks the operand that is not split on every call, so a product of
    # few long rows against a big weight (the input projection) is split by columns.
    cdef int part, p0, p1
    cdef int extent = n if by_cols else m
    cdef int most = SPLIT_COL_BLOCKS if by_cols else SPLIT_BLOCKS
    if not by_cols and k > 4 * n:
        # a long inner dimension: every block repacks the whole k x n operand, so use few
        most = SPLIT_COL_BLOCKS
    cdef int size = max(SPLIT_COLS if by_cols else SPLIT_ROWS, (extent + most - 1) // most)
    cdef int nblocks = (extent + size - 1) // size
    cdef floating beta = 1 if accumulate else 0
    if nthreads > nblocks:
        nthreads = nblocks if nblocks > 0 else 1
    with parallel(num_threads=nthreads):
        for part in prange(nblocks, schedule="static"):
            p0 = part * size
            p1 = min(extent, p0 + size)
            if by_cols:
                gemm(trans_a, trans_b, m, p1 - p0, k, <floating>1, a, lda,
                     b + (<Py_ssize_t>p0 * ldb if trans_b else p0), ldb, beta, c + p0, ldc)
            else:
                gemm(trans_a, trans_b, p1 - p0, n, k, <floating>1,
                     a + (p0 if trans_a else <Py_ssize_t>p0 * lda), lda, b, ldb, beta,
                     c + <Py_ssize_t>p0 * ldc, ldc)
