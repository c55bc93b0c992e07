"""GRU forward and backward-through-time kernels (gate blocks r|z|n, PyTorch layout).

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr),  z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    reset_after=True  (PyTorch, cuDNN, Keras default):  n = tanh(W_in x + b_in + r*(W_hn h + b_hn))
    reset_after=False (Cho et al. 2014):                n = tanh(W_in x + b_in + W_hn (r*h) + b_hn)
    h' = (1-z)*n + z*h = n + z*(h - n)

Python entry points `forward` and `backward` take arrays already validated by
fastrnn.functional.  See common.pxd for the slot/length conventions.
"""
import numpy as np
cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

from cython.parallel cimport parallel, prange
from fastrnn.engine.simd cimport gru_bwd_f32, gru_bwd_f64, gru_fwd_f32, gru_fwd_f64
from fastrnn.engine.activations cimport sigmoid_v, tanh_v
from fastrnn.engine.blas cimport gemm_split
from fastrnn.engine.common cimport (clamp_units, GROUP, INFER_ROWS, _check_double, chunk_projection, column_sums, copy_or_zero,
                              group_panels, group_size, group_units, n_groups,
                              cur_slot, data_or_null, gemm_panels, input_side_grads, step_input,
                              is_active, pack_panels, panel_cols, prev_slot, step_time)
from fastrnn.engine.simd import pack_unit_blocks, unit_block_layout
from fastrnn.engine.workspace import empty as ws_empty, release as ws_release

cnp.import_array()


cdef void gru_forward_a(
        Py_ssize_t u0, Py_ssize_t nu, Py_ssize_t t, Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t H,
        bint reset_after, const floating* panels, const Py_ssize_t* col0, const int* width,
        const floating* b_hn, const int64_t* lengths, floating* g, floating* hh,
        const floating* h_prev, floating* h_cur, floating* aux_t, floating* y_t,
        bint keep, Py_ssize_t I, const floating* x_t, const floating* panels_x,
        const floating* bias) noexcept nogil:
    """Units u0 .. u0+nu-1 of rows b0 .. b1-1.  reset_after: the whole step (hh = h_prev @ W_hh.T for
    the unit block's three gates, then the update).  Otherwise the first half: r and z
    (their recurrent terms accumulate into g) and aux = r * h_prev.  With panels_x (packed
    W_ih for this unit block's three gates, reset_after only) the input projection is made
    here too: g = x_t @ W_ih.T + bias first."""
    cdef Py_ssize_t GH = 3 * H
    cdef Py_ssize_t b, j, k
    cdef floating* g_row
    cdef floating* hh_row
    cdef floating* hn_row
    if panels_x != NULL:
        step_input(b1 - b0, I, x_t + b0 * I, panels_x, 3, col0, width, bias, g + b0 * GH, GH)
    if reset_after:
        gemm_panels(b1 - b0, H, h_prev + b0 * H, H, panels, 3, col0, width, hh + b0 * GH, GH,
                    False)
    else:
        gemm_panels(b1 - b0, H, h_prev + b0 * H, H, panels, 2, col0, width, g + b0 * GH, GH,
                    True)
    for b in range(b0, b1):
        k = b * H + u0
        if not is_active(lengths, b, t):
            if not reset_after:
                memset(aux_t + k, 0, nu * sizeof(floating))
            else:
                memcpy(h_cur + k, h_prev + k, nu * sizeof(floating))
                memset(y_t + k, 0, nu * sizeof(floating))
            continue
        g_row = g + b * GH + u0
        if reset_after:
            hh_row = hh + b * GH + u0
            hn_row = aux_t + k if keep else hh_row + 2 * H
            if floating is float:
                gru_fwd_f32(nu, g_row, hh_row, H, b_hn + u0 if b_hn != NULL else NULL,
                            h_prev + k, hn_row, h_cur + k)
            else:
                gru_fwd_f64(nu, g_row, hh_row, H, b_hn + u0 if b_hn != NULL else NULL,
                            h_prev + k, hn_row, h_cur + k)
            if y_t != NULL:
                memcpy(y_t + k, h_cur + k, nu * sizeof(floating))
        else:
            sigmoid_v(g_row, g_row, nu)                     # r
            sigmoid_v(g_row + H, g_row + H, nu)             # z
            for j in range(nu):
                aux_t[k + j] = g_row[j] * h_prev[k + j]


cdef void gru_forward_b(
        Py_ssize_t u0, Py_ssize_t nu, Py_ssize_t t, Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t H,
        const floating* panel, Py_ssize_t npanels, const Py_ssize_t* col0, const int* width,
        const int64_t* lengths, floating* g, const floating* aux_t, const floating* h_prev,
        floating* h_cur, floating* y_t) noexcept nogil:
    """reset_after=False, second half for units u0 .. u0+nu-1 of rows b0 .. b1-1: n from
    (r*h) @ W_hn.T, then h."""
    cdef Py_ssize_t GH = 3 * H
    cdef Py_ssize_t b, j, k
    cdef floating* g_row
    cdef floating n
    gemm_panels(b1 - b0, H, aux_t + b0 * H, H, panel, npanels, col0, width,
                g + b0 * GH + 2 * H, GH, True)
    for b in range(b0, b1):
        k = b * H + u0
        if not is_active(lengths, b, t):
            memcpy(h_cur + k, h_prev + k, nu * sizeof(floating))
            memset(y_t + k, 0, nu * sizeof(floating))
            continue
        g_row = g + b * GH + u0
        tanh_v(g_row + 2 * H, g_row + 2 * H, nu)            # n
        for j in range(nu):
            n = g_row[2 * H + j]
            h_cur[k + j] = n + g_row[H + j] * (h_prev[k + j] - n)
        if y_t != NULL:
            memcpy(y_t + k, h_cur + k, nu * sizeof(floating))


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
        const Py_ssize_t* col0_a, const int* width_a,   # panels a: per unit block r|z|n
        const Py_ssize_t* col0_n, const int* width_n,   #   (r|z if not reset_after); n: W_hn
        Py_ssize_t nub, int nthreads, bint by_rows,
        floating* panels_a,         # WORK (G_a * nub, H, NR) packed W_hh.T
        floating* panels_n,         # WORK (nub, H, NR) packed W_hn.T (not reset_after)
        floating* panels_x,         # WORK (3 * nub, I, NR) packed W_ih.T, or NULL (below)
        floating* gates,            # OUT (chunk, B, 3H): post-activation r|z|n when keep
        floating* hs,               # OUT (T+1 | 2, B, H) hidden-state slots
        floating* aux,              # OUT (T | 1, B, H): W_hn h + b_hn (reset_after) or r*h
        floating* hh,               # WORK (B, 3H) recurrent products (reset_after)
        floating* y,                # OUT (T, B, H)
        floating* hT                # OUT (B, H)
        ) noexcept nogil:
    # The input projection: as BLAS products over `chunk` steps at a time, or, when the
    # caller packs W_ih (panels_x != NULL, reset_after only; see fastrnn.functional.
    # _fuse_input), step by step inside the recurrence: then chunk is T, and gates is
    # (1, B, 3H) unless keep.
    cdef Py_ssize_t GH = 3 * H, BH = B * H
    cdef Py_ssize_t G_a = 3 if reset_after else 2
    cdef Py_ssize_t NR = panel_cols(gates)
    cdef Py_ssize_t s, s0, n, t, t_lo, ub, grp, part, b0, b1
    cdef Py_ssize_t gstep = B * GH if (panels_x == NULL or keep) else 0
    cdef floating* g
    cdef Py_ssize_t gs = GROUP if by_rows else group_size(nub, nthreads)

    s = t = 0
    g = NULL
    pack_panels(w_hh, H, True, H, G_a * nub, col0_a, width_a, panels_a)
    if panels_x != NULL:
        pack_panels(w_ih, I, True, I, 3 * nub, col0_a, width_a, panels_x)
    if not reset_after:
        pack_panels(w_hh + 2 * H * H, H, True, H, nub, col0_n, width_n, panels_n)
    copy_or_zero(hs + (T if (reverse and keep) else 0) * BH, h0, BH)
    s0 = 0
    while s0 < T:
        n = min(chunk, T - s0)
        if panels_x == NULL:
            t_lo = chunk_projection(s0, n, T, reverse, B, I, GH, x, w_ih, bias, gates,
                                    nthreads)
        else:
            t_lo = 0
        if by_rows:
            # each thread: its rows through every step of the chunk, no barrier
            with parallel(num_threads=nthreads):
                for part in prange(nthreads, schedule="static"):
                    b0 = B * part // nthreads
                    b1 = B * (part + 1) // nthreads
                    for s in range(s0, s0 + n):
                        t = step_time(s, T, reverse)
                        g = gates + (t - t_lo) * gstep
                        for ub in range(nub):
                            gru_forward_a(col0_n[ub], width_n[ub], t, b0, b1, H, reset_after,
                                          panels_a + G_a * ub * H * NR, col0_a + G_a * ub,
                                          width_a + G_a * ub, b_hn, lengths, g, hh,
                                          hs + prev_slot(s, t, reverse, keep) * BH,
                                          hs + cur_slot(s, t, reverse, keep) * BH,
                                          aux + (t * BH if keep else 0), y + t * BH, keep,
                                          I, x + t * B * I, panels_x + 3 * ub * I * NR
                                          if panels_x != NULL else NULL, bias)
                        if not reset_after:
                            for grp in range(n_groups(nub, gs)):
                                gru_forward_b(col0_n[grp * gs],
                                              group_units(grp, nub, col0_n, width_n, gs), t,
                                              b0, b1, H, panels_n + grp * gs * H * NR,
                                              group_panels(grp, nub, gs), col0_n + grp * gs,
                                              width_n + grp * gs, lengths, g,
                                              aux + (t * BH if keep else 0),
                                              hs + prev_slot(s, t, reverse, keep) * BH,
                                              hs + cur_slot(s, t, reverse, keep) * BH,
                                              y + t * BH)
            s0 += n
            continue
        with parallel(num_threads=nthreads):
            for s in range(s0, s0 + n):
                t = step_time(s, T, reverse)
                g = gates + (t - t_lo) * gstep
                for ub in prange(nub, schedule="static"):
                    gru_forward_a(col0_n[ub], width_n[ub], t, 0, B, H, reset_after,
                                  panels_a + G_a * ub * H * NR, col0_a + G_a * ub,
                                  width_a + G_a * ub, b_hn, lengths, g, hh,
                                  hs + prev_slot(s, t, reverse, keep) * BH,
                                  hs + cur_slot(s, t, reverse, keep) * BH,
                                  aux + (t * BH if keep else 0), y + t * BH, keep,
                                  I, x + t * B * I, panels_x + 3 * ub * I * NR
                                  if panels_x != NULL else NULL, bias)
                if not reset_after:
                    for grp in prange(n_groups(nub, gs), schedule="static"):
                        gru_forward_b(col0_n[grp * gs],
                                      group_units(grp, nub, col0_n, width_n, gs), t, 0, B, H,
                                      panels_n + grp * gs * H * NR, group_panels(grp, nub, gs),
                                      col0_n + grp * gs, width_n + grp * gs,
                                      lengths, g, aux + (t * BH if keep else 0),
                                      hs + prev_slot(s, t, reverse, keep) * BH,
                                      hs + cur_slot(s, t, reverse, keep) * BH, y + t * BH)
        s0 += n
    t = cur_slot(T - 1, step_time(T - 1, T, reverse), reverse, keep)
    memcpy(hT, hs + t * BH, BH * sizeof(floating))


cdef void gru_backward_a(
        Py_ssize_t u0, Py_ssize_t nu, Py_ssize_t t, Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t H,
        bint reset_after, const int64_t* lengths, const floating* dy_t, floating* g_t,
        const floating* h_prev, floating* aux_t, floating* work, const floating* dh,
        floating* dh_next) noexcept nogil:
    """Units u0 .. u0+nu-1 of rows b0 .. b1-1: gate gradients from dh; dh_next = dh * z.
    reset_after: also dr, d(W_hn h + b_hn) into aux_t and the hh-side gradients into work."""
    cdef Py_ssize_t GH = 3 * H
    cdef Py_ssize_t b, j, k
    cdef floating* g_row
    cdef floating* w_row
    for b in range(b0, b1):
        g_row = g_t + b * GH + u0
        k = b * H + u0
        if not is_active(lengths, b, t):
            for j in range(3):
                memset(g_row + j * H, 0, nu * sizeof(floating))
            memcpy(dh_next + k, dh + k, nu * sizeof(floating))
            if reset_after:
                for j in range(3):
                    memset(work + b * GH + u0 + j * H, 0, nu * sizeof(floating))
                memset(aux_t + k, 0, nu * sizeof(floating))
            continue
        w_row = work + b * GH + u0
        if floating is float:
            gru_bwd_f32(nu, g_row, H, h_prev + k, dh + k, dy_t + k if dy_t != NULL else NULL,
                        dh_next + k, aux_t + k if reset_after else NULL, w_row)
        else:
            gru_bwd_f64(nu, g_row, H, h_prev + k, dh + k, dy_t + k if dy_t != NULL else NULL,
                        dh_next + k, aux_t + k if reset_after else NULL, w_row)


cdef void gru_backward_b(
        Py_ssize_t u0, Py_ssize_t nu, Py_ssize_t t, Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t H,
        const floating* panel, Py_ssize_t npanels, const Py_ssize_t* col0, const int* width,
        const int64_t* lengths, floating* g_t, const floating* h_prev, floating* work,
        floating* dh_next) noexcept nogil:
    """reset_after=False, units u0 .. u0+nu-1 of rows b0 .. b1-1: d(r*h) = dn @ W_hn, then dr
    and dh_next."""
    cdef Py_ssize_t GH = 3 * H
    cdef Py_ssize_t b, j, k
    cdef floating* g_row
    cdef floating r
    gemm_panels(b1 - b0, H, g_t + b0 * GH + 2 * H, GH, panel, npanels, col0, width,
                work + b0 * H, H, False)
    for b in range(b0, b1):
        if not is_active(lengths, b, t):
            continue
        g_row = g_t + b * GH + u0
        k = b * H + u0
        for j in range(nu):
            r = g_row[j]
            g_row[j] = work[k + j] * h_prev[k + j] * r * (1 - r)
            dh_next[k + j] += work[k + j] * r


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
        const Py_ssize_t* col0, const int* width, Py_ssize_t nub, int nthreads, bint by_rows,
        double clip,                # > 0: clamp the carried dh to [-clip, clip] every step
        floating* panels_hh,        # WORK (nub, 3H | 2H, NR): W_hh (or W_hh[:2H]) by unit block
        floating* panels_n,         # WORK (nub, H, NR): W_hn by unit block (not reset_after)
        floating* work,             # WORK (2, B, 3H): reset_after: hh-side dG of two steps;
                                    #   else d(r*h) (B, H)
        floating* dh0, floating* work_h,   # OUT dh0 (B, H); WORK (B, H)
        floating* dx,               # OUT (T, B, I)
        floating* dw_ih,            # OUT (3H, I)
        floating* dw_hh,            # OUT (3H, H)
        floating* db_ih,            # OUT (3H,) or NULL
        floating* db_hh             # OUT (3H,) or NULL
        ) noexcept nogil:
    cdef Py_ssize_t GH = 3 * H, BH = B * H, TB = T * B
    cdef Py_ssize_t K_hh = GH if reset_after else 2 * H
    cdef Py_ssize_t NR = panel_cols(gates)
    cdef Py_ssize_t s, t, ub, grp, part, b0, b1
    cdef const floating* h_prev
    cdef Py_ssize_t ta
    cdef floating* bufs[2]
    cdef Py_ssize_t gs = GROUP if by_rows else group_size(nub, nthreads)

    s = t = ta = 0
    bufs[0] = dh0
    bufs[1] = work_h
    pack_panels(w_hh, H, False, K_hh, nub, col0, width, panels_hh)
    if not reset_after:
        pack_panels(w_hh + 2 * H * H, H, False, H, nub, col0, width, panels_n)
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
                            gemm_panels(b1 - b0, K_hh,
                                        (work + ((s - 1) & 1) * B * GH if reset_after
                                         else gates + step_time(T - s, T, reverse) * B * GH)
                                        + b0 * GH, GH,
                                        panels_hh + grp * gs * K_hh * NR,
                                        group_panels(grp, nub, gs), col0 + grp * gs,
                                        width + grp * gs, bufs[s & 1] + b0 * H, H, True)
                    if s < T:
                        ta = step_time(T - 1 - s, T, reverse)
                        if clip > 0:
                            clamp_units(bufs[s & 1] + b0 * H, b1 - b0, H, 0, H, clip)
                        gru_backward_a(0, H, ta, b0, b1, H, reset_after, lengths,
                                       dy + ta * BH if dy != NULL else NULL,
                                       gates + ta * B * GH,
                                       hs + prev_slot(0, ta, reverse, True) * BH, aux + ta * BH,
                                       work + (s & 1) * B * GH, bufs[s & 1], bufs[(s + 1) & 1])
                        if not reset_after:
                            for grp in range(n_groups(nub, gs)):
                                gru_backward_b(col0[grp * gs],
                                               group_units(grp, nub, col0, width, gs), ta,
                                               b0, b1, H, panels_n + grp * gs * H * NR,
                                               group_panels(grp, nub, gs), col0 + grp * gs,
                                               width + grp * gs, lengths, gates + ta * B * GH,
                                               hs + prev_slot(0, ta, reverse, True) * BH,
                                               work, bufs[(s + 1) & 1])
    else:
        # Iteration s: the recurrent product of step s-1 for this thread's units, then the
        # update of step s for the same units (it only needs their own dh).  With
        # reset_after the product reads the hh-side gradients of step s-1 from one half of
        # `work` while the update writes step s's into the other.
        with parallel(num_threads=nthreads):
            for s in range(T + 1):
                for grp in prange(n_groups(nub, gs), schedule="static"):
                    if s > 0:
                        # dh(s) [:, units] += [dr, dz, (dn*r)](s-1) @ W_hh[:K_hh, units]
                        gemm_panels(B, K_hh,
                                    work + ((s - 1) & 1) * B * GH if reset_after
                                    else gates + step_time(T - s, T, reverse) * B * GH, GH,
                                    panels_hh + grp * gs * K_hh * NR, group_panels(grp, nub, gs),
                                    col0 + grp * gs, width + grp * gs, bufs[s & 1], H, True)
                    if s < T:
                        ta = step_time(T - 1 - s, T, reverse)     # forward steps in reverse
                        if clip > 0:
                            clamp_units(bufs[s & 1], B, H, col0[grp * gs],
                                        group_units(grp, nub, col0, width, gs), clip)
                        gru_backward_a(col0[grp * gs], group_units(grp, nub, col0, width, gs), ta,
                                       0, B, H, reset_after, lengths,
                                       dy + ta * BH if dy != NULL else NULL, gates + ta * B * GH,
                                       hs + prev_slot(0, ta, reverse, True) * BH, aux + ta * BH,
                                       work + (s & 1) * B * GH, bufs[s & 1], bufs[(s + 1) & 1])
                if not reset_after and s < T:
                    t = step_time(T - 1 - s, T, reverse)
                    for grp in prange(n_groups(nub, gs), schedule="static"):
                        gru_backward_b(col0[grp * gs], group_units(grp, nub, col0, width, gs), t,
                                       0, B, H, panels_n + grp * gs * H * NR,
                                       group_panels(grp, nub, gs), col0 + grp * gs,
                                       width + grp * gs, lengths, gates + t * B * GH,
                                       hs + prev_slot(0, t, reverse, True) * BH, work,
                                       bufs[(s + 1) & 1])
    if T % 2 == 1:
        memcpy(dh0, work_h, BH * sizeof(floating))

    h_prev = hs + (BH if reverse else 0)
    # dW_hh[:2H] = dG[:, :2H].T @ H_prev
    gemm_split(True, False, <int>(2 * H), <int>H, <int>TB, gates, <int>GH, h_prev, <int>H,
               False, dw_hh, <int>H, nthreads, False)
    if reset_after:
        # dW_hn = d(W_hn h).T @ H_prev
        gemm_split(True, False, <int>H, <int>H, <int>TB, aux, <int>H, h_prev, <int>H,
                   False, dw_hh + 2 * H * H, <int>H, nthreads, False)
    else:
        # dW_hn = dn.T @ (r*h_prev)
        gemm_split(True, False, <int>H, <int>H, <int>TB, gates + 2 * H, <int>GH, aux, <int>H,
                   False, dw_hh + 2 * H * H, <int>H, nthreads, False)
    input_side_grads(TB, I, GH, x, w_ih, gates, dx, dw_ih, db_ih, nthreads)
    if db_hh != NULL:
        if reset_after:
            column_sums(TB, 2 * H, GH, gates, db_hh, nthreads)
            column_sums(TB, H, H, aux, db_hh + 2 * H, nthreads)
        else:
            memcpy(db_hh, db_ih, GH * sizeof(floating))




def forward(x, w_ih, w_hh, bias, b_hn, h0, lengths, bint reverse, bint training,
            bint reset_after, int nthreads=1, bint by_rows=False, bint fused=False):
    """y (T,B,H), hT (B,H), saved: (gates, hs, aux) when training else None.

    bias (3H,) is everything added on the input side: b_ih + [b_hr, b_hz, b_hn], except that
    with reset_after the b_hn block is left out and passed as b_hn (H,) instead.  fused
    (reset_after only; ignored otherwise): the input projection is made step by step with
    packed W_ih."""
    fused = fused and reset_after
    if x.dtype == np.float32:
        return _forward(<float*>cnp.PyArray_DATA(x), x, w_ih, w_hh, bias, b_hn, h0, lengths,
                        reverse, training, reset_after, nthreads, by_rows, fused)
    _check_double(x)
    return _forward(<double*>cnp.PyArray_DATA(x), x, w_ih, w_hh, bias, b_hn, h0, lengths,
                    reverse, training, reset_after, nthreads, by_rows, fused)


cdef _forward(const floating* xp, x, w_ih, w_hh, bias, b_hn, h0, lengths, bint reverse,
              bint training, bint reset_after, int nthreads, bint by_rows, bint fused):
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = w_hh.shape[1]
    cdef Py_ssize_t chunk = T if (training or fused) else max(1, min(T, INFER_ROWS // B))
    dtype = x.dtype
    gates = ws_empty((T if training else (1 if fused else chunk), B, 3 * H), dtype)
    hs = ws_empty((T + 1 if training else 2, B, H), dtype)
    aux = ws_empty((T if training else 1, B, H), dtype)
    hh = np.empty((B, 3 * H), dtype) if reset_after else None
    y = np.empty((T, B, H), dtype)
    hT = np.empty((B, H), dtype)
    col0_a, width_a, nub_obj = unit_block_layout(3 if reset_after else 2, H, dtype)
    col0_n, width_n, _ = unit_block_layout(1, H, dtype)
    cdef Py_ssize_t nub = nub_obj
    panels_a = ws_empty(((3 if reset_after else 2) * nub, H, panel_cols(xp)), dtype)
    panels_n = None if reset_after else ws_empty((nub, H, panel_cols(xp)), dtype)
    panels_x = ws_empty((3 * nub, I, panel_cols(xp)), dtype) if fused else None
    cdef const Py_ssize_t* col0_a_p = <Py_ssize_t*>data_or_null(col0_a)
    cdef const int* width_a_p = <int*>data_or_null(width_a)
    cdef const Py_ssize_t* col0_n_p = <Py_ssize_t*>data_or_null(col0_n)
    cdef const int* width_n_p = <int*>data_or_null(width_n)
    cdef floating* panels_a_p = <floating*>data_or_null(panels_a)
    cdef floating* panels_n_p = <floating*>data_or_null(panels_n)
    cdef floating* panels_x_p = <floating*>data_or_null(panels_x)
    nthreads = max(1, min(nthreads, B if by_rows else nub))
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
                           len_p, reverse, training, chunk, col0_a_p, width_a_p, col0_n_p,
                           width_n_p, nub, nthreads, by_rows, panels_a_p, panels_n_p,
                           panels_x_p, gates_p, hs_p, aux_p, hh_p, y_p, hT_p)
    ws_release((panels_a, panels_n, panels_x), extra_refs=1)
    if training:
        return y, hT, (gates, hs, aux)
    ws_release((gates, hs, aux), extra_refs=1)
    return y, hT, None


def backward(dy, dhT, x, w_ih, w_hh, lengths, bint reverse, saved, bint has_bias,
             bint reset_after, int nthreads=1, double clip=0, bint by_rows=False):
    """dx, dh0, dw_ih, dw_hh, db_ih, db_hh (None without bias).  Overwrites saved buffers."""
    if x.dtype == np.float32:
        return _backward(<float*>cnp.PyArray_DATA(x), dy, dhT, x, w_ih, w_hh, lengths,
                         reverse, saved, has_bias, reset_after, nthreads, clip, by_rows)
    _check_double(x)
    return _backward(<double*>cnp.PyArray_DATA(x), dy, dhT, x, w_ih, w_hh, lengths,
                     reverse, saved, has_bias, reset_after, nthreads, clip, by_rows)


cdef _backward(const floating* xp, dy, dhT, x, w_ih, w_hh, lengths, bint reverse, saved,
               bint has_bias, bint reset_after, int nthreads, double clip, bint by_rows):
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = w_hh.shape[1]
    gates, hs, aux = saved
    dtype = x.dtype
    work = np.empty((2, B, 3 * H), dtype)
    dh0 = np.empty((B, H), dtype)
    work_h = np.empty((B, H), dtype)
    dx = np.empty_like(x)
    dw_ih = np.empty_like(w_ih)
    dw_hh = np.empty_like(w_hh)
    db_ih = np.empty(3 * H, dtype) if has_bias else None
    db_hh = np.empty(3 * H, dtype) if has_bias else None
    col0, width, nub_obj = unit_block_layout(1, H, dtype)
    cdef Py_ssize_t nub = nub_obj
    panels_hh = ws_empty((nub, (3 if reset_after else 2) * H, panel_cols(xp)), dtype)
    panels_n = None if reset_after else ws_empty((nub, H, panel_cols(xp)), dtype)
    cdef const Py_ssize_t* col0_p = <Py_ssize_t*>data_or_null(col0)
    cdef const int* width_p = <int*>data_or_null(width)
    cdef floating* panels_hh_p = <floating*>data_or_null(panels_hh)
    cdef floating* panels_n_p = <floating*>data_or_null(panels_n)
    nthreads = max(1, min(nthreads, B if by_rows else nub))
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
                            dy_p, dhT_p, gates_p, hs_p, aux_p, col0_p, width_p, nub, nthreads,
                            by_rows, clip, panels_hh_p, panels_n_p, work_p, dh0_p, work_h_p, dx_p, dw_ih_p,
                            dw_hh_p, db_ih_p, db_hh_p)
    ws_release((panels_hh, panels_n), extra_refs=1)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


# ---- streaming: one step with weights packed once --------------------------------------

def prepare(w_ih, w_hh, bint reset_after):
    """Packed weights for `step`: (input panels r|z|n, recurrent panels (r|z|n, or r|z),
    W_hn panels (not reset_after) or None, the three layouts, nub)."""
    H = w_hh.shape[1]
    G_a = 3 if reset_after else 2
    col0_3, width_3, nub = unit_block_layout(3, H, w_hh.dtype)
    wn = None if reset_after else pack_unit_blocks(w_hh[2 * H:], 1, H)
    return (pack_unit_blocks(w_ih, 3, H), pack_unit_blocks(w_hh, G_a, H), wn,
            (col0_3, width_3), unit_block_layout(G_a, H, w_hh.dtype)[:2],
            unit_block_layout(1, H, w_hh.dtype)[:2], nub)


def step(x, h, prepared, bias, b_hn, bint reset_after, int nthreads=1):
    """One GRU step: x (B, I), h (B, H) -> h' (B, H).  bias and b_hn as for `forward`."""
    if x.dtype == np.float32:
        return _step(<float*>cnp.PyArray_DATA(x), x, h, prepared, bias, b_hn, reset_after,
                     nthreads)
    _check_double(x)
    return _step(<double*>cnp.PyArray_DATA(x), x, h, prepared, bias, b_hn, reset_after,
                 nthreads)


cdef _step(const floating* xp, x, h, prepared, bias, b_hn, bint reset_after, int nthreads):
    wi, wa, wn, (col0_3, width_3), (col0_a, width_a), (col0_n, width_n), nub_obj = prepared
    cdef Py_ssize_t B = x.shape[0], I = x.shape[1], H = h.shape[1], GH = 3 * H
    cdef Py_ssize_t G_a = 3 if reset_after else 2
    cdef Py_ssize_t nub = nub_obj, ub, grp
    cdef Py_ssize_t NR = panel_cols(xp)
    g = np.empty((B, GH), x.dtype)
    hh = np.empty((B, GH), x.dtype)
    aux = np.empty((B, H), x.dtype)
    h_new = np.empty((B, H), x.dtype)
    cdef const floating* wi_p = <floating*>data_or_null(wi)
    cdef const floating* wa_p = <floating*>data_or_null(wa)
    cdef const floating* wn_p = <floating*>data_or_null(wn)
    cdef const Py_ssize_t* c3 = <Py_ssize_t*>data_or_null(col0_3)
    cdef const int* w3 = <int*>data_or_null(width_3)
    cdef const Py_ssize_t* ca = <Py_ssize_t*>data_or_null(col0_a)
    cdef const int* wa_w = <int*>data_or_null(width_a)
    cdef const Py_ssize_t* cn = <Py_ssize_t*>data_or_null(col0_n)
    cdef const int* wn_w = <int*>data_or_null(width_n)
    cdef const floating* bias_p = <floating*>data_or_null(bias)
    cdef const floating* b_hn_p = <floating*>data_or_null(b_hn)
    cdef const floating* h_p = <floating*>data_or_null(h)
    cdef floating* g_p = <floating*>data_or_null(g)
    cdef floating* hh_p = <floating*>data_or_null(hh)
    cdef floating* aux_p = <floating*>data_or_null(aux)
    cdef floating* hn_p = <floating*>data_or_null(h_new)
    nthreads = max(1, min(nthreads, nub))
    cdef Py_ssize_t gs = group_size(nub, nthreads)
    with nogil, parallel(num_threads=nthreads):
        for ub in prange(nub, schedule="static"):
            step_input(B, I, xp, wi_p + 3 * ub * I * NR, 3, c3 + 3 * ub, w3 + 3 * ub, bias_p,
                       g_p, GH)
            gru_forward_a(cn[ub], wn_w[ub], 0, 0, B, H, reset_after, wa_p + G_a * ub * H * NR,
                          ca + G_a * ub, wa_w + G_a * ub, b_hn_p, NULL, g_p, hh_p, h_p, hn_p,
                          aux_p, NULL, False, I, NULL, NULL, NULL)
        if not reset_after:
            for grp in prange(n_groups(nub, gs), schedule="static"):
                gru_forward_b(cn[grp * gs], group_units(grp, nub, cn, wn_w, gs), 0, 0, B,
                              H, wn_p + grp * gs * H * NR, group_panels(grp, nub, gs),
                              cn + grp * gs, wn_w + grp * gs, NULL, g_p, aux_p, h_p, hn_p, NULL)
    return h_new
