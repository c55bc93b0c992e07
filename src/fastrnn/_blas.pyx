"""Fused float/double GEMM over scipy's BLAS, row-major.

`gemm` computes C (m, n) = alpha * op(A) @ op(B) + beta * C where op(A) is (m, k), op(B) is
(k, n), and lda/ldb/ldc are row strides in elements.  `_gemm` is a Python entry point used by
the tests to compare the wrapper with NumPy.
"""
import numpy as np
from scipy.linalg.cython_blas cimport sgemm, dgemm


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
