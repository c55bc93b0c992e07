# The one place fastrnn calls BLAS.  All matrices are row-major (C order); the column-major
# Fortran BLAS is reached by swapping operands: C = op(A) @ op(B) in row-major is
# C^T = op(B)^T @ op(A)^T in column-major, i.e. the same buffers with A and B exchanged.
from cython cimport floating

cdef void gemm(bint trans_a, bint trans_b, int m, int n, int k,
               floating alpha, const floating* a, int lda,
               const floating* b, int ldb,
               floating beta, floating* c, int ldc) noexcept nogil

# C (m, n) = op(A) @ op(B) (+ C when accumulate) as blocks of rows (or, with by_cols, of
# columns) shared out between nthreads threads; the blocks depend on the size only, so the
# results are the same for any nthreads.  BLAS runs single-threaded during engine calls
# (fastrnn.engine.threads), so its workers never compete with these threads.
cdef void gemm_split(bint trans_a, bint trans_b, int m, int n, int k,
                     const floating* a, int lda, const floating* b, int ldb,
                     bint accumulate, floating* c, int ldc, int nthreads,
                     bint by_cols) noexcept nogil
