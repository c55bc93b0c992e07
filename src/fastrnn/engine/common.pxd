# Helpers shared by the per-cell kernels (rnn.pyx, lstm.pyx, gru.pyx).
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
import numpy as np
cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

from cython.parallel cimport parallel, prange
from fastrnn.engine.blas cimport gemm_split
from fastrnn.engine.simd cimport mul_f32, mul_f64

# Inference computes input projections this many rows at a time (bounded workspace).
cdef enum:
    INFER_ROWS = 1024


cdef inline _check_double(x):
    """The kernels take native float32 or float64 only (functional.py converts the rest)."""
    if x.dtype != np.float64:
        raise TypeError(f"kernel input must be native float32 or float64, got {x.dtype}")


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


cdef inline void clamp_units(floating* v, Py_ssize_t B, Py_ssize_t H, Py_ssize_t u0,
                             Py_ssize_t nu, double clip) noexcept nogil:
    # v[:, u0:u0+nu] clamped to [-clip, clip] (NaN stays NaN): per-step clipping of the
    # gradient carried back through the recurrence
    cdef Py_ssize_t b, j
    cdef floating c = <floating>clip
    cdef floating* row
    for b in range(B):
        row = v + b * H + u0
        for j in range(nu):
            if row[j] > c:
                row[j] = c
            elif row[j] < -c:
                row[j] = -c


cdef inline void copy_or_zero(floating* dst, const floating* src, Py_ssize_t n) noexcept nogil:
    if src == NULL:
        memset(dst, 0, n * sizeof(floating))
    else:
        memcpy(dst, src, n * sizeof(floating))


cdef inline void input_projection(Py_ssize_t rows, Py_ssize_t GH, Py_ssize_t I,
                                  const floating* x, const floating* w_ih,
                                  const floating* bias, floating* out,
                                  int nthreads) noexcept nogil:
    """out (rows, GH) = x (rows, I) @ w_ih.T + bias, bias (GH,) or NULL."""
    cdef Py_ssize_t r
    if bias != NULL:
        for r in range(rows):
            memcpy(out + r * GH, bias, GH * sizeof(floating))
    # out (+)= x @ w_ih.T
    gemm_split(False, True, <int>rows, <int>GH, <int>I, x, <int>I, w_ih, <int>I,
               bias != NULL, out, <int>GH, nthreads, True)


cdef inline void column_sums(Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t ld,
                             const floating* a, floating* out, int nthreads) noexcept nogil:
    """out (cols,) = a[:, :cols].sum(axis=0) for a (rows, ld); each column summed in row
    order by one thread (the result does not depend on nthreads)."""
    column_dots(rows, cols, ld, a, NULL, out, nthreads)


cdef inline void column_dots(Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t ld,
                             const floating* a, const floating* b, floating* out,
                             int nthreads) noexcept nogil:
    """out (cols,) = (a * b)[:, :cols].sum(axis=0) for a, b (rows, ld), or of a alone when b
    is NULL; each column summed in row order by one thread."""
    cdef Py_ssize_t part, r, j0, j1
    cdef const floating* row
    cdef const floating* brow
    if nthreads > cols:
        nthreads = <int>cols
    with parallel(num_threads=nthreads):
        for part in prange(nthreads, schedule="static"):
            j0 = cols * part // nthreads
            j1 = cols * (part + 1) // nthreads
            memset(out + j0, 0, (j1 - j0) * sizeof(floating))
            for r in range(rows):
                row = a + r * ld
                brow = (b + r * ld + j0) if b != NULL else NULL
                if floating is float:
                    mul_f32(out + j0, row + j0, brow, j1 - j0, True)
                else:
                    mul_f64(out + j0, row + j0, brow, j1 - j0, True)


cdef inline void input_side_grads(Py_ssize_t rows, Py_ssize_t I, Py_ssize_t GH,
                                  const floating* x, const floating* w_ih,
                                  const floating* d_gates, floating* dx, floating* dw_ih,
                                  floating* db, int nthreads) noexcept nogil:
    """Gradients through the input projection, as large GEMMs over all rows = T*B.
    d_gates (rows, GH) are the pre-activation gradients on the input side."""
    # dW_ih = dG.T @ X
    gemm_split(True, False, <int>GH, <int>I, <int>rows, d_gates, <int>GH, x, <int>I,
               False, dw_ih, <int>I, nthreads, False)
    # dX = dG @ W_ih
    gemm_split(False, False, <int>rows, <int>I, <int>GH, d_gates, <int>GH, w_ih, <int>I,
               False, dx, <int>I, nthreads, False)
    # db = dG.sum(0)
    if db != NULL:
        column_sums(rows, GH, GH, d_gates, db, nthreads)


# ---- packed-panel recurrent products (csrc/fr_gemm.c) ---------------------------------------
# The recurrent weight is packed once per call into panels of NR columns (NR = 16 floats or
# 8 doubles).  Forward: panels grouped by blocks of NR hidden units, one panel per gate
# (fastrnn.engine.simd.unit_block_layout); each thread owns whole unit blocks, so it computes its
# units' gates and their elementwise update without waiting for the other threads.
from fastrnn.engine.simd cimport (FR_NR_F32, FR_NR_F64, gemm_panels_f32, gemm_panels_f64,
                            pack_panels_f32, pack_panels_f64)


cdef inline Py_ssize_t panel_cols(const floating* any_array) noexcept nogil:
    if floating is float:
        return FR_NR_F32
    else:
        return FR_NR_F64


cdef inline void pack_panels(const floating* w, Py_ssize_t ldw, bint trans, Py_ssize_t K,
                             Py_ssize_t npanels, const Py_ssize_t* col0, const int* width,
                             floating* panels) noexcept nogil:
    if floating is float:
        pack_panels_f32(w, ldw, trans, K, npanels, col0, width, panels)
    else:
        pack_panels_f64(w, ldw, trans, K, npanels, col0, width, panels)


cdef inline void gemm_panels(Py_ssize_t M, Py_ssize_t K, const floating* A, Py_ssize_t lda,
                             const floating* panels, Py_ssize_t npanels,
                             const Py_ssize_t* col0, const int* width, floating* C,
                             Py_ssize_t ldc, bint accumulate) noexcept nogil:
    """C[:, col0[q]:col0[q]+width[q]] (+)= A (M, K) @ panel q, for each of npanels panels."""
    if floating is float:
        gemm_panels_f32(M, K, A, lda, panels, npanels, col0, width, C, ldc, accumulate)
    else:
        gemm_panels_f64(M, K, A, lda, panels, npanels, col0, width, C, ldc, accumulate)


cdef inline Py_ssize_t chunk_projection(
        Py_ssize_t s0, Py_ssize_t n, Py_ssize_t T, bint reverse,
        Py_ssize_t B, Py_ssize_t I, Py_ssize_t GH,
        const floating* x, const floating* w_ih, const floating* bias,
        floating* gates, int nthreads) noexcept nogil:
    """Input projections of the n steps s0 .. s0+n-1 into `gates` (n, B, GH), in time order.
    Returns the first time index held, so time t is at gates + (t - t_lo) * B * GH."""
    cdef Py_ssize_t t_lo = T - s0 - n if reverse else s0
    input_projection(n * B, GH, I, x + t_lo * B * I, w_ih, bias, gates, nthreads)
    return t_lo


cdef inline void step_input(Py_ssize_t B, Py_ssize_t I, const floating* x,
                            const floating* panels, Py_ssize_t npanels,
                            const Py_ssize_t* col0, const int* width, const floating* bias,
                            floating* g, Py_ssize_t GH) noexcept nogil:
    """Streaming step: g[:, panel columns] = x (B, I) @ W_ih[panel columns].T + bias, for the
    given panels of the packed input weight."""
    cdef Py_ssize_t b, q, j
    cdef floating* row
    gemm_panels(B, I, x, I, panels, npanels, col0, width, g, GH, False)
    if bias != NULL:
        for b in range(B):
            row = g + b * GH
            for q in range(npanels):
                for j in range(col0[q], col0[q] + width[q]):
                    row[j] += bias[j]


# Two parallel schemes (fastrnn.functional._plan picks one per call): by hidden units, where
# each thread owns groups of unit blocks for every row and the threads meet once a step (the
# prange in each step), and by rows (by_rows), where each thread takes rows
# B*p//n .. B*(p+1)//n through every step with no barrier, the block functions being called
# with that row range and all unit blocks.  Either way each output is the same dot product.
# Work is handed out to threads in groups of consecutive unit blocks: up to GROUP blocks per
# group (so products with one panel per block still run several panels per kernel call:
# more independent accumulators for small batches), but small enough that every thread gets
# a group.  Grouping never changes a result: each output is the same dot product.
cdef enum:
    GROUP = 4


cdef inline Py_ssize_t group_size(Py_ssize_t nub, int nthreads) noexcept nogil:
    cdef Py_ssize_t gs = (nub + nthreads - 1) // nthreads
    return max(<Py_ssize_t>1, min(<Py_ssize_t>GROUP, gs))


cdef inline Py_ssize_t n_groups(Py_ssize_t nub, Py_ssize_t gs) noexcept nogil:
    return (nub + gs - 1) // gs


cdef inline Py_ssize_t group_panels(Py_ssize_t grp, Py_ssize_t nub, Py_ssize_t gs) noexcept nogil:
    return min(gs, nub - grp * gs)


cdef inline Py_ssize_t group_units(Py_ssize_t grp, Py_ssize_t nub, const Py_ssize_t* col0,
                                   const int* width, Py_ssize_t gs) noexcept nogil:
    """Hidden units covered by group grp (consecutive: col0[q] = q * NR)."""
    cdef Py_ssize_t last = grp * gs + group_panels(grp, nub, gs) - 1
    return col0[last] + width[last] - col0[grp * gs]
