"""LSTM forward and backward-through-time kernels (gate blocks i|f|g|o, PyTorch layout).

    i, f, o = sigmoid(.), g = tanh(.),  c' = f*c + i*g,  h' = o*tanh(c')

Python entry points `forward` and `backward` take arrays already validated by
fastrnn.functional (C-contiguous, one float dtype, right shapes) and run the whole recurrence
in one `with nogil:` block.  See common.pxd for the slot/length conventions.
"""
import numpy as np
cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

from cython.parallel cimport parallel, prange
from fastrnn.engine.simd cimport lstm_bwd_f32, lstm_bwd_f64, lstm_fwd_f32, lstm_fwd_f64
from fastrnn.engine.simd import pack_unit_blocks, unit_block_layout
from fastrnn.engine.workspace import empty as ws_empty, release as ws_release
from fastrnn.engine.blas cimport gemm_split
from fastrnn.engine.common cimport (GROUP, INFER_ROWS, _check_double, chunk_projection, clamp_units, copy_or_zero,
                              cur_slot,
                              data_or_null, group_panels, group_size, group_units, n_groups,
                              step_input,
                              gemm_panels, input_side_grads, is_active, pack_panels, panel_cols,
                              prev_slot, step_time)

cnp.import_array()


cdef inline void lstm_fwd_rows(Py_ssize_t n, floating* g, Py_ssize_t H,
                               const floating* c_prev, floating* c_cur, floating* h_cur,
                               floating* tc, const floating* peep) noexcept nogil:
    if floating is float:
        lstm_fwd_f32(n, g, H, c_prev, c_cur, h_cur, tc, peep)
    else:
        lstm_fwd_f64(n, g, H, c_prev, c_cur, h_cur, tc, peep)


cdef void lstm_forward_block(
        Py_ssize_t ub0, Py_ssize_t ub1, Py_ssize_t t, Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t H,
        const floating* panels, const Py_ssize_t* col0, const int* width,
        const int64_t* lengths, floating* g, const floating* h_prev, floating* h_cur,
        const floating* c_prev, floating* c_cur, floating* tc, floating* y_t,
        Py_ssize_t I, const floating* x_t, const floating* panels_x,
        const floating* bias, const floating* peep) noexcept nogil:
    """One step for the hidden units of unit blocks ub0 .. ub1-1 in rows b0 .. b1-1: their four
    gate pre-activations g[b, gate*H + u] += h_prev[b] @ W_hh[gate*H + u].T (one unit block's
    four panels at a time), then the cell update of those units.  With panels_x (packed W_ih,
    same layout) the input projection is made here too: g = x_t @ W_ih.T + bias first.
    peep: the peephole weights p_i|p_f|p_o (3H,), or NULL."""
    cdef Py_ssize_t GH = 4 * H
    cdef Py_ssize_t NR = panel_cols(g)
    cdef Py_ssize_t u0 = col0[4 * ub0]
    cdef Py_ssize_t nu = col0[4 * (ub1 - 1)] + width[4 * (ub1 - 1)] - u0
    cdef Py_ssize_t b, k, ub
    for ub in range(ub0, ub1):
        if panels_x != NULL:
            step_input(b1 - b0, I, x_t + b0 * I, panels_x + 4 * ub * I * NR, 4, col0 + 4 * ub,
                       width + 4 * ub, bias, g + b0 * GH, GH)
        gemm_panels(b1 - b0, H, h_prev + b0 * H, H, panels + 4 * ub * H * NR, 4,
                    col0 + 4 * ub, width + 4 * ub, g + b0 * GH, GH, True)
    for b in range(b0, b1):
        k = b * H + u0
        if not is_active(lengths, b, t):
            memcpy(h_cur + k, h_prev + k, nu * sizeof(floating))
            memcpy(c_cur + k, c_prev + k, nu * sizeof(floating))
            memset(y_t + k, 0, nu * sizeof(floating))
            continue
        lstm_fwd_rows(nu, g + b * GH + u0, H, c_prev + k, c_cur + k, h_cur + k, tc + k,
                      peep + u0 if peep != NULL else NULL)
        if y_t != NULL:
            memcpy(y_t + k, h_cur + k, nu * sizeof(floating))


cdef void lstm_forward_kernel(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
        const floating* x,          # IN  (T, B, I)
        const floating* w_ih,       # IN  (4H, I)
        const floating* w_hh,       # IN  (4H, H)
        const floating* bias,       # IN  (4H,) = b_ih + b_hh, or NULL
        const floating* peep,       # IN  (3H,) peephole weights p_i|p_f|p_o, or NULL
        const floating* h0,         # IN  (B, H) or NULL (zeros)
        const floating* c0,         # IN  (B, H) or NULL (zeros)
        const int64_t* lengths,     # IN  (B,) or NULL
        bint reverse, bint keep, Py_ssize_t chunk,
        const Py_ssize_t* col0, const int* width, Py_ssize_t nub, int nthreads, bint by_rows,
        floating* panels,           # WORK (4 * nub, H, NR) packed W_hh.T
        floating* panels_x,         # WORK (4 * nub, I, NR) packed W_ih.T, or NULL: see below
        floating* gates,            # OUT (chunk, B, 4H): post-activation gates when keep
        floating* hs,               # OUT (T+1 | 2, B, H) hidden-state slots
        floating* cs,               # OUT (T+1 | 2, B, H) cell-state slots
        floating* tanh_c,           # OUT (T, B, H) tanh(c_t) when keep, else WORK (B, H)
        floating* y,                # OUT (T, B, H)
        floating* hT, floating* cT  # OUT (B, H)
        ) noexcept nogil:
    # The input projection: as large BLAS products over `chunk` steps at a time, or, when the
    # caller packs W_ih (panels_x != NULL: weights small enough to stay in cache with W_hh),
    # step by step inside the recurrence (no separate pass over the gates, no BLAS call or
    # extra parallel region); then chunk is T, and gates is (1, B, 4H) unless keep.
    cdef Py_ssize_t GH = 4 * H, BH = B * H
    cdef Py_ssize_t s, s0, n, t, t_lo, ub, first, part, b0, b1
    cdef Py_ssize_t gstep = B * GH if (panels_x == NULL or keep) else 0
    cdef floating* g

    s = t = 0
    g = NULL
    pack_panels(w_hh, H, True, H, 4 * nub, col0, width, panels)
    if panels_x != NULL:
        pack_panels(w_ih, I, True, I, 4 * nub, col0, width, panels_x)
    first = T if (reverse and keep) else 0
    copy_or_zero(hs + first * BH, h0, BH)
    copy_or_zero(cs + first * BH, c0, BH)
    s0 = 0
    while s0 < T:
        n = min(chunk, T - s0)
        if panels_x == NULL:
            t_lo = chunk_projection(s0, n, T, reverse, B, I, GH, x, w_ih, bias, gates, nthreads)
        else:
            t_lo = 0
        if by_rows:
            with parallel(num_threads=nthreads):
                for part in prange(nthreads, schedule="static"):
                    b0 = B * part // nthreads
                    b1 = B * (part + 1) // nthreads
                    for s in range(s0, s0 + n):
                        t = step_time(s, T, reverse)
                        g = gates + (t - t_lo) * gstep
                        lstm_forward_block(
                                0, nub, t, b0, b1, H, panels, col0, width, lengths, g,
                                hs + prev_slot(s, t, reverse, keep) * BH,
                                hs + cur_slot(s, t, reverse, keep) * BH,
                                cs + prev_slot(s, t, reverse, keep) * BH,
                                cs + cur_slot(s, t, reverse, keep) * BH,
                                tanh_c + (t * BH if keep else 0), y + t * BH,
                                I, x + t * B * I, panels_x, bias, peep)
            s0 += n
            continue
        with parallel(num_threads=nthreads):
            for s in range(s0, s0 + n):
                t = step_time(s, T, reverse)
                g = gates + (t - t_lo) * gstep
                for ub in prange(nub, schedule="static"):
                    lstm_forward_block(
                        ub, ub + 1, t, 0, B, H, panels, col0, width, lengths, g,
                        hs + prev_slot(s, t, reverse, keep) * BH,
                        hs + cur_slot(s, t, reverse, keep) * BH,
                        cs + prev_slot(s, t, reverse, keep) * BH,
                        cs + cur_slot(s, t, reverse, keep) * BH,
                        tanh_c + (t * BH if keep else 0), y + t * BH,
                        I, x + t * B * I, panels_x, bias, peep)
        s0 += n
    t = cur_slot(T - 1, step_time(T - 1, T, reverse), reverse, keep)
    memcpy(hT, hs + t * BH, BH * sizeof(floating))
    memcpy(cT, cs + t * BH, BH * sizeof(floating))


cdef void lstm_backward_block(
        Py_ssize_t u0, Py_ssize_t nu, Py_ssize_t t, Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t H,
        const int64_t* lengths, const floating* dy_t, floating* g_t, const floating* c_prev,
        const floating* tc_t, const floating* dh, floating* dh_next,
        floating* dc, const floating* peep) noexcept nogil:
    """Units u0 .. u0+nu-1 of rows b0 .. b1-1 at time t: saved gates in g_t become
    pre-activation gradients; dc is carried back; dh_next is prepared for the recurrent
    product."""
    cdef Py_ssize_t GH = 4 * H
    cdef Py_ssize_t b, j, k
    cdef floating* g_row
    for b in range(b0, b1):
        g_row = g_t + b * GH + u0
        if not is_active(lengths, b, t):
            # state passed through unchanged: so does its gradient
            for j in range(4):
                memset(g_row + j * H, 0, nu * sizeof(floating))
            memcpy(dh_next + b * H + u0, dh + b * H + u0, nu * sizeof(floating))
            continue
        if lengths != NULL:
            memset(dh_next + b * H + u0, 0, nu * sizeof(floating))
        k = b * H + u0
        if floating is float:
            lstm_bwd_f32(nu, g_row, H, c_prev + k, tc_t + k, dh + k,
                         dy_t + k if dy_t != NULL else NULL, dc + k,
                         peep + u0 if peep != NULL else NULL)
        else:
            lstm_bwd_f64(nu, g_row, H, c_prev + k, tc_t + k, dh + k,
                         dy_t + k if dy_t != NULL else NULL, dc + k,
                         peep + u0 if peep != NULL else NULL)


cdef void lstm_backward_kernel(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
        const floating* x,          # IN  (T, B, I)
        const floating* w_ih,       # IN  (4H, I)
        const floating* w_hh,       # IN  (4H, H)
        const floating* peep,       # IN  (3H,) peephole weights, or NULL
        const int64_t* lengths,     # IN  (B,) or NULL
        bint reverse,
        const floating* dy,         # IN  (T, B, H) or NULL
        const floating* dhT,        # IN  (B, H) or NULL
        const floating* dcT,        # IN  (B, H) or NULL
        floating* gates,            # IN/OUT (T, B, 4H): saved gates in, d(pre-activations) out
        const floating* hs,         # IN  (T+1, B, H)
        const floating* cs,         # IN  (T+1, B, H)
        const floating* tanh_c,     # IN  (T, B, H)
        const Py_ssize_t* col0, const int* width, Py_ssize_t nub, int nthreads, bint by_rows,
        double clip,                # > 0: clamp the carried dh to [-clip, clip] every step
        floating* panels,           # WORK (nub, 4H, NR) packed W_hh by output unit block
        floating* dh0, floating* work,   # OUT dh0 (B, H); WORK (B, H)
        floating* dc,               # OUT (B, H) dc0 (starts as dcT)
        floating* dx,               # OUT (T, B, I)
        floating* dw_ih,            # OUT (4H, I)
        floating* dw_hh,            # OUT (4H, H)
        floating* db                # OUT (4H,) or NULL
        ) noexcept nogil:
    cdef Py_ssize_t GH = 4 * H, BH = B * H
    cdef Py_ssize_t s, t, ub, grp, part, b0, b1
    cdef floating* bufs[2]
    cdef Py_ssize_t NR = panel_cols(gates)
    cdef Py_ssize_t gs = GROUP if by_rows else group_size(nub, nthreads)

    s = t = 0
    bufs[0] = dh0
    bufs[1] = work
    pack_panels(w_hh, H, False, GH, nub, col0, width, panels)
    copy_or_zero(dh0, dhT, BH)
    copy_or_zero(dc, dcT, BH)
    if by_rows:
        # each thread: its rows through every step, all units, no barrier
        with parallel(num_threads=nthreads):
            for part in prange(nthreads, schedule="static"):
                b0 = B * part // nthreads
                b1 = B * (part + 1) // nthreads
                for s in range(T + 1):
                    if s > 0:
                        for grp in range(n_groups(nub, gs)):
                            gemm_panels(b1 - b0, GH,
                                        gates + (step_time(T - s, T, reverse) * B + b0) * GH,
                                        GH, panels + grp * gs * GH * NR,
                                        group_panels(grp, nub, gs), col0 + grp * gs,
                                        width + grp * gs, bufs[s & 1] + b0 * H, H,
                                        lengths != NULL)
                    if s < T:
                        t = step_time(T - 1 - s, T, reverse)
                        if clip > 0:
                            clamp_units(bufs[s & 1] + b0 * H, b1 - b0, H, 0, H, clip)
                        lstm_backward_block(
                            0, H, t, b0, b1, H, lengths, dy + t * BH if dy != NULL else NULL,
                            gates + t * B * GH, cs + prev_slot(0, t, reverse, True) * BH,
                            tanh_c + t * BH, bufs[s & 1], bufs[(s + 1) & 1], dc, peep)
    else:
        # Iteration s: the recurrent product of step s-1 for this thread's units, then the
        # update of step s for the same units (it only needs their own dh): one barrier a
        # step.
        with parallel(num_threads=nthreads):
            for s in range(T + 1):
                for grp in prange(n_groups(nub, gs), schedule="static"):
                    if s > 0:
                        # dh(s) [:, units] (+)= dG[t(s-1)] @ W_hh[:, units]
                        gemm_panels(B, GH, gates + step_time(T - s, T, reverse) * B * GH, GH,
                                    panels + grp * gs * GH * NR, group_panels(grp, nub, gs),
                                    col0 + grp * gs, width + grp * gs, bufs[s & 1], H,
                                    lengths != NULL)
                    if s < T:
                        t = step_time(T - 1 - s, T, reverse)      # forward steps in reverse
                        if clip > 0:
                            clamp_units(bufs[s & 1], B, H, col0[grp * gs],
                                        group_units(grp, nub, col0, width, gs), clip)
                        lstm_backward_block(
                            col0[grp * gs], group_units(grp, nub, col0, width, gs), t, 0, B, H,
                            lengths, dy + t * BH if dy != NULL else NULL, gates + t * B * GH,
                            cs + prev_slot(0, t, reverse, True) * BH, tanh_c + t * BH,
                            bufs[s & 1], bufs[(s + 1) & 1], dc, peep)
    if T % 2 == 1:
        memcpy(dh0, work, BH * sizeof(floating))
    # dW_hh = dG.T @ H_prev
    gemm_split(True, False, <int>GH, <int>H, <int>(T * B), gates, <int>GH,
               hs + (BH if reverse else 0), <int>H, False, dw_hh, <int>H, nthreads, False)
    input_side_grads(T * B, I, GH, x, w_ih, gates, dx, dw_ih, db, nthreads)


def forward(x, w_ih, w_hh, bias, h0, c0, lengths, bint reverse, bint training,
            int nthreads=1, bint by_rows=False, bint fused=False, peep=None):
    """y (T,B,H), hT, cT (B,H), saved: (gates, hs, cs, tanh_c) when training else None.
    by_rows: each thread runs its own rows through all steps (see common.pxd); fused: the
    input projection is made step by step with packed W_ih (small weights); peep: peephole
    weights p_i|p_f|p_o (3H,) or None."""
    if x.dtype == np.float32:
        return _forward(<float*>cnp.PyArray_DATA(x), x, w_ih, w_hh, bias, h0, c0, lengths,
                        reverse, training, nthreads, by_rows, fused, peep)
    _check_double(x)
    return _forward(<double*>cnp.PyArray_DATA(x), x, w_ih, w_hh, bias, h0, c0, lengths,
                    reverse, training, nthreads, by_rows, fused, peep)


cdef _forward(const floating* xp, x, w_ih, w_hh, bias, h0, c0, lengths, bint reverse,
              bint training, int nthreads, bint by_rows, bint fused, peep):
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = w_hh.shape[1]
    cdef Py_ssize_t chunk = T if (training or fused) else max(1, min(T, INFER_ROWS // B))
    dtype = x.dtype
    # training keeps these for backward (fastrnn.functional recycles them after it)
    gates = ws_empty((T if training else (1 if fused else chunk), B, 4 * H), dtype)
    hs = ws_empty((T + 1 if training else 2, B, H), dtype)
    cs = ws_empty((T + 1 if training else 2, B, H), dtype)
    tanh_c = ws_empty((T if training else 1, B, H), dtype)
    y = np.empty((T, B, H), dtype)
    hT = np.empty((B, H), dtype)
    cT = np.empty((B, H), dtype)
    col0, width, nub_obj = unit_block_layout(4, H, dtype)
    cdef Py_ssize_t nub = nub_obj
    panels = ws_empty((4 * nub, H, panel_cols(xp)), dtype)
    panels_x = ws_empty((4 * nub, I, panel_cols(xp)), dtype) if fused else None
    cdef const Py_ssize_t* col0_p = <Py_ssize_t*>data_or_null(col0)
    cdef const int* width_p = <int*>data_or_null(width)
    cdef floating* panels_p = <floating*>data_or_null(panels)
    cdef floating* panels_x_p = <floating*>data_or_null(panels_x)
    nthreads = max(1, min(nthreads, B if by_rows else nub))
    cdef const floating* w_ih_p = <floating*>data_or_null(w_ih)
    cdef const floating* w_hh_p = <floating*>data_or_null(w_hh)
    cdef const floating* bias_p = <floating*>data_or_null(bias)
    cdef const floating* peep_p = <floating*>data_or_null(peep)
    cdef const floating* h0_p = <floating*>data_or_null(h0)
    cdef const floating* c0_p = <floating*>data_or_null(c0)
    cdef const int64_t* len_p = <int64_t*>data_or_null(lengths)
    cdef floating* gates_p = <floating*>data_or_null(gates)
    cdef floating* hs_p = <floating*>data_or_null(hs)
    cdef floating* cs_p = <floating*>data_or_null(cs)
    cdef floating* tc_p = <floating*>data_or_null(tanh_c)
    cdef floating* y_p = <floating*>data_or_null(y)
    cdef floating* hT_p = <floating*>data_or_null(hT)
    cdef floating* cT_p = <floating*>data_or_null(cT)
    with nogil:
        lstm_forward_kernel(T, B, I, H, xp, w_ih_p, w_hh_p, bias_p, peep_p, h0_p, c0_p, len_p,
                            reverse, training, chunk, col0_p, width_p, nub, nthreads, by_rows,
                            panels_p, panels_x_p, gates_p, hs_p, cs_p, tc_p, y_p, hT_p, cT_p)
    ws_release((panels, panels_x), extra_refs=1)
    if training:
        return y, hT, cT, (gates, hs, cs, tanh_c)
    ws_release((gates, hs, cs, tanh_c), extra_refs=1)
    return y, hT, cT, None


def backward(dy, dhT, dcT, x, w_ih, w_hh, lengths, bint reverse, saved, bint has_bias,
             int nthreads=1, double clip=0, bint by_rows=False, peep=None):
    """dx, dh0, dc0, dw_ih, dw_hh, db (None without bias).  Overwrites saved gates (with
    the pre-activation gradients, from which the caller gets the peepholes' gradients)."""
    if x.dtype == np.float32:
        return _backward(<float*>cnp.PyArray_DATA(x), dy, dhT, dcT, x, w_ih, w_hh, lengths,
                         reverse, saved, has_bias, nthreads, clip, by_rows, peep)
    _check_double(x)
    return _backward(<double*>cnp.PyArray_DATA(x), dy, dhT, dcT, x, w_ih, w_hh, lengths,
                     reverse, saved, has_bias, nthreads, clip, by_rows, peep)


cdef _backward(const floating* xp, dy, dhT, dcT, x, w_ih, w_hh, lengths, bint reverse,
               saved, bint has_bias, int nthreads, double clip, bint by_rows, peep):
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = w_hh.shape[1]
    gates, hs, cs, tanh_c = saved
    dtype = x.dtype
    dh0 = np.empty((B, H), dtype)
    work = np.empty((B, H), dtype)
    dc0 = np.empty((B, H), dtype)
    dx = np.empty_like(x)
    dw_ih = np.empty_like(w_ih)
    dw_hh = np.empty_like(w_hh)
    db = np.empty(4 * H, dtype) if has_bias else None
    col0, width, nub_obj = unit_block_layout(1, H, dtype)
    cdef Py_ssize_t nub = nub_obj
    panels = ws_empty((nub, 4 * H, panel_cols(xp)), dtype)
    cdef const Py_ssize_t* col0_p = <Py_ssize_t*>data_or_null(col0)
    cdef const int* width_p = <int*>data_or_null(width)
    cdef floating* panels_p = <floating*>data_or_null(panels)
    nthreads = max(1, min(nthreads, B if by_rows else nub))
    cdef const floating* w_ih_p = <floating*>data_or_null(w_ih)
    cdef const floating* w_hh_p = <floating*>data_or_null(w_hh)
    cdef const floating* peep_p = <floating*>data_or_null(peep)
    cdef const int64_t* len_p = <int64_t*>data_or_null(lengths)
    cdef const floating* dy_p = <floating*>data_or_null(dy)
    cdef const floating* dhT_p = <floating*>data_or_null(dhT)
    cdef const floating* dcT_p = <floating*>data_or_null(dcT)
    cdef floating* gates_p = <floating*>data_or_null(gates)
    cdef const floating* hs_p = <floating*>data_or_null(hs)
    cdef const floating* cs_p = <floating*>data_or_null(cs)
    cdef const floating* tc_p = <floating*>data_or_null(tanh_c)
    cdef floating* dh0_p = <floating*>data_or_null(dh0)
    cdef floating* work_p = <floating*>data_or_null(work)
    cdef floating* dc0_p = <floating*>data_or_null(dc0)
    cdef floating* dx_p = <floating*>data_or_null(dx)
    cdef floating* dw_ih_p = <floating*>data_or_null(dw_ih)
    cdef floating* dw_hh_p = <floating*>data_or_null(dw_hh)
    cdef floating* db_p = <floating*>data_or_null(db)
    with nogil:
        lstm_backward_kernel(T, B, I, H, xp, w_ih_p, w_hh_p, peep_p, len_p, reverse, dy_p,
                             dhT_p, dcT_p, gates_p, hs_p, cs_p, tc_p, col0_p, width_p, nub,
                             nthreads, by_rows, clip, panels_p, dh0_p, work_p, dc0_p, dx_p,
                             dw_ih_p, dw_hh_p, db_p)
    ws_release((panels,), extra_refs=1)
    return dx, dh0, dc0, dw_ih, dw_hh, db


# ---- streaming: one step with weights packed once --------------------------------------

def prepare(w_ih, w_hh):
    """Packed weights for `step`: (input panels, recurrent panels, col0, width, nub)."""
    H = w_hh.shape[1]
    col0, width, nub = unit_block_layout(4, H, w_hh.dtype)
    return pack_unit_blocks(w_ih, 4, H), pack_unit_blocks(w_hh, 4, H), col0, width, nub


def step(x, h, c, prepared, bias, int nthreads=1, peep=None):
    """One LSTM step: x (B, I), h, c (B, H) -> h', c' (B, H); peep: peephole weights or None."""
    if x.dtype == np.float32:
        return _step(<float*>cnp.PyArray_DATA(x), x, h, c, prepared, bias, nthreads, peep)
    _check_double(x)
    return _step(<double*>cnp.PyArray_DATA(x), x, h, c, prepared, bias, nthreads, peep)


cdef _step(const floating* xp, x, h, c, prepared, bias, int nthreads, peep):
    wi, wh, col0, width, nub_obj = prepared
    cdef Py_ssize_t B = x.shape[0], I = x.shape[1], H = h.shape[1], GH = 4 * H
    cdef Py_ssize_t nub = nub_obj, ub, grp
    cdef Py_ssize_t NR = panel_cols(xp)
    g = np.empty((B, GH), x.dtype)
    tc = np.empty((B, H), x.dtype)
    h_new = np.empty((B, H), x.dtype)
    c_new = np.empty((B, H), x.dtype)
    cdef const floating* wi_p = <floating*>data_or_null(wi)
    cdef const floating* wh_p = <floating*>data_or_null(wh)
    cdef const Py_ssize_t* col0_p = <Py_ssize_t*>data_or_null(col0)
    cdef const int* width_p = <int*>data_or_null(width)
    cdef const floating* peep_p = <floating*>data_or_null(peep)
    cdef const floating* bias_p = <floating*>data_or_null(bias)
    cdef const floating* h_p = <floating*>data_or_null(h)
    cdef const floating* c_p = <floating*>data_or_null(c)
    cdef floating* g_p = <floating*>data_or_null(g)
    cdef floating* tc_p = <floating*>data_or_null(tc)
    cdef floating* hn_p = <floating*>data_or_null(h_new)
    cdef floating* cn_p = <floating*>data_or_null(c_new)
    nthreads = max(1, min(nthreads, nub))
    with nogil, parallel(num_threads=nthreads):
        for ub in prange(nub, schedule="static"):
            lstm_forward_block(ub, ub + 1, 0, 0, B, H, wh_p, col0_p, width_p, NULL, g_p, h_p,
                               hn_p, c_p, cn_p, tc_p, NULL, I, xp, wi_p, bias_p, peep_p)
    return h_new, c_new
