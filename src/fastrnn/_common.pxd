# Helpers shared by the per-cell kernels (_rnn.pyx, _lstm.pyx, _gru.pyx).
#
# Conventions (all arrays C-contiguous, "rightmost dimension changes fastest"):
#   T steps, B batch rows, I input size, H hidden size, G gates, GH = G*H.
#   x (T, B, I); gates (T, B, GH) with gate blocks side by side in each row.
#   States are kept in "slots": in training the kernels keep every state, hs (T+1, B, H),
#   with the initial state in slot 0 (forward) or slot T (reverse), so the state before time t
#   is slot t (forward) or t+1 (reverse) and H_prev over all steps is ONE contiguous block of
#   T*B rows.  In inference only two slots (2, B, H) are kept and used in turn.
#   Variable lengths: row b is active at time t iff t < lengths[b], in both directions;
#   an inactive row keeps its state and outputs zeros, so a reverse row starts at its own
#   last valid step.  lengths == NULL means every row is active everywhere.
cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

from fastrnn._blas cimport gemm

# Inference computes input projections this many rows at a time (bounded workspace).
cdef enum:
    INFER_ROWS = 1024


cdef inline void* data_or_null(object a):
    """Raw data pointer of a C-contiguous ndarray, NULL for None (callers validated it)."""
    if a is None:
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline Py_ssize_t step_time(Py_ssize_t s, Py_ssize_t T, bint reverse) noexcept nogil:
    """Time index processed at step s of the forward recurrence."""
    return T - 1 - s if reverse else s


cdef inline Py_ssize_t prev_slot(Py_ssize_t s, Py_ssize_t t, bint reverse, bint keep) noexcept nogil:
    if not keep:
        return s & 1
    return t + 1 if reverse else t


cdef inline Py_ssize_t cur_slot(Py_ssize_t s, Py_ssize_t t, bint reverse, bint keep) noexcept nogil:
    if not keep:
        return (s + 1) & 1
    return t if reverse else t + 1


cdef inline bint is_active(const int64_t* lengths, Py_ssize_t b, Py_ssize_t t) noexcept nogil:
    return lengths == NULL or t < lengths[b]


cdef inline void copy_or_zero(floating* dst, const floating* src, Py_ssize_t n) noexcept nogil:
    if src == NULL:
        memset(dst, 0, n * sizeof(floating))
    else:
        memcpy(dst, src, n * sizeof(floating))


cdef inline void input_projection(Py_ssize_t rows, Py_ssize_t GH, Py_ssize_t I,
                                  const floating* x, const floating* w_ih,
                                  const floating* bias, floating* out) noexcept nogil:
    """out (rows, GH) = x (rows, I) @ w_ih.T + bias, bias (GH,) or NULL."""
    cdef Py_ssize_t r
    cdef floating beta = 0
    if bias != NULL:
        for r in range(rows):
            memcpy(out + r * GH, bias, GH * sizeof(floating))
        beta = 1
    # out += x @ w_ih.T
    gemm(False, True, <int>rows, <int>GH, <int>I, <floating>1, x, <int>I, w_ih, <int>I,
         beta, out, <int>GH)


cdef inline floating* step_preactivations(
        Py_ssize_t s, Py_ssize_t t, Py_ssize_t T, Py_ssize_t chunk, bint reverse,
        Py_ssize_t B, Py_ssize_t I, Py_ssize_t GH,
        const floating* x, const floating* w_ih, const floating* bias,
        floating* gates) noexcept nogil:
    """Pointer to the (B, GH) input projections of time t inside `gates`, which holds `chunk`
    consecutive time steps (chunk == T in training).  When step s starts a new chunk, the
    projections of the whole chunk are computed first with one GEMM."""
    cdef Py_ssize_t first = s - s % chunk
    cdef Py_ssize_t n = chunk if first + chunk <= T else T - first
    cdef Py_ssize_t t_lo = T - first - n if reverse else first
    if s == first:
        input_projection(n * B, GH, I, x + t_lo * B * I, w_ih, bias, gates)
    return gates + (t - t_lo) * B * GH


cdef inline void column_sums(Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t ld,
                             const floating* a, floating* out) noexcept nogil:
    """out (cols,) = a[:, :cols].sum(axis=0) for a (rows, ld); fixed summation order."""
    cdef Py_ssize_t r, j
    cdef const floating* row
    memset(out, 0, cols * sizeof(floating))
    for r in range(rows):
        row = a + r * ld
        for j in range(cols):
            out[j] += row[j]


cdef inline void input_side_grads(Py_ssize_t rows, Py_ssize_t I, Py_ssize_t GH,
                                  const floating* x, const floating* w_ih,
                                  const floating* d_gates, floating* dx, floating* dw_ih,
                                  floating* db) noexcept nogil:
    """Gradients through the input projection, as large GEMMs over all rows = T*B.
    d_gates (rows, GH) are the pre-activation gradients on the input side."""
    # dW_ih = dG.T @ X
    gemm(True, False, <int>GH, <int>I, <int>rows, <floating>1, d_gates, <int>GH, x, <int>I,
         <floating>0, dw_ih, <int>I)
    # dX = dG @ W_ih
    gemm(False, False, <int>rows, <int>I, <int>GH, <floating>1, d_gates, <int>GH, w_ih,
         <int>I, <floating>0, dx, <int>I)
    # db = dG.sum(0)
    if db != NULL:
        column_sums(rows, GH, GH, d_gates, db)
