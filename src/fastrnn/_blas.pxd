# The one place fastrnn calls BLAS.  All matrices are row-major (C order); the column-major
# Fortran BLAS is reached by swapping operands: C = op(A) @ op(B) in row-major is
# C^T = op(B)^T @ op(A)^T in column-major, i.e. the same buffers with A and B exchanged.
from cython cimport floating

cdef void gemm(bint trans_a, bint trans_b, int m, int n, int k,
               floating alpha, const floating* a, int lda,
               const floating* b, int ldb,
               floating beta, floating* c, int ldc) noexcept nogil

# Thread-local BLAS thread count (OpenBLAS >= 0.3.27 `openblas_set_num_threads_local`, found
# in SciPy's BLAS at import): the kernels split large products between their own threads and
# make each BLAS call single-threaded, so BLAS workers never compete with kernel threads.
# Returns the previous setting, or -1 when the BLAS has no such control.  n = 0 restores the
# library-wide setting.
cdef int blas_local_threads(int n) noexcept nogil

# C (m, n) = op(A) @ op(B) (+ C when accumulate) with the m rows split between nthreads
# threads, each running single-threaded BLAS on its block (same per-element results for any
# nthreads).
cdef void gemm_split(bint trans_a, bint trans_b, int m, int n, int k,
                     const floating* a, int lda, const floating* b, int ldb,
                     bint accumulate, floating* c, int ldc, int nthreads) noexcept nogil
