"""LSTM forward and backward-through-time kernels (gate blocks i|f|g|o, PyTorch layout).

    i, f, o = sigmoid(.), g = tanh(.),  c' = f*c + i*g,  h' = o*tanh(c')

Python entry points `forward` and `backward` take arrays already validated by
fastrnn.functional (C-contiguous, one float dtype, right shapes) and run the whole recurrence
in one `with nogil:` block.  See _common.pxd for the slot/length conventions.
"""
import numpy as np
cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

from fastrnn._activations cimport sigmoid_v, tanh_v
from fastrnn._blas cimport gemm
from fastrnn._common cimport (INFER_ROWS, copy_or_zero, cur_slot, data_or_null, input_side_grads, is_active,
                              prev_slot, step_preactivations, step_time)

cnp.import_array()


cdef void lstm_forward_kernel(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
        const floating* x,          # IN  (T, B, I)
        const floating* w_ih,       # IN  (4H, I)
        const floating* w_hh,       # IN  (4H, H)
        const floating* bias,       # IN  (4H,) = b_ih + b_hh, or NULL
        const floating* h0,         # IN  (B, H) or NULL (zeros)
        const floating* c0,         # IN  (B, H) or NULL (zeros)
        const int64_t* lengths,     # IN  (B,) or NULL
        bint reverse, bint keep, Py_ssize_t chunk,
        floating* gates,            # OUT (chunk, B, 4H): post-activation gates when keep
        floating* hs,               # OUT (T+1 | 2, B, H) hidden-state slots
        floating* cs,               # OUT (T+1 | 2, B, H) cell-state slots
        floating* tanh_c,           # OUT (T, B, H) tanh(c_t) when keep, else WORK (B, H)
        floating* y,                # OUT (T, B, H)
        floating* hT, floating* cT  # OUT (B, H)
        ) noexcept nogil:
    cdef Py_ssize_t GH = 4 * H, BH = B * H
    cdef Py_ssize_t s, t, b, j, first
    cdef floating* g
    cdef floating* g_row
    cdef floating* h_prev
    cdef floating* h_cur
    cdef floating* c_prev
    cdef floating* c_cur
    cdef floating* y_t
    cdef floating* tc_t
    cdef floating* tc_row
    cdef floating* tc_work = tanh_c
    cdef Py_ssize_t k

    first = T if (reverse and keep) else 0
    copy_or_zero(hs + first * BH, h0, BH)
    copy_or_zero(cs + first * BH, c0, BH)
    for s in range(T):
        t = step_time(s, T, reverse)
        g = step_preactivations(s, t, T, chunk, reverse, B, I, GH, x, w_ih, bias, gates)
        h_prev = hs + prev_slot(s, t, reverse, keep) * BH
        h_cur = hs + cur_slot(s, t, reverse, keep) * BH
        c_prev = cs + prev_slot(s, t, reverse, keep) * BH
        c_cur = cs + cur_slot(s, t, reverse, keep) * BH
        y_t = y + t * BH
        tc_t = tanh_c + t * BH
        # G[t] += h_prev @ W_hh.T
        gemm(False, True, <int>B, <int>GH, <int>H, <floating>1, h_prev, <int>H, w_hh, <int>H,
             <floating>1, g, <int>GH)
        for b in range(B):
            if not is_active(lengths, b, t):
                memcpy(h_cur + b * H, h_prev + b * H, H * sizeof(floating))
                memcpy(c_cur + b * H, c_prev + b * H, H * sizeof(floating))
                memset(y_t + b * H, 0, H * sizeof(floating))
                continue
            g_row = g + b * GH
            k = b * H
            sigmoid_v(g_row, g_row, 2 * H)                  # i, f
            tanh_v(g_row + 2 * H, g_row + 2 * H, H)         # g
            sigmoid_v(g_row + 3 * H, g_row + 3 * H, H)      # o
            for j in range(H):
                c_cur[k + j] = g_row[H + j] * c_prev[k + j] + g_row[j] * g_row[2 * H + j]
            tc_row = (tc_t if keep else tc_work) + k
            tanh_v(c_cur + k, tc_row, H)
            for j in range(H):
                h_cur[k + j] = g_row[3 * H + j] * tc_row[j]
            memcpy(y_t + k, h_cur + k, H * sizeof(floating))
    t = cur_slot(T - 1, step_time(T - 1, T, reverse), reverse, keep)
    memcpy(hT, hs + t * BH, BH * sizeof(floating))
    memcpy(cT, cs + t * BH, BH * sizeof(floating))


cdef void lstm_backward_kernel(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
        const floating* x,          # IN  (T, B, I)
        const floating* w_ih,       # IN  (4H, I)
        const floating* w_hh,       # IN  (4H, H)
        const int64_t* lengths,     # IN  (B,) or NULL
        bint reverse,
        const floating* dy,         # IN  (T, B, H) or NULL
        const floating* dhT,        # IN  (B, H) or NULL
        const floating* dcT,        # IN  (B, H) or NULL
        floating* gates,            # IN/OUT (T, B, 4H): saved gates in, d(pre-activations) out
        const floating* hs,         # IN  (T+1, B, H)
        const floating* cs,         # IN  (T+1, B, H)
        const floating* tanh_c,     # IN  (T, B, H)
        floating* dh, floating* dh_next,   # WORK (B, H) each; dh ends as dh0
        floating* dc,               # OUT (B, H) dc0 (starts as dcT)
        floating* dx,               # OUT (T, B, I)
        floating* dw_ih,            # OUT (4H, I)
        floating* dw_hh,            # OUT (4H, H)
        floating* db                # OUT (4H,) or NULL
        ) noexcept nogil:
    cdef Py_ssize_t GH = 4 * H, BH = B * H
    cdef Py_ssize_t s, t, b, j, k
    cdef floating* g_row
    cdef floating* c_prev
    cdef floating* swap
    cdef const floating* tc_t
    cdef const floating* dy_t
    cdef floating gi, gf, gg, go, tc, dh_j, dc_j
    cdef floating beta = 0 if lengths == NULL else 1

    copy_or_zero(dh, dhT, BH)
    copy_or_zero(dc, dcT, BH)
    for s in range(T):
        t = step_time(T - 1 - s, T, reverse)          # forward steps in reverse order
        c_prev = <floating*>cs + prev_slot(0, t, reverse, True) * BH
        tc_t = tanh_c + t * BH
        dy_t = dy + t * BH if dy != NULL else NULL
        for b in range(B):
            g_row = gates + (t * B + b) * GH
            if not is_active(lengths, b, t):
                # state passed through unchanged: so does its gradient
                memset(g_row, 0, GH * sizeof(floating))
                memcpy(dh_next + b * H, dh + b * H, H * sizeof(floating))
                continue
            if lengths != NULL:
                memset(dh_next + b * H, 0, H * sizeof(floating))
            for j in range(H):
                k = b * H + j
                gi = g_row[j]
                gf = g_row[H + j]
                gg = g_row[2 * H + j]
                go = g_row[3 * H + j]
                tc = tc_t[k]
                dh_j = dh[k] + (dy_t[k] if dy_t != NULL else 0)
                dc_j = dc[k] + dh_j * go * (1 - tc * tc)
                g_row[j] = dc_j * gg * gi * (1 - gi)
                g_row[H + j] = dc_j * c_prev[k] * gf * (1 - gf)
                g_row[2 * H + j] = dc_j * gi * (1 - gg * gg)
                g_row[3 * H + j] = dh_j * tc * go * (1 - go)
                dc[k] = dc_j * gf
        # dh_next (+)= dG[t] @ W_hh
        gemm(False, False, <int>B, <int>H, <int>GH, <floating>1, gates + t * B * GH, <int>GH,
             w_hh, <int>H, beta, dh_next, <int>H)
        swap = dh
        dh = dh_next
        dh_next = swap
    if T % 2 == 1:
        # the result lives in the caller's dh_next buffer; move it to dh
        memcpy(dh_next, dh, BH * sizeof(floating))
    # dW_hh = dG.T @ H_prev
    gemm(True, False, <int>GH, <int>H, <int>(T * B), <floating>1, gates, <int>GH,
         hs + (BH if reverse else 0), <int>H, <floating>0, dw_hh, <int>H)
    input_side_grads(T * B, I, GH, x, w_ih, gates, dx, dw_ih, db)



def forward(x, w_ih, w_hh, bias, h0, c0, lengths, bint reverse, bint training):
    """y (T,B,H), hT, cT (B,H), saved: (gates, hs, cs, tanh_c) when training else None."""
    if x.dtype == np.float32:
        return _forward(<float*>cnp.PyArray_DATA(x), x, w_ih, w_hh, bias, h0, c0, lengths,
                        reverse, training)
    return _forward(<double*>cnp.PyArray_DATA(x), x, w_ih, w_hh, bias, h0, c0, lengths,
                    reverse, training)


cdef _forward(const floating* xp, x, w_ih, w_hh, bias, h0, c0, lengths, bint reverse,
              bint training):
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = w_hh.shape[1]
    cdef Py_ssize_t chunk = T if training else max(1, min(T, INFER_ROWS // B))
    dtype = x.dtype
    gates = np.empty((chunk, B, 4 * H), dtype)
    hs = np.empty((T + 1 if training else 2, B, H), dtype)
    cs = np.empty_like(hs)
    tanh_c = np.empty((T if training else 1, B, H), dtype)
    y = np.empty((T, B, H), dtype)
    hT = np.empty((B, H), dtype)
    cT = np.empty((B, H), dtype)
    cdef const floating* w_ih_p = <floating*>data_or_null(w_ih)
    cdef const floating* w_hh_p = <floating*>data_or_null(w_hh)
    cdef const floating* bias_p = <floating*>data_or_null(bias)
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
        lstm_forward_kernel(T, B, I, H, xp, w_ih_p, w_hh_p, bias_p, h0_p, c0_p, len_p,
                            reverse, training, chunk, gates_p, hs_p, cs_p, tc_p, y_p, hT_p,
                            cT_p)
    return y, hT, cT, ((gates, hs, cs, tanh_c) if training else None)


def backward(dy, dhT, dcT, x, w_ih, w_hh, lengths, bint reverse, saved, bint has_bias):
    """dx, dh0, dc0, dw_ih, dw_hh, db (None without bias).  Overwrites saved gates."""
    if x.dtype == np.float32:
        return _backward(<float*>cnp.PyArray_DATA(x), dy, dhT, dcT, x, w_ih, w_hh, lengths,
                         reverse, saved, has_bias)
    return _backward(<double*>cnp.PyArray_DATA(x), dy, dhT, dcT, x, w_ih, w_hh, lengths,
                     reverse, saved, has_bias)


cdef _backward(const floating* xp, dy, dhT, dcT, x, w_ih, w_hh, lengths, bint reverse,
               saved, bint has_bias):
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
    cdef const floating* w_ih_p = <floating*>data_or_null(w_ih)
    cdef const floating* w_hh_p = <floating*>data_or_null(w_hh)
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
        lstm_backward_kernel(T, B, I, H, xp, w_ih_p, w_hh_p, len_p, reverse, dy_p, dhT_p,
                             dcT_p, gates_p, hs_p, cs_p, tc_p, dh0_p, work_p, dc0_p, dx_p,
                             dw_ih_p, dw_hh_p, db_p)
    return dx, dh0, dc0, dw_ih, dw_hh, db
