"""Elman RNN forward and backward-through-time kernels (PyTorch layout, one gate block).

    h' = act(W_ih x + b_ih + W_hh h + b_hh),  act = tanh or relu

Python entry points `forward` and `backward` take arrays already validated by
fastrnn.functional.  See common.pxd for the slot/length conventions.
"""
import numpy as np
cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

from fastrnn.engine.activations cimport relu, tanh_v
from cython.parallel cimport parallel, prange
from fastrnn.engine.blas cimport gemm_split
from fastrnn.engine.common cimport (clamp_units, GROUP, INFER_ROWS, _check_double, chunk_projection, copy_or_zero, cur_slot,
                              group_panels, group_size, group_units, n_groups,
                              data_or_null, gemm_panels, input_side_grads, is_active, step_input,
                              pack_panels, panel_cols, prev_slot, step_time)
from fastrnn.engine.simd import pack_unit_blocks, unit_block_layout
from fastrnn.engine.workspace import empty as ws_empty, release as ws_release

cnp.import_array()


cdef void rnn_forward_block(
        Py_ssize_t u0, Py_ssize_t nu, Py_ssize_t t, Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t H,
        bint use_relu,
        const floating* panels, Py_ssize_t npanels, const Py_ssize_t* col0, const int* width,
        const int64_t* lengths, floating* a, const floating* h_prev, floating* h_cur,
        floating* y_t) noexcept nogil:
    """One step for hidden units u0 .. u0+nu-1 (npanels panels) of rows b0 .. b1-1."""
    cdef Py_ssize_t b, j, k
    gemm_panels(b1 - b0, H, h_prev + b0 * H, H, panels, npanels, col0, width, a + b0 * H, H,
                True)
    for b in range(b0, b1):
        k = b * H + u0
        if not is_active(lengths, b, t):
            memcpy(h_cur + k, h_prev + k, nu * sizeof(floating))
            memset(y_t + k, 0, nu * sizeof(floating))
            continue
        if use_relu:
            for j in range(k, k + nu):
                h_cur[j] = relu(a[j])
        else:
            tanh_v(a + k, h_cur + k, nu)
        if y_t != NULL:
            memcpy(y_t + k, h_cur + k, nu * sizeof(floating))


cdef void rnn_forward_kernel(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, bint use_relu,
        const floating* x,          # IN  (T, B, I)
        const floating* w_ih,       # IN  (H, I)
        const floating* w_hh,       # IN  (H, H)
        const floating* bias,       # IN  (H,) = b_ih + b_hh, or NULL
        const floating* h0,         # IN  (B, H) or NULL (zeros)
        const int64_t* lengths,     # IN  (B,) or NULL
        bint reverse, bint keep, Py_ssize_t chunk,
        const Py_ssize_t* col0, const int* width, Py_ssize_t nub, int nthreads, bint by_rows,
        floating* panels,           # WORK (nub, H, NR) packed W_hh.T
        floating* pre,              # WORK (chunk, B, H) pre-activations
        floating* hs,               # OUT (T+1 | 2, B, H) hidden-state slots
        floating* y,                # OUT (T, B, H)
        floating* hT                # OUT (B, H)
        ) noexcept nogil:
    cdef Py_ssize_t BH = B * H
    cdef Py_ssize_t s, s0, n, t, t_lo, ub, grp, part, b0, b1
    cdef Py_ssize_t NR = panel_cols(pre)
    cdef Py_ssize_t gs = GROUP if by_rows else group_size(nub, nthreads)

    s = t = 0
    pack_panels(w_hh, H, True, H, nub, col0, width, panels)
    copy_or_zero(hs + (T if (reverse and keep) else 0) * BH, h0, BH)
    s0 = 0
    while s0 < T:
        n = min(chunk, T - s0)
        t_lo = chunk_projection(s0, n, T, reverse, B, I, H, x, w_ih, bias, pre, nthreads)
        if by_rows:
            # each thread: its rows through every step of the chunk, no barrier
            with parallel(num_threads=nthreads):
                for part in prange(nthreads, schedule="static"):
                    b0 = B * part // nthreads
                    b1 = B * (part + 1) // nthreads
                    for s in range(s0, s0 + n):
                        t = step_time(s, T, reverse)
                        for grp in range(n_groups(nub, gs)):
                            rnn_forward_block(
                                col0[grp * gs], group_units(grp, nub, col0, width, gs), t, b0,
                                b1, H, use_relu, panels + grp * gs * H * NR,
                                group_panels(grp, nub, gs), col0 + grp * gs, width + grp * gs,
                                lengths, pre + (t - t_lo) * BH,
                                hs + prev_slot(s, t, reverse, keep) * BH,
                                hs + cur_slot(s, t, reverse, keep) * BH, y + t * BH)
            s0 += n
            continue
        with parallel(num_threads=nthreads):
            for s in range(s0, s0 + n):
                t = step_time(s, T, reverse)
                for grp in prange(n_groups(nub, gs), schedule="static"):
                    rnn_forward_block(
                        col0[grp * gs], group_units(grp, nub, col0, width, gs), t, 0, B, H,
                        use_relu, panels + grp * gs * H * NR, group_panels(grp, nub, gs),
                        col0 + grp * gs, width + grp * gs, lengths, pre + (t - t_lo) * BH,
                        hs + prev_slot(s, t, reverse, keep) * BH,
                        hs + cur_slot(s, t, reverse, keep) * BH, y + t * BH)
        s0 += n
    t = cur_slot(T - 1, step_time(T - 1, T, reverse), reverse, keep)
    memcpy(hT, hs + t * BH, BH * sizeof(floating))


cdef void rnn_backward_block(
        Py_ssize_t u0, Py_ssize_t nu, Py_ssize_t t, Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t H,
        bint use_relu,
        const int64_t* lengths, const floating* dy_t, const floating* h_t, floating* da_t,
        const floating* dh, floating* dh_next) noexcept nogil:
    """Units u0 .. u0+nu-1 of rows b0 .. b1-1 at time t: d(pre-activation) into da_t."""
    cdef Py_ssize_t b, j, k
    cdef floating dh_j, h
    for b in range(b0, b1):
        k = b * H + u0
        if not is_active(lengths, b, t):
            memset(da_t + k, 0, nu * sizeof(floating))
            memcpy(dh_next + k, dh + k, nu * sizeof(floating))
            continue
        if lengths != NULL:
            memset(dh_next + k, 0, nu * sizeof(floating))
        for j in range(k, k + nu):
            dh_j = dh[j] + (dy_t[j] if dy_t != NULL else 0)
            h = h_t[j]
            if use_relu:
                da_t[j] = dh_j if h > 0 else 0
            else:
                da_t[j] = dh_j * (1 - h * h)


cdef void rnn_backward_kernel(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, bint use_relu,
        const floating* x,          # IN  (T, B, I)
        const floating* w_ih,       # IN  (H, I)
        const floating* w_hh,       # IN  (H, H)
        const int64_t* lengths,     # IN  (B,) or NULL
        bint reverse,
        const floating* dy,         # IN  (T, B, H) or NULL
        const floating* dhT,        # IN  (B, H) or NULL
        const floating* hs,         # IN  (T+1, B, H)
        const Py_ssize_t* col0, const int* width, Py_ssize_t nub, int nthreads, bint by_rows,
        double clip,                # > 0: clamp the carried dh to [-clip, clip] every step
        floating* panels,           # WORK (nub, H, NR) packed W_hh by output unit block
        floating* d_pre,            # WORK (T, B, H) d(pre-activations)
        floating* dh0, floating* work,     # OUT dh0 (B, H); WORK (B, H)
        floating* dx,               # OUT (T, B, I)
        floating* dw_ih,            # OUT (H, I)
        floating* dw_hh,            # OUT (H, H)
        floating* db                # OUT (H,) or NULL
        ) noexcept nogil:
    cdef Py_ssize_t BH = B * H
    cdef Py_ssize_t s, t, ub, grp, part, b0, b1
    cdef Py_ssize_t NR = panel_cols(d_pre)
    cdef floating* bufs[2]
    cdef Py_ssize_t gs = GROUP if by_rows else group_size(nub, nthreads)

    s = t = 0
    bufs[0] = dh0
    bufs[1] = work
    pack_panels(w_hh, H, False, H, nub, col0, width, panels)
    copy_or_zero(dh0, dhT, BH)
    if by_rows:
        # each thread: its rows through every step, all units, no barrier
        with parallel(num_threads=nthreads):
            for part in prange(nthreads, schedule="static"):
                b0 = B * part // nthreads
                b1 = B * (part + 1) // nthreads
                for s in range(T + 1):
                    if s > 0:
                        for grp in range(n_groups(nub, gs)):
                            gemm_panels(b1 - b0, H,
                                        d_pre + step_time(T - s, T, reverse) * BH + b0 * H, H,
                                        panels + grp * gs * H * NR, group_panels(grp, nub, gs),
                                        col0 + grp * gs, width + grp * gs,
                                        bufs[s & 1] + b0 * H, H, lengths != NULL)
                    if s < T:
                        t = step_time(T - 1 - s, T, reverse)
                        if clip > 0:
                            clamp_units(bufs[s & 1] + b0 * H, b1 - b0, H, 0, H, clip)
                        rnn_backward_block(0, H, t, b0, b1, H, use_relu, lengths,
                                           dy + t * BH if dy != NULL else NULL,
                                           hs + cur_slot(0, t, reverse, True) * BH,
                                           d_pre + t * BH, bufs[s & 1], bufs[(s + 1) & 1])
    else:
        # Iteration s: the recurrent product of step s-1 for this thread's units, then the
        # update of step s for the same units (it only needs their own dh): one barrier a
        # step.
        with parallel(num_threads=nthreads):
            for s in range(T + 1):
                for grp in prange(n_groups(nub, gs), schedule="static"):
                    if s > 0:
                        # dh(s) [:, units] (+)= dA[t(s-1)] @ W_hh[:, units]
                        gemm_panels(B, H, d_pre + step_time(T - s, T, reverse) * BH, H,
                                    panels + grp * gs * H * NR, group_panels(grp, nub, gs),
                                    col0 + grp * gs, width + grp * gs, bufs[s & 1], H,
                                    lengths != NULL)
                    if s < T:
                        t = step_time(T - 1 - s, T, reverse)      # forward steps in reverse
                        if clip > 0:
                            clamp_units(bufs[s & 1], B, H, col0[grp * gs],
                                        group_units(grp, nub, col0, width, gs), clip)
                        rnn_backward_block(col0[grp * gs], group_units(grp, nub, col0, width, gs),
                                           t, 0, B, H, use_relu, lengths,
                                           dy + t * BH if dy != NULL else NULL,
                                           hs + cur_slot(0, t, reverse, True) * BH,
                                           d_pre + t * BH, bufs[s & 1], bufs[(s + 1) & 1])
    if T % 2 == 1:
        memcpy(dh0, work, BH * sizeof(floating))
    # dW_hh = dA.T @ H_prev
    gemm_split(True, False, <int>H, <int>H, <int>(T * B), d_pre, <int>H,
               hs + (BH if reverse else 0), <int>H, False, dw_hh, <int>H, nthreads, False)
    input_side_grads(T * B, I, H, x, w_ih, d_pre, dx, dw_ih, db, nthreads)


def forward(x, w_ih, w_hh, bias, h0, lengths, bint reverse, bint training, bint use_relu,
            int nthreads=1, bint by_rows=False):
    """y (T,B,H), hT (B,H), saved: (hs,) when training else None."""
    if x.dtype == np.float32:
        return _forward(<float*>cnp.PyArray_DATA(x), x, w_ih, w_hh, bias, h0, lengths,
                        reverse, training, use_relu, nthreads, by_rows)
    _check_double(x)
    return _forward(<double*>cnp.PyArray_DATA(x), x, w_ih, w_hh, bias, h0, lengths,
                    reverse, training, use_relu, nthreads, by_rows)


cdef _forward(const floating* xp, x, w_ih, w_hh, bias, h0, lengths, bint reverse,
              bint training, bint use_relu, int nthreads, bint by_rows):
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = w_hh.shape[1]
    cdef Py_ssize_t chunk = T if training else max(1, min(T, INFER_ROWS // B))
    dtype = x.dtype
    pre = ws_empty((chunk, B, H), dtype)
    hs = ws_empty((T + 1 if training else 2, B, H), dtype)
    y = np.empty((T, B, H), dtype)
    hT = np.empty((B, H), dtype)
    col0, width, nub_obj = unit_block_layout(1, H, dtype)
    cdef Py_ssize_t nub = nub_obj
    panels = ws_empty((nub, H, panel_cols(xp)), dtype)
    cdef const Py_ssize_t* col0_p = <Py_ssize_t*>data_or_null(col0)
    cdef const int* width_p = <int*>data_or_null(width)
    cdef floating* panels_p = <floating*>data_or_null(panels)
    nthreads = max(1, min(nthreads, B if by_rows else nub))
    cdef const floating* w_ih_p = <floating*>data_or_null(w_ih)
    cdef const floating* w_hh_p = <floating*>data_or_null(w_hh)
    cdef const floating* bias_p = <floating*>data_or_null(bias)
    cdef const floating* h0_p = <floating*>data_or_null(h0)
    cdef const int64_t* len_p = <int64_t*>data_or_null(lengths)
    cdef floating* pre_p = <floating*>data_or_null(pre)
    cdef floating* hs_p = <floating*>data_or_null(hs)
    cdef floating* y_p = <floating*>data_or_null(y)
    cdef floating* hT_p = <floating*>data_or_null(hT)
    with nogil:
        rnn_forward_kernel(T, B, I, H, use_relu, xp, w_ih_p, w_hh_p, bias_p, h0_p, len_p,
                           reverse, training, chunk, col0_p, width_p, nub, nthreads, by_rows, panels_p,
                           pre_p, hs_p, y_p, hT_p)
    ws_release((panels, pre), extra_refs=1)
    if training:
        return y, hT, (hs,)
    ws_release((hs,), extra_refs=1)
    return y, hT, None


def backward(dy, dhT, x, w_ih, w_hh, lengths, bint reverse, saved, bint has_bias,
             bint use_relu, int nthreads=1, double clip=0, bint by_rows=False):
    """dx, dh0, dw_ih, dw_hh, db (None without bias)."""
    if x.dtype == np.float32:
        return _backward(<float*>cnp.PyArray_DATA(x), dy, dhT, x, w_ih, w_hh, lengths,
                         reverse, saved, has_bias, use_relu, nthreads, clip, by_rows)
    _check_double(x)
    return _backward(<double*>cnp.PyArray_DATA(x), dy, dhT, x, w_ih, w_hh, lengths,
                     reverse, saved, has_bias, use_relu, nthreads, clip, by_rows)


cdef _backward(const floating* xp, dy, dhT, x, w_ih, w_hh, lengths, bint reverse, saved,
               bint has_bias, bint use_relu, int nthreads, double clip, bint by_rows):
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = w_hh.shape[1]
    (hs,) = saved
    dtype = x.dtype
    d_pre = ws_empty((T, B, H), dtype)
    dh0 = np.empty((B, H), dtype)
    work = np.empty((B, H), dtype)
    dx = np.empty_like(x)
    dw_ih = np.empty_like(w_ih)
    dw_hh = np.empty_like(w_hh)
    db = np.empty(H, dtype) if has_bias else None
    col0, width, nub_obj = unit_block_layout(1, H, dtype)
    cdef Py_ssize_t nub = nub_obj
    panels = np.empty((nub, H, panel_cols(xp)), dtype)
    cdef const Py_ssize_t* col0_p = <Py_ssize_t*>data_or_null(col0)
    cdef const int* width_p = <int*>data_or_null(width)
    cdef floating* panels_p = <floating*>data_or_null(panels)
    nthreads = max(1, min(nthreads, B if by_rows else nub))
    cdef const floating* w_ih_p = <floating*>data_or_null(w_ih)
    cdef const floating* w_hh_p = <floating*>data_or_null(w_hh)
    cdef const int64_t* len_p = <int64_t*>data_or_null(lengths)
    cdef const floating* dy_p = <floating*>data_or_null(dy)
    cdef const floating* dhT_p = <floating*>data_or_null(dhT)
    cdef const floating* hs_p = <floating*>data_or_null(hs)
    cdef floating* d_pre_p = <floating*>data_or_null(d_pre)
    cdef floating* dh0_p = <floating*>data_or_null(dh0)
    cdef floating* work_p = <floating*>data_or_null(work)
    cdef floating* dx_p = <floating*>data_or_null(dx)
    cdef floating* dw_ih_p = <floating*>data_or_null(dw_ih)
    cdef floating* dw_hh_p = <floating*>data_or_null(dw_hh)
    cdef floating* db_p = <floating*>data_or_null(db)
    with nogil:
        rnn_backward_kernel(T, B, I, H, use_relu, xp, w_ih_p, w_hh_p, len_p, reverse, dy_p,
                            dhT_p, hs_p, col0_p, width_p, nub, nthreads, by_rows, clip, panels_p,
                            d_pre_p,
                            dh0_p, work_p, dx_p, dw_ih_p, dw_hh_p, db_p)
    ws_release((panels, d_pre), extra_refs=1)
    return dx, dh0, dw_ih, dw_hh, db


# ---- streaming: one step with weights packed once --------------------------------------

def prepare(w_ih, w_hh):
    """Packed weights for `step`: (input panels, recurrent panels, col0, width, nub)."""
    H = w_hh.shape[1]
    col0, width, nub = unit_block_layout(1, H, w_hh.dtype)
    return pack_unit_blocks(w_ih, 1, H), pack_unit_blocks(w_hh, 1, H), col0, width, nub


def step(x, h, prepared, bias, bint use_relu, int nthreads=1):
    """One Elman RNN step: x (B, I), h (B, H) -> h' (B, H)."""
    if x.dtype == np.float32:
        return _step(<float*>cnp.PyArray_DATA(x), x, h, prepared, bias, use_relu, nthreads)
    _check_double(x)
    return _step(<double*>cnp.PyArray_DATA(x), x, h, prepared, bias, use_relu, nthreads)


cdef _step(const floating* xp, x, h, prepared, bias, bint use_relu, int nthreads):
    wi, wh, col0, width, nub_obj = prepared
    cdef Py_ssize_t B = x.shape[0], I = x.shape[1], H = h.shape[1]
    cdef Py_ssize_t nub = nub_obj, grp
    cdef Py_ssize_t NR = panel_cols(xp)
    a = np.empty((B, H), x.dtype)
    h_new = np.empty((B, H), x.dtype)
    cdef const floating* wi_p = <floating*>data_or_null(wi)
    cdef const floating* wh_p = <floating*>data_or_null(wh)
    cdef const Py_ssize_t* col0_p = <Py_ssize_t*>data_or_null(col0)
    cdef const int* width_p = <int*>data_or_null(width)
    cdef const floating* bias_p = <floating*>data_or_null(bias)
    cdef const floating* h_p = <floating*>data_or_null(h)
    cdef floating* a_p = <floating*>data_or_null(a)
    cdef floating* hn_p = <floating*>data_or_null(h_new)
    nthreads = max(1, min(nthreads, nub))
    cdef Py_ssize_t gs = group_size(nub, nthreads)
    with nogil, parallel(num_threads=nthreads):
        for grp in prange(n_groups(nub, gs), schedule="static"):
            step_input(B, I, xp, wi_p + grp * gs * I * NR, group_panels(grp, nub, gs),
                       col0_p + grp * gs, width_p + grp * gs, bias_p, a_p, H)
            rnn_forward_block(col0_p[grp * gs], group_units(grp, nub, col0_p, width_p, gs), 0,
                              0, B, H, use_relu, wh_p + grp * gs * H * NR,
                              group_panels(grp, nub, gs), col0_p + grp * gs,
                              width_p + grp * gs, NULL, a_p, h_p, hn_p, NULL)
    return h_new
