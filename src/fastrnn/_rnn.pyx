"""Elman RNN forward and backward-through-time kernels (PyTorch layout, one gate block).

    h' = act(W_ih x + b_ih + W_hh h + b_hh),  act = tanh or relu

Python entry points `forward` and `backward` take arrays already validated by
fastrnn.functional.  See _common.pxd for the slot/length conventions.
"""
import numpy as np
cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

from fastrnn._activations cimport relu, tanh_v
from fastrnn._blas cimport gemm
from fastrnn._common cimport (INFER_ROWS, copy_or_zero, cur_slot, data_or_null,
                              input_side_grads, is_active, prev_slot, step_preactivations,
                              step_time)

cnp.import_array()


cdef void rnn_forward_kernel(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, bint use_relu,
        const floating* x,          # IN  (T, B, I)
        const floating* w_ih,       # IN  (H, I)
        const floating* w_hh,       # IN  (H, H)
        const floating* bias,       # IN  (H,) = b_ih + b_hh, or NULL
        const floating* h0,         # IN  (B, H) or NULL (zeros)
        const int64_t* lengths,     # IN  (B,) or NULL
        bint reverse, bint keep, Py_ssize_t chunk,
        floating* pre,              # WORK (chunk, B, H) pre-activations
        floating* hs,               # OUT (T+1 | 2, B, H) hidden-state slots
        floating* y,                # OUT (T, B, H)
        floating* hT                # OUT (B, H)
        ) noexcept nogil:
    cdef Py_ssize_t BH = B * H
    cdef Py_ssize_t s, t, b, j, k
    cdef floating* a
    cdef floating* h_prev
    cdef floating* h_cur
    cdef floating* y_t
    cdef floating h

    copy_or_zero(hs + (T if (reverse and keep) else 0) * BH, h0, BH)
    for s in range(T):
        t = step_time(s, T, reverse)
        a = step_preactivations(s, t, T, chunk, reverse, B, I, H, x, w_ih, bias, pre)
        h_prev = hs + prev_slot(s, t, reverse, keep) * BH
        h_cur = hs + cur_slot(s, t, reverse, keep) * BH
        y_t = y + t * BH
        # A[t] += h_prev @ W_hh.T
        gemm(False, True, <int>B, <int>H, <int>H, <floating>1, h_prev, <int>H, w_hh, <int>H,
             <floating>1, a, <int>H)
        for b in range(B):
            if not is_active(lengths, b, t):
                memcpy(h_cur + b * H, h_prev + b * H, H * sizeof(floating))
                memset(y_t + b * H, 0, H * sizeof(floating))
                continue
            if use_relu:
                for j in range(b * H, (b + 1) * H):
                    h_cur[j] = relu(a[j])
            else:
                tanh_v(a + b * H, h_cur + b * H, H)
            memcpy(y_t + b * H, h_cur + b * H, H * sizeof(floating))
    k = cur_slot(T - 1, step_time(T - 1, T, reverse), reverse, keep)
    memcpy(hT, hs + k * BH, BH * sizeof(floating))


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
        floating* d_pre,            # WORK (T, B, H) d(pre-activations)
        floating* dh, floating* dh_next,   # WORK (B, H) each; dh ends as dh0
        floating* dx,               # OUT (T, B, I)
        floating* dw_ih,            # OUT (H, I)
        floating* dw_hh,            # OUT (H, H)
        floating* db                # OUT (H,) or NULL
        ) noexcept nogil:
    cdef Py_ssize_t BH = B * H
    cdef Py_ssize_t s, t, b, j
    cdef const floating* h_t
    cdef const floating* dy_t
    cdef floating* da_t
    cdef floating* swap
    cdef floating dh_j, h
    cdef floating beta = 0 if lengths == NULL else 1

    copy_or_zero(dh, dhT, BH)
    for s in range(T):
        t = step_time(T - 1 - s, T, reverse)          # forward steps in reverse order
        h_t = hs + cur_slot(0, t, reverse, True) * BH
        dy_t = dy + t * BH if dy != NULL else NULL
        da_t = d_pre + t * BH
        for b in range(B):
            if not is_active(lengths, b, t):
                memset(da_t + b * H, 0, H * sizeof(floating))
                memcpy(dh_next + b * H, dh + b * H, H * sizeof(floating))
                continue
            if lengths != NULL:
                memset(dh_next + b * H, 0, H * sizeof(floating))
            for j in range(b * H, (b + 1) * H):
                dh_j = dh[j] + (dy_t[j] if dy_t != NULL else 0)
                h = h_t[j]
                if use_relu:
                    da_t[j] = dh_j if h > 0 else 0
                else:
                    da_t[j] = dh_j * (1 - h * h)
        # dh_next (+)= dA[t] @ W_hh
        gemm(False, False, <int>B, <int>H, <int>H, <floating>1, da_t, <int>H, w_hh, <int>H,
             beta, dh_next, <int>H)
        swap = dh
        dh = dh_next
        dh_next = swap
    if T % 2 == 1:
        memcpy(dh_next, dh, BH * sizeof(floating))   # result back into the caller's dh
    # dW_hh = dA.T @ H_prev
    gemm(True, False, <int>H, <int>H, <int>(T * B), <floating>1, d_pre, <int>H,
         hs + (BH if reverse else 0), <int>H, <floating>0, dw_hh, <int>H)
    input_side_grads(T * B, I, H, x, w_ih, d_pre, dx, dw_ih, db)


def forward(x, w_ih, w_hh, bias, h0, lengths, bint reverse, bint training, bint use_relu):
    """y (T,B,H), hT (B,H), saved: (hs,) when training else None."""
    if x.dtype == np.float32:
        return _forward(<float*>cnp.PyArray_DATA(x), x, w_ih, w_hh, bias, h0, lengths,
                        reverse, training, use_relu)
    return _forward(<double*>cnp.PyArray_DATA(x), x, w_ih, w_hh, bias, h0, lengths,
                    reverse, training, use_relu)


cdef _forward(const floating* xp, x, w_ih, w_hh, bias, h0, lengths, bint reverse,
              bint training, bint use_relu):
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = w_hh.shape[1]
    cdef Py_ssize_t chunk = T if training else max(1, min(T, INFER_ROWS // B))
    dtype = x.dtype
    pre = np.empty((chunk, B, H), dtype)
    hs = np.empty((T + 1 if training else 2, B, H), dtype)
    y = np.empty((T, B, H), dtype)
    hT = np.empty((B, H), dtype)
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
                           reverse, training, chunk, pre_p, hs_p, y_p, hT_p)
    return y, hT, ((hs,) if training else None)


def backward(dy, dhT, x, w_ih, w_hh, lengths, bint reverse, saved, bint has_bias,
             bint use_relu):
    """dx, dh0, dw_ih, dw_hh, db (None without bias)."""
    if x.dtype == np.float32:
        return _backward(<float*>cnp.PyArray_DATA(x), dy, dhT, x, w_ih, w_hh, lengths,
                         reverse, saved, has_bias, use_relu)
    return _backward(<double*>cnp.PyArray_DATA(x), dy, dhT, x, w_ih, w_hh, lengths,
                     reverse, saved, has_bias, use_relu)


cdef _backward(const floating* xp, dy, dhT, x, w_ih, w_hh, lengths, bint reverse, saved,
               bint has_bias, bint use_relu):
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = w_hh.shape[1]
    (hs,) = saved
    dtype = x.dtype
    d_pre = np.empty((T, B, H), dtype)
    dh0 = np.empty((B, H), dtype)
    work = np.empty((B, H), dtype)
    dx = np.empty_like(x)
    dw_ih = np.empty_like(w_ih)
    dw_hh = np.empty_like(w_hh)
    db = np.empty(H, dtype) if has_bias else None
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
                            dhT_p, hs_p, d_pre_p, dh0_p, work_p, dx_p, dw_ih_p, dw_hh_p, db_p)
    return dx, dh0, dw_ih, dw_hh, db
