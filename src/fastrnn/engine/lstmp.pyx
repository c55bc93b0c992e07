"""Projection LSTM (LSTMP, Sak et al. 2014; PyTorch's proj_size) forward and backward kernels.

    gates from x and h (P wide): i, f, g, o as the LSTM;  c' = f*c + i*g;
    m = o*tanh(c') (H wide);  h' = W_hr m (P wide)

The recurrent weight is W_hh (4H, P) and the projection W_hr (P, H).  Each step is the
LSTM's packed recurrent product (K = P) and fused gate update, then one more packed product
for the projection.  The projection needs all H units of a row, so the threads split the
batch (each thread its own rows through every step, no barrier: the rows scheme of
common.pxd); a call with fewer rows than threads runs on fewer threads.  Saved for backward:
the gates, the P-wide h and H-wide c slots, tanh(c') and m.
"""
import numpy as np
cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

from cython.parallel cimport parallel, prange
from fastrnn.engine.simd cimport lstm_bwd_f32, lstm_bwd_f64, lstm_fwd_f32, lstm_fwd_f64
from fastrnn.engine.simd import unit_block_layout
from fastrnn.engine.workspace import empty as ws_empty, release as ws_release
from fastrnn.engine.blas cimport gemm_split
from fastrnn.engine.common cimport (INFER_ROWS, _check_double, chunk_projection, clamp_units,
                                    copy_or_zero, cur_slot, data_or_null, gemm_panels,
                                    input_side_grads, is_active, pack_panels, panel_cols,
                                    prev_slot, step_time)

cnp.import_array()


cdef void lstmp_forward_rows(
        Py_ssize_t t, Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t H, Py_ssize_t P,
        const floating* panels, const Py_ssize_t* col0, const int* width, Py_ssize_t nub,
        const floating* panels_r, const Py_ssize_t* col0_r, const int* width_r,
        Py_ssize_t nub_r, const int64_t* lengths, floating* g, const floating* h_prev,
        floating* h_cur, const floating* c_prev, floating* c_cur, floating* tc, floating* m,
        floating* y_t) noexcept nogil:
    """One step for rows b0 .. b1-1: gates += h_prev @ W_hh.T (K = P), the gate update into
    c_cur, tc and m = o*tanh(c'), then h_cur = m @ W_hr.T (P wide) and y_t = h_cur."""
    cdef Py_ssize_t GH = 4 * H
    cdef Py_ssize_t NR = panel_cols(g)
    cdef Py_ssize_t ub, b, k
    for ub in range(nub):
        gemm_panels(b1 - b0, P, h_prev + b0 * P, P, panels + 4 * ub * P * NR, 4,
                    col0 + 4 * ub, width + 4 * ub, g + b0 * GH, GH, True)
    for b in range(b0, b1):
        k = b * H
        if not is_active(lengths, b, t):
            memcpy(c_cur + k, c_prev + k, H * sizeof(floating))
            memset(m + k, 0, H * sizeof(floating))
            continue
        if floating is float:
            lstm_fwd_f32(H, g + b * GH, H, c_prev + k, c_cur + k, m + k, tc + k, NULL)
        else:
            lstm_fwd_f64(H, g + b * GH, H, c_prev + k, c_cur + k, m + k, tc + k, NULL)
    gemm_panels(b1 - b0, H, m + b0 * H, H, panels_r, nub_r, col0_r, width_r, h_cur + b0 * P,
                P, False)
    for b in range(b0, b1):
        if not is_active(lengths, b, t):
            memcpy(h_cur + b * P, h_prev + b * P, P * sizeof(floating))
            memset(y_t + b * P, 0, P * sizeof(floating))
        else:
            memcpy(y_t + b * P, h_cur + b * P, P * sizeof(floating))


cdef void lstmp_forward_kernel(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P,
        const floating* x, const floating* w_ih, const floating* w_hh, const floating* w_hr,
        const floating* bias, const floating* h0, const floating* c0, const int64_t* lengths,
        bint reverse, bint keep, Py_ssize_t chunk,
        const Py_ssize_t* col0, const int* width, Py_ssize_t nub,
        const Py_ssize_t* col0_r, const int* width_r, Py_ssize_t nub_r, int nthreads,
        floating* panels,           # WORK (4 * nub, P, NR) packed W_hh.T
        floating* panels_r,         # WORK (nub_r, H, NR) packed W_hr.T
        floating* gates,            # OUT (chunk, B, 4H): post-activation gates when keep
        floating* hs,               # OUT (T+1 | 2, B, P) h slots
        floating* cs,               # OUT (T+1 | 2, B, H) c slots
        floating* tanh_c,           # OUT (T | 1, B, H)
        floating* ms,               # OUT (T | 1, B, H) m = o*tanh(c')
        floating* y,                # OUT (T, B, P)
        floating* hT, floating* cT  # OUT (B, P), (B, H)
        ) noexcept nogil:
    cdef Py_ssize_t GH = 4 * H, BH = B * H, BP = B * P
    cdef Py_ssize_t s, s0, n, t, t_lo, first, part, b0, b1
    s = t = 0
    pack_panels(w_hh, P, True, P, 4 * nub, col0, width, panels)
    pack_panels(w_hr, H, True, H, nub_r, col0_r, width_r, panels_r)
    first = T if (reverse and keep) else 0
    copy_or_zero(hs + first * BP, h0, BP)
    copy_or_zero(cs + first * BH, c0, BH)
    s0 = 0
    while s0 < T:
        n = min(chunk, T - s0)
        t_lo = chunk_projection(s0, n, T, reverse, B, I, GH, x, w_ih, bias, gates, nthreads)
        with parallel(num_threads=nthreads):
            for part in prange(nthreads, schedule="static"):
                b0 = B * part // nthreads
                b1 = B * (part + 1) // nthreads
                for s in range(s0, s0 + n):
                    t = step_time(s, T, reverse)
                    lstmp_forward_rows(
                        t, b0, b1, H, P, panels, col0, width, nub, panels_r, col0_r,
                        width_r, nub_r, lengths, gates + (t - t_lo) * B * GH,
                        hs + prev_slot(s, t, reverse, keep) * BP,
                        hs + cur_slot(s, t, reverse, keep) * BP,
                        cs + prev_slot(s, t, reverse, keep) * BH,
                        cs + cur_slot(s, t, reverse, keep) * BH,
                        tanh_c + (t * BH if keep else 0), ms + (t * BH if keep else 0),
                        y + t * BP)
        s0 += n
    t = cur_slot(T - 1, step_time(T - 1, T, reverse), reverse, keep)
    memcpy(hT, hs + t * BP, BP * sizeof(floating))
    memcpy(cT, cs + t * BH, BH * sizeof(floating))


cdef void lstmp_backward_kernel(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P,
        const floating* x, const floating* w_ih, const floating* w_hh, const floating* w_hr,
        const int64_t* lengths, bint reverse,
        const floating* dy,         # IN  (T, B, P) or NULL
        const floating* dhT,        # IN  (B, P) or NULL
        const floating* dcT,        # IN  (B, H) or NULL
        floating* gates,            # IN/OUT (T, B, 4H): saved gates in, d(pre-activations) out
        const floating* hs,         # IN  (T+1, B, P)
        const floating* cs,         # IN  (T+1, B, H)
        const floating* tanh_c,     # IN  (T, B, H)
        const floating* ms,         # IN  (T, B, H)
        const Py_ssize_t* col0_p, const int* width_p, Py_ssize_t nub_p,
        const Py_ssize_t* col0_h, const int* width_h, Py_ssize_t nub_h, int nthreads,
        double clip,
        floating* panels_hh,        # WORK (nub_p, 4H, NR): W_hh by output (P) column block
        floating* panels_hr,        # WORK (nub_h, P, NR): W_hr by output (H) column block
        floating* dH,               # WORK (T, B, P): each step's total dh (for dW_hr)
        floating* dm,               # WORK (B, H)
        floating* dh0, floating* work,   # OUT dh0 (B, P); WORK (B, P)
        floating* dc,               # OUT (B, H): dc0 (starts as dcT)
        floating* dx, floating* dw_ih, floating* dw_hh, floating* dw_hr,
        floating* db) noexcept nogil:
    cdef Py_ssize_t GH = 4 * H, BH = B * H, BP = B * P
    cdef Py_ssize_t s, t, part, b0, b1, b, j
    cdef floating* bufs[2]
    cdef floating* carry
    cdef floating* nxt
    cdef floating* dh_t
    s = t = 0
    bufs[0] = dh0
    bufs[1] = work
    pack_panels(w_hh, P, False, GH, nub_p, col0_p, width_p, panels_hh)
    pack_panels(w_hr, H, False, P, nub_h, col0_h, width_h, panels_hr)
    copy_or_zero(dh0, dhT, BP)
    copy_or_zero(dc, dcT, BH)
    with parallel(num_threads=nthreads):
        for part in prange(nthreads, schedule="static"):
            b0 = B * part // nthreads
            b1 = B * (part + 1) // nthreads
            for s in range(T):
                t = step_time(T - 1 - s, T, reverse)       # forward steps in reverse
                carry = bufs[s & 1]
                nxt = bufs[(s + 1) & 1]
                dh_t = dH + t * BP
                if clip > 0:
                    clamp_units(carry + b0 * P, b1 - b0, P, 0, P, clip)
                for b in range(b0, b1):
                    if not is_active(lengths, b, t):
                        memset(dh_t + b * P, 0, P * sizeof(floating))
                    elif dy != NULL:
                        for j in range(P):
                            dh_t[b * P + j] = carry[b * P + j] + dy[t * BP + b * P + j]
                    else:
                        memcpy(dh_t + b * P, carry + b * P, P * sizeof(floating))
                # dm = dh_t @ W_hr, then the LSTM's gate gradients with dm as dh
                gemm_panels(b1 - b0, P, dh_t + b0 * P, P, panels_hr, nub_h, col0_h, width_h,
                            dm + b0 * H, H, False)
                for b in range(b0, b1):
                    if not is_active(lengths, b, t):
                        memset(gates + (t * B + b) * GH, 0, GH * sizeof(floating))
                        continue
                    if floating is float:
                        lstm_bwd_f32(H, gates + (t * B + b) * GH, H,
                                     cs + (prev_slot(0, t, reverse, True) * B + b) * H,
                                     tanh_c + t * BH + b * H, dm + b * H, NULL, dc + b * H,
                                     NULL)
                    else:
                        lstm_bwd_f64(H, gates + (t * B + b) * GH, H,
                                     cs + (prev_slot(0, t, reverse, True) * B + b) * H,
                                     tanh_c + t * BH + b * H, dm + b * H, NULL, dc + b * H,
                                     NULL)
                # the gradient reaching h_{t-1}: dG @ W_hh (an inactive row's passes through)
                gemm_panels(b1 - b0, GH, gates + (t * B + b0) * GH, GH, panels_hh, nub_p,
                            col0_p, width_p, nxt + b0 * P, P, False)
                for b in range(b0, b1):
                    if not is_active(lengths, b, t):
                        memcpy(nxt + b * P, carry + b * P, P * sizeof(floating))
    if T % 2 == 1:
        memcpy(dh0, work, BP * sizeof(floating))
    # dW_hr = dH.T @ M, dW_hh = dG.T @ H_prev
    gemm_split(True, False, <int>P, <int>H, <int>(T * B), dH, <int>P, ms, <int>H, False, dw_hr,
               <int>H, nthreads, False)
    gemm_split(True, False, <int>GH, <int>P, <int>(T * B), gates, <int>GH,
               hs + (BP if reverse else 0), <int>P, False, dw_hh, <int>P, nthreads, False)
    input_side_grads(T * B, I, GH, x, w_ih, gates, dx, dw_ih, db, nthreads)


def forward(x, w_ih, w_hh, w_hr, bias, h0, c0, lengths, bint reverse, bint training,
            int nthreads=1):
    """y (T,B,P), hT (B,P), cT (B,H), saved (gates, hs, cs, tanh_c, ms) when training."""
    if x.dtype == np.float32:
        return _forward(<float*>cnp.PyArray_DATA(x), x, w_ih, w_hh, w_hr, bias, h0, c0,
                        lengths, reverse, training, nthreads)
    _check_double(x)
    return _forward(<double*>cnp.PyArray_DATA(x), x, w_ih, w_hh, w_hr, bias, h0, c0, lengths,
                    reverse, training, nthreads)


cdef _forward(const floating* xp, x, w_ih, w_hh, w_hr, bias, h0, c0, lengths, bint reverse,
              bint training, int nthreads):
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2]
    cdef Py_ssize_t H = w_hr.shape[1], P = w_hr.shape[0]
    cdef Py_ssize_t chunk = T if training else max(1, min(T, INFER_ROWS // B))
    dtype = x.dtype
    gates = ws_empty((chunk, B, 4 * H), dtype)
    hs = ws_empty((T + 1 if training else 2, B, P), dtype)
    cs = ws_empty((T + 1 if training else 2, B, H), dtype)
    tanh_c = ws_empty((T if training else 1, B, H), dtype)
    ms = ws_empty((T if training else 1, B, H), dtype)
    y = np.empty((T, B, P), dtype)
    hT = np.empty((B, P), dtype)
    cT = np.empty((B, H), dtype)
    col0, width, nub_obj = unit_block_layout(4, H, dtype)
    col0_r, width_r, nub_r_obj = unit_block_layout(1, P, dtype)
    cdef Py_ssize_t nub = nub_obj, nub_r = nub_r_obj
    panels = ws_empty((4 * nub, P, panel_cols(xp)), dtype)
    panels_r = ws_empty((nub_r, H, panel_cols(xp)), dtype)
    nthreads = max(1, min(nthreads, B))
    cdef const Py_ssize_t* col0_p = <Py_ssize_t*>data_or_null(col0)
    cdef const int* width_p = <int*>data_or_null(width)
    cdef const Py_ssize_t* col0_r_p = <Py_ssize_t*>data_or_null(col0_r)
    cdef const int* width_r_p = <int*>data_or_null(width_r)
    cdef floating* panels_p = <floating*>data_or_null(panels)
    cdef floating* panels_r_p = <floating*>data_or_null(panels_r)
    cdef const floating* w_ih_p = <floating*>data_or_null(w_ih)
    cdef const floating* w_hh_p = <floating*>data_or_null(w_hh)
    cdef const floating* w_hr_p = <floating*>data_or_null(w_hr)
    cdef const floating* bias_p = <floating*>data_or_null(bias)
    cdef const floating* h0_p = <floating*>data_or_null(h0)
    cdef const floating* c0_p = <floating*>data_or_null(c0)
    cdef const int64_t* len_p = <int64_t*>data_or_null(lengths)
    cdef floating* gates_p = <floating*>data_or_null(gates)
    cdef floating* hs_p = <floating*>data_or_null(hs)
    cdef floating* cs_p = <floating*>data_or_null(cs)
    cdef floating* tc_p = <floating*>data_or_null(tanh_c)
    cdef floating* ms_p = <floating*>data_or_null(ms)
    cdef floating* y_p = <floating*>data_or_null(y)
    cdef floating* hT_p = <floating*>data_or_null(hT)
    cdef floating* cT_p = <floating*>data_or_null(cT)
    with nogil:
        lstmp_forward_kernel(T, B, I, H, P, xp, w_ih_p, w_hh_p, w_hr_p, bias_p, h0_p, c0_p,
                             len_p, reverse, training, chunk, col0_p, width_p, nub, col0_r_p,
                             width_r_p, nub_r, nthreads, panels_p, panels_r_p, gates_p, hs_p,
                             cs_p, tc_p, ms_p, y_p, hT_p, cT_p)
    ws_release((panels, panels_r), extra_refs=1)
    if training:
        return y, hT, cT, (gates, hs, cs, tanh_c, ms)
    ws_release((gates, hs, cs, tanh_c, ms), extra_refs=1)
    return y, hT, cT, None


def backward(dy, dhT, dcT, x, w_ih, w_hh, w_hr, lengths, bint reverse, saved, bint has_bias,
             int nthreads=1, double clip=0):
    """dx, dh0 (B,P), dc0 (B,H), dw_ih, dw_hh, dw_hr, db (None without bias)."""
    if x.dtype == np.float32:
        return _backward(<float*>cnp.PyArray_DATA(x), dy, dhT, dcT, x, w_ih, w_hh, w_hr,
                         lengths, reverse, saved, has_bias, nthreads, clip)
    _check_double(x)
    return _backward(<double*>cnp.PyArray_DATA(x), dy, dhT, dcT, x, w_ih, w_hh, w_hr, lengths,
                     reverse, saved, has_bias, nthreads, clip)


cdef _backward(const floating* xp, dy, dhT, dcT, x, w_ih, w_hh, w_hr, lengths, bint reverse,
               saved, bint has_bias, int nthreads, double clip):
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2]
    cdef Py_ssize_t H = w_hr.shape[1], P = w_hr.shape[0]
    gates, hs, cs, tanh_c, ms = saved
    dtype = x.dtype
    dh0 = np.empty((B, P), dtype)
    work = np.empty((B, P), dtype)
    dc0 = np.empty((B, H), dtype)
    dH = ws_empty((T, B, P), dtype)
    dm = np.empty((B, H), dtype)
    dx = np.empty_like(x)
    dw_ih = np.empty_like(w_ih)
    dw_hh = np.empty_like(w_hh)
    dw_hr = np.empty_like(w_hr)
    db = np.empty(4 * H, dtype) if has_bias else None
    col0_p, width_p, nub_p_obj = unit_block_layout(1, P, dtype)
    col0_h, width_h, nub_h_obj = unit_block_layout(1, H, dtype)
    cdef Py_ssize_t nub_p = nub_p_obj, nub_h = nub_h_obj
    panels_hh = ws_empty((nub_p, 4 * H, panel_cols(xp)), dtype)
    panels_hr = ws_empty((nub_h, P, panel_cols(xp)), dtype)
    nthreads = max(1, min(nthreads, B))
    cdef const Py_ssize_t* c0p = <Py_ssize_t*>data_or_null(col0_p)
    cdef const int* w0p = <int*>data_or_null(width_p)
    cdef const Py_ssize_t* c0h = <Py_ssize_t*>data_or_null(col0_h)
    cdef const int* w0h = <int*>data_or_null(width_h)
    cdef floating* phh = <floating*>data_or_null(panels_hh)
    cdef floating* phr = <floating*>data_or_null(panels_hr)
    cdef const floating* w_ih_p = <floating*>data_or_null(w_ih)
    cdef const floating* w_hh_p = <floating*>data_or_null(w_hh)
    cdef const floating* w_hr_p = <floating*>data_or_null(w_hr)
    cdef const int64_t* len_p = <int64_t*>data_or_null(lengths)
    cdef const floating* dy_p = <floating*>data_or_null(dy)
    cdef const floating* dhT_p = <floating*>data_or_null(dhT)
    cdef const floating* dcT_p = <floating*>data_or_null(dcT)
    cdef floating* gates_p = <floating*>data_or_null(gates)
    cdef const floating* hs_p = <floating*>data_or_null(hs)
    cdef const floating* cs_p = <floating*>data_or_null(cs)
    cdef const floating* tc_p = <floating*>data_or_null(tanh_c)
    cdef const floating* ms_p = <floating*>data_or_null(ms)
    cdef floating* dH_p = <floating*>data_or_null(dH)
    cdef floating* dm_p = <floating*>data_or_null(dm)
    cdef floating* dh0_p = <floating*>data_or_null(dh0)
    cdef floating* work_p = <floating*>data_or_null(work)
    cdef floating* dc0_p = <floating*>data_or_null(dc0)
    cdef floating* dx_p = <floating*>data_or_null(dx)
    cdef floating* dw_ih_p = <floating*>data_or_null(dw_ih)
    cdef floating* dw_hh_p = <floating*>data_or_null(dw_hh)
    cdef floating* dw_hr_p = <floating*>data_or_null(dw_hr)
    cdef floating* db_p = <floating*>data_or_null(db)
    with nogil:
        lstmp_backward_kernel(T, B, I, H, P, xp, w_ih_p, w_hh_p, w_hr_p, len_p, reverse, dy_p,
                              dhT_p, dcT_p, gates_p, hs_p, cs_p, tc_p, ms_p, c0p, w0p, nub_p,
                              c0h, w0h, nub_h, nthreads, clip, phh, phr, dH_p, dm_p, dh0_p,
                              work_p, dc0_p, dx_p, dw_ih_p, dw_hh_p, dw_hr_p, db_p)
    ws_release((panels_hh, panels_hr, dH), extra_refs=1)
    return dx, dh0, dc0, dw_ih, dw_hh, dw_hr, db
