"""GRU forward and backward-through-time kernels (gate blocks r|z|n, PyTorch layout).

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr),  z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    reset_after=True  (PyTorch, cuDNN, Keras default):  n = tanh(W_in x + b_in + r*(W_hn h + b_hn))
    reset_after=False (Cho et al. 2014):                n = tanh(W_in x + b_in + W_hn (r*h) + b_hn)
    h' = (1-z)*n + z*h = n + z*(h - n)

Python entry points `forward` and `backward` take arrays already validated by
fastrnn.functional.  See _common.pxd for the slot/length conventions.
"""
import numpy as np
cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

from fastrnn._activations cimport sigmoid_v, tanh_v
from fastrnn._blas cimport gemm
from fastrnn._common cimport (INFER_ROWS, column_sums, copy_or_zero, cur_slot, data_or_null,
                              input_side_grads, is_active, prev_slot, step_preactivations,
                              step_time)

cnp.import_array()


cdef void gru_forward_kernel(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, bint reset_after,
        const floating* x,          # IN  (T, B, I)
        const floating* w_ih,       # IN  (3H, I)
        const floating* w_hh,       # IN  (3H, H)
        const floating* bias,       # IN  (3H,) input-side bias (see functional), or NULL
        const floating* b_hn,       # IN  (H,) reset_after: b_hn kept inside r*(.), or NULL
        const floating* h0,         # IN  (B, H) or NULL (zeros)
        const int64_t* lengths,     # IN  (B,) or NULL
        bint reverse, bint keep, Py_ssize_t chunk,
        floating* gates,            # OUT (chunk, B, 3H): post-activation r|z|n when keep
        floating* hs,               # OUT (T+1 | 2, B, H) hidden-state slots
        floating* aux,              # OUT (T | 1, B, H): W_hn h + b_hn (reset_after) or r*h
        floating* hh,               # WORK (B, 3H) recurrent products (reset_after)
        floating* y,                # OUT (T, B, H)
        floating* hT                # OUT (B, H)
        ) noexcept nogil:
    cdef Py_ssize_t GH = 3 * H, BH = B * H
    cdef Py_ssize_t s, t, b, j, k
    cdef floating* g
    cdef floating* g_row
    cdef floating* hh_row
    cdef floating* hn_row
    cdef floating* h_prev
    cdef floating* h_cur
    cdef floating* y_t
    cdef floating* aux_t
    cdef floating r, z, n, hn

    copy_or_zero(hs + (T if (reverse and keep) else 0) * BH, h0, BH)
    for s in range(T):
        t = step_time(s, T, reverse)
        g = step_preactivations(s, t, T, chunk, reverse, B, I, GH, x, w_ih, bias, gates)
        h_prev = hs + prev_slot(s, t, reverse, keep) * BH
        h_cur = hs + cur_slot(s, t, reverse, keep) * BH
        y_t = y + t * BH
        aux_t = aux + (t * BH if keep else 0)
        if reset_after:
            # HH = h_prev @ W_hh.T
            gemm(False, True, <int>B, <int>GH, <int>H, <floating>1, h_prev, <int>H, w_hh,
                 <int>H, <floating>0, hh, <int>GH)
        else:
            # G[t][:, :2H] += h_prev @ W_hh[:2H].T
            gemm(False, True, <int>B, <int>(2 * H), <int>H, <floating>1, h_prev, <int>H, w_hh,
                 <int>H, <floating>1, g, <int>GH)
        for b in range(B):
            if not is_active(lengths, b, t):
                memcpy(h_cur + b * H, h_prev + b * H, H * sizeof(floating))
                memset(y_t + b * H, 0, H * sizeof(floating))
                if not reset_after:
                    memset(aux_t + b * H, 0, H * sizeof(floating))
                continue
            g_row = g + b * GH
            k = b * H
            if reset_after:
                hh_row = hh + b * GH
                for j in range(2 * H):
                    g_row[j] += hh_row[j]
                sigmoid_v(g_row, g_row, 2 * H)              # r, z
                hn_row = aux_t + k if keep else hh_row + 2 * H
                for j in range(H):
                    hn = hh_row[2 * H + j] + (b_hn[j] if b_hn != NULL else 0)
                    hn_row[j] = hn
                    g_row[2 * H + j] += g_row[j] * hn
                tanh_v(g_row + 2 * H, g_row + 2 * H, H)     # n
                for j in range(H):
                    n = g_row[2 * H + j]
                    h_cur[k + j] = n + g_row[H + j] * (h_prev[k + j] - n)
                memcpy(y_t + k, h_cur + k, H * sizeof(floating))
            else:
                sigmoid_v(g_row, g_row, 2 * H)              # r, z
                for j in range(H):
                    aux_t[k + j] = g_row[j] * h_prev[k + j]
        if not reset_after:
            # G[t][:, 2H:] += (r*h_prev) @ W_hn.T
            gemm(False, True, <int>B, <int>H, <int>H, <floating>1, aux_t, <int>H,
                 w_hh + 2 * H * H, <int>H, <floating>1, g + 2 * H, <int>GH)
            for b in range(B):
                if not is_active(lengths, b, t):
                    continue
                g_row = g + b * GH
                k = b * H
                tanh_v(g_row + 2 * H, g_row + 2 * H, H)     # n
                for j in range(H):
                    n = g_row[2 * H + j]
                    h_cur[k + j] = n + g_row[H + j] * (h_prev[k + j] - n)
                memcpy(y_t + k, h_cur + k, H * sizeof(floating))
    k = cur_slot(T - 1, step_time(T - 1, T, reverse), reverse, keep)
    memcpy(hT, hs + k * BH, BH * sizeof(floating))


cdef void gru_backward_kernel(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, bint reset_after,
        const floating* x,          # IN  (T, B, I)
        const floating* w_ih,       # IN  (3H, I)
        const floating* w_hh,       # IN  (3H, H)
        const int64_t* lengths,     # IN  (B,) or NULL
        bint reverse,
        const floating* dy,         # IN  (T, B, H) or NULL
        const floating* dhT,        # IN  (B, H) or NULL
        floating* gates,            # IN/OUT (T, B, 3H): saved r|z|n in, d(pre-activations) out
        const floating* hs,         # IN  (T+1, B, H)
        floating* aux,              # IN/OUT (T, B, H): reset_after: W_hn h + b_hn in,
                                    #   d(W_hn h + b_hn) out; else r*h_prev (kept)
        floating* work,             # WORK (B, 3H): reset_after: hh-side dG; else d(r*h) (B, H)
        floating* dh, floating* dh_next,   # WORK (B, H) each; dh ends as dh0
        floating* dx,               # OUT (T, B, I)
        floating* dw_ih,            # OUT (3H, I)
        floating* dw_hh,            # OUT (3H, H)
        floating* db_ih,            # OUT (3H,) or NULL
        floating* db_hh             # OUT (3H,) or NULL
        ) noexcept nogil:
    cdef Py_ssize_t GH = 3 * H, BH = B * H, TB = T * B
    cdef Py_ssize_t s, t, b, j, k
    cdef const floating* h_prev
    cdef const floating* dy_t
    cdef floating* g_t
    cdef floating* g_row
    cdef floating* w_row
    cdef floating* aux_t
    cdef floating* swap
    cdef floating r, z, n, dh_j, dn

    copy_or_zero(dh, dhT, BH)
    for s in range(T):
        t = step_time(T - 1 - s, T, reverse)          # forward steps in reverse order
        h_prev = hs + prev_slot(0, t, reverse, True) * BH
        dy_t = dy + t * BH if dy != NULL else NULL
        g_t = gates + t * B * GH
        aux_t = aux + t * BH
        for b in range(B):
            g_row = g_t + b * GH
            if not is_active(lengths, b, t):
                memset(g_row, 0, GH * sizeof(floating))
                memcpy(dh_next + b * H, dh + b * H, H * sizeof(floating))
                if reset_after:
                    memset(work + b * GH, 0, GH * sizeof(floating))
                    memset(aux_t + b * H, 0, H * sizeof(floating))
                continue
            w_row = work + b * GH
            for j in range(H):
                k = b * H + j
                r = g_row[j]
                z = g_row[H + j]
                n = g_row[2 * H + j]
                dh_j = dh[k] + (dy_t[k] if dy_t != NULL else 0)
                dn = dh_j * (1 - z) * (1 - n * n)
                g_row[H + j] = dh_j * (h_prev[k] - n) * z * (1 - z)
                g_row[2 * H + j] = dn
                dh_next[k] = dh_j * z
                if reset_after:
                    g_row[j] = dn * aux_t[k] * r * (1 - r)
                    aux_t[k] = dn * r                 # d(W_hn h + b_hn)
                    w_row[j] = g_row[j]
                    w_row[H + j] = g_row[H + j]
                    w_row[2 * H + j] = aux_t[k]
        if reset_after:
            # dh_next += [dr, dz, dn*r] @ W_hh
            gemm(False, False, <int>B, <int>H, <int>GH, <floating>1, work, <int>GH, w_hh,
                 <int>H, <floating>1, dh_next, <int>H)
        else:
            # d(r*h) = dn @ W_hn
            gemm(False, False, <int>B, <int>H, <int>H, <floating>1, g_t + 2 * H, <int>GH,
                 w_hh + 2 * H * H, <int>H, <floating>0, work, <int>H)
            for b in range(B):
                if not is_active(lengths, b, t):
                    continue
                g_row = g_t + b * GH
                for j in range(H):
                    k = b * H + j
                    r = g_row[j]
                    g_row[j] = work[k] * h_prev[k] * r * (1 - r)
                    dh_next[k] += work[k] * r
            # dh_next += [dr, dz] @ W_hh[:2H]
            gemm(False, False, <int>B, <int>H, <int>(2 * H), <floating>1, g_t, <int>GH, w_hh,
                 <int>H, <floating>1, dh_next, <int>H)
        swap = dh
        dh = dh_next
        dh_next = swap
    if T % 2 == 1:
        memcpy(dh_next, dh, BH * sizeof(floating))   # result back into the caller's dh

    h_prev = hs + (BH if reverse else 0)
    # dW_hh[:2H] = dG[:, :2H].T @ H_prev
    gemm(True, False, <int>(2 * H), <int>H, <int>TB, <floating>1, gates, <int>GH, h_prev,
         <int>H, <floating>0, dw_hh, <int>H)
    if reset_after:
        # dW_hn = d(W_hn h).T @ H_prev
        gemm(True, False, <int>H, <int>H, <int>TB, <floating>1, aux, <int>H, h_prev, <int>H,
             <floating>0, dw_hh + 2 * H * H, <int>H)
    else:
        # dW_hn = dn.T @ (r*h_prev)
        gemm(True, False, <int>H, <int>H, <int>TB, <floating>1, gates + 2 * H, <int>GH, aux,
             <int>H, <floating>0, dw_hh + 2 * H * H, <int>H)
    input_side_grads(TB, I, GH, x, w_ih, gates, dx, dw_ih, db_ih)
    if db_hh != NULL:
        if reset_after:
            column_sums(TB, 2 * H, GH, gates, db_hh)
            column_sums(TB, H, H, aux, db_hh + 2 * H)
        else:
            memcpy(db_hh, db_ih, GH * sizeof(floating))


def forward(x, w_ih, w_hh, bias, b_hn, h0, lengths, bint reverse, bint training,
            bint reset_after):
    """y (T,B,H), hT (B,H), saved: (gates, hs, aux) when training else None.

    bias (3H,) is everything added on the input side: b_ih + [b_hr, b_hz, b_hn], except that
    with reset_after the b_hn block is left out and passed as b_hn (H,) instead."""
    if x.dtype == np.float32:
        return _forward(<float*>cnp.PyArray_DATA(x), x, w_ih, w_hh, bias, b_hn, h0, lengths,
                        reverse, training, reset_after)
    return _forward(<double*>cnp.PyArray_DATA(x), x, w_ih, w_hh, bias, b_hn, h0, lengths,
                    reverse, training, reset_after)


cdef _forward(const floating* xp, x, w_ih, w_hh, bias, b_hn, h0, lengths, bint reverse,
              bint training, bint reset_after):
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = w_hh.shape[1]
    cdef Py_ssize_t chunk = T if training else max(1, min(T, INFER_ROWS // B))
    dtype = x.dtype
    gates = np.empty((chunk, B, 3 * H), dtype)
    hs = np.empty((T + 1 if training else 2, B, H), dtype)
    aux = np.empty((T if training else 1, B, H), dtype)
    hh = np.empty((B, 3 * H), dtype) if reset_after else None
    y = np.empty((T, B, H), dtype)
    hT = np.empty((B, H), dtype)
    cdef const floating* w_ih_p = <floating*>data_or_null(w_ih)
    cdef const floating* w_hh_p = <floating*>data_or_null(w_hh)
    cdef const floating* bias_p = <floating*>data_or_null(bias)
    cdef const floating* b_hn_p = <floating*>data_or_null(b_hn)
    cdef const floating* h0_p = <floating*>data_or_null(h0)
    cdef const int64_t* len_p = <int64_t*>data_or_null(lengths)
    cdef floating* gates_p = <floating*>data_or_null(gates)
    cdef floating* hs_p = <floating*>data_or_null(hs)
    cdef floating* aux_p = <floating*>data_or_null(aux)
    cdef floating* hh_p = <floating*>data_or_null(hh)
    cdef floating* y_p = <floating*>data_or_null(y)
    cdef floating* hT_p = <floating*>data_or_null(hT)
    with nogil:
        gru_forward_kernel(T, B, I, H, reset_after, xp, w_ih_p, w_hh_p, bias_p, b_hn_p, h0_p,
                           len_p, reverse, training, chunk, gates_p, hs_p, aux_p, hh_p, y_p,
                           hT_p)
    return y, hT, ((gates, hs, aux) if training else None)


def backward(dy, dhT, x, w_ih, w_hh, lengths, bint reverse, saved, bint has_bias,
             bint reset_after):
    """dx, dh0, dw_ih, dw_hh, db_ih, db_hh (None without bias).  Overwrites saved buffers."""
    if x.dtype == np.float32:
        return _backward(<float*>cnp.PyArray_DATA(x), dy, dhT, x, w_ih, w_hh, lengths,
                         reverse, saved, has_bias, reset_after)
    return _backward(<double*>cnp.PyArray_DATA(x), dy, dhT, x, w_ih, w_hh, lengths,
                     reverse, saved, has_bias, reset_after)


cdef _backward(const floating* xp, dy, dhT, x, w_ih, w_hh, lengths, bint reverse, saved,
               bint has_bias, bint reset_after):
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = w_hh.shape[1]
    gates, hs, aux = saved
    dtype = x.dtype
    work = np.empty((B, 3 * H), dtype)
    dh0 = np.empty((B, H), dtype)
    work_h = np.empty((B, H), dtype)
    dx = np.empty_like(x)
    dw_ih = np.empty_like(w_ih)
    dw_hh = np.empty_like(w_hh)
    db_ih = np.empty(3 * H, dtype) if has_bias else None
    db_hh = np.empty(3 * H, dtype) if has_bias else None
    cdef const floating* w_ih_p = <floating*>data_or_null(w_ih)
    cdef const floating* w_hh_p = <floating*>data_or_null(w_hh)
    cdef const int64_t* len_p = <int64_t*>data_or_null(lengths)
    cdef const floating* dy_p = <floating*>data_or_null(dy)
    cdef const floating* dhT_p = <floating*>data_or_null(dhT)
    cdef floating* gates_p = <floating*>data_or_null(gates)
    cdef const floating* hs_p = <floating*>data_or_null(hs)
    cdef floating* aux_p = <floating*>data_or_null(aux)
    cdef floating* work_p = <floating*>data_or_null(work)
    cdef floating* dh0_p = <floating*>data_or_null(dh0)
    cdef floating* work_h_p = <floating*>data_or_null(work_h)
    cdef floating* dx_p = <floating*>data_or_null(dx)
    cdef floating* dw_ih_p = <floating*>data_or_null(dw_ih)
    cdef floating* dw_hh_p = <floating*>data_or_null(dw_hh)
    cdef floating* db_ih_p = <floating*>data_or_null(db_ih)
    cdef floating* db_hh_p = <floating*>data_or_null(db_hh)
    with nogil:
        gru_backward_kernel(T, B, I, H, reset_after, xp, w_ih_p, w_hh_p, len_p, reverse,
                            dy_p, dhT_p, gates_p, hs_p, aux_p, work_p, dh0_p, work_h_p, dx_p,
                            dw_ih_p, dw_hh_p, db_ih_p, db_hh_p)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh
