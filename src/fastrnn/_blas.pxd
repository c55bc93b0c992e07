# The one place fastrnn calls BLAS.  All matrices are row-major (C order); the column-major
# Fortran BLAS is reached by swapping operands: C = op(A) @ op(B) in row-major is
# C^T = op(B)^T @ op(A)^T in column-major, i.e. the same buffers with A and B exchanged.
from cython cimport floating

cdef void gemm(bint trans_a, bint trans_b, int m, int n, int k,
               floating alpha, const floating* a, int lda,
               const floating* b, int ldb,
               floating beta, floating* c, int ldc) noexcept nogil

# C (m, n) = op(A) @ op(B) (+ C when accumulate) as fixed blocks of rows shared out between
# nthreads threads (same per-element results for any nthreads).  BLAS runs single-threaded
# during engine calls (fastrnn._threads), so its workers never compete with these threads.
cdef void gemm_split(bint trans_a, bint trans_b, int m, int n, int k,
                     const floating* a, int lda, const floating* b, int ldb,
                     bint accumulate, floating* c, int ldc, int nthreads) noexcept nogil

# C (m, n) = A (m, k) @ op(B) (+ C) as blocks of columns (depending on n only) shared out
# between nthreads threads.
cdef void gemm_split_cols(bint trans_b, int m, int n, int k,
                          const floating* a, int lda, const floating* b, int ldb,
                          bint accumulate, floating* c, int ldc, int nthreads) noexcept nogil
