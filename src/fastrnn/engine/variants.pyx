"""LayerNorm, variational recurrent dropout and zoneout, fused into one recurrence for the
RNN, LSTM and GRU (forward and backward through time).

    LayerNorm (Ba et al. 2016, in haste's formulation; LSTM and GRU with reset_after):
        a = LN(W_ih x; g_x, b_x) + LN(W_hh h; g_h, b_h) + bias   (each LN over a row's G*H gates)
        LSTM: c' = f*c + i*g,  h' = o * tanh(LN(c'; g_c, b_c))
        GRU:  n = tanh(a_x,n + r * (LN(W_hh h)_n + b_hn)),  h' = (1-z)*n + z*h
    Recurrent dropout (Gal & Ghahramani 2016): h enters the recurrent product as h * m, with
        one mask m (B, H) for the whole sequence (the state itself is not masked).
    Zoneout (Krueger et al. 2016): h' = k*h + (1-k)*h~ (and c' likewise for the LSTM) with
        k a 0/1 keep mask per step and unit in training, or the constant probability z at
        evaluation; the LSTM's h~ uses the candidate cell c~ (before its zoneout).

Two parallel schemes, as in the plain kernels (common.pxd).  By rows: each thread runs its
own rows through every step with no barrier, so a row's LayerNorm statistics come from one
thread.  By hidden units: each thread owns unit blocks of every row; with LayerNorm a step
has two or three phases with a barrier between them (the product; its normalization and the
gates; the LSTM's cell normalization), and every thread computes a row's statistics over the
whole row itself, in the same order.  The statistics and each element are computed alike
in both schemes, so the results do not depend on the scheme or the thread count.  Sums over
rows (the gains' gradients) are kept per row and added up in row order at the end.

The input projection W_ih x is made before the steps of each chunk: by BLAS, or, for small
layers (functional._fuse_input, a choice by shape only), with packed W_ih panels inside the
kernel's parallel region (each thread its rows, or its unit blocks then a barrier), which
saves a BLAS call and a parallel pass over short calls.  Row statistics are computed
csrc/fr_norm.c's ROWS rows at a time (independent sums), each row's alike in any group.

Python entry points `forward` and `backward` take arrays validated by fastrnn.functional;
see common.pxd for the slot and length conventions.
"""
import numpy as np
cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

from cython.parallel cimport parallel, prange
from fastrnn.engine.activations cimport relu, tanh_v
from fastrnn.engine.blas cimport gemm_split
from fastrnn.engine.common cimport (GROUP, INFER_ROWS, _check_double, chunk_projection,
                                    clamp_units, column_dots, column_sums, copy_or_zero,
                                    cur_slot,
                                    data_or_null, gemm_panels, group_panels, group_size,
                                    group_units, input_side_grads, is_active, n_groups,
                                    pack_panels, panel_cols, prev_slot, step_input, step_time)
from fastrnn.engine.simd cimport (gru_bwd_f32, gru_bwd_f64, gru_fwd_f32, gru_fwd_f64,
                                  ln_apply_f32, ln_apply_f64, ln_back_apply_f32,
                                  ln_back_apply_f64, ln_gates_f32, ln_gates_f64,
                                  ln_means_rows_f32, ln_means_rows_f64, ln_stats_rows_f32,
                                  ln_stats_rows_f64, lstm_bwd_f32,
                                  lstm_bwd_f64, lstm_cand_f32, lstm_cand_f64, lstm_fwd_f32,
                                  lstm_fwd_f64, lstm_ln_back1_f32, lstm_ln_back1_f64,
                                  lstm_ln_back2_f32, lstm_ln_back2_f64, lstm_ln_out_f32,
                                  lstm_ln_out_f64, mul_f32, mul_f64, zone_back_f32,
                                  zone_back_f64, zone_f32, zone_f64)
from fastrnn.engine.simd import unit_block_layout
from fastrnn.engine.workspace import empty as ws_empty, release as ws_release

cnp.import_array()

cdef enum:
    RNN_TANH = 0
    RNN_RELU = 1
    LSTM = 2
    GRU = 3

CELLS = {"rnn_tanh": RNN_TANH, "rnn_relu": RNN_RELU, "lstm": LSTM, "gru": GRU}
_GATES = {RNN_TANH: 1, RNN_RELU: 1, LSTM: 4, GRU: 3}


cdef struct Opts:
    int cell
    Py_ssize_t T, B, n_in, H, G, nub, chunk
    int nthreads
    bint ln, reverse, keep, by_rows, fused
    double eps, zh_c, zc_c, clip


cdef struct Ptrs:
    # inputs (typed by the kernels: float or double)
    const void* w_ih
    const void* w_hh
    const void* bias        # (GH,) input-side bias, or NULL
    const void* b_hn        # GRU: (H,) kept inside r * (.), or NULL
    const void* ln          # g_x|b_x|g_h|b_h (GH each) [|g_c|b_c (H each)], or NULL
    const void* rmask       # (B, H) recurrent dropout mask, or NULL
    const unsigned char* zh     # (T, B, H) 0/1 keep masks for h (bytes), or NULL
    const unsigned char* zc     # (T, B, H) for the LSTM's c, or NULL
    const void* h0
    const void* c0
    const int64_t* lengths
    const Py_ssize_t* col0
    const int* width
    void* panels
    void* panels_x          # fused input projection: W_ih packed like W_hh, or NULL
    # saved by forward for backward (see forward())
    void* xg
    void* gates
    void* hhat
    void* rstd_x
    void* rstd_h
    void* rstd_c
    void* hs
    void* cs
    void* aux
    void* cn
    # scratch and outputs
    void* hm                # (T+1 | 2, B, H) h * mask, slots as hs
    void* scr               # forward (B, GH): GRU LN recurrent term; backward (B, H): product
    void* hraw              # LN, units scheme: (B, GH) the product before its normalization
    void* ctil              # LSTM LN, units scheme: (B, H) the candidate cell
    void* y
    void* hT
    void* cT
    # backward
    const void* dy
    const void* dhT
    const void* dcT
    const void* hprev       # (T, B, H) the states that entered the recurrent product
    void* dh0
    void* work
    void* dc
    void* dd
    void* dcd
    void* wscr              # GRU LN: (B, GH) recurrent-side gate gradients
    void* dR                # LN, units scheme: (T, B, GH) the gradient w.r.t. W_hh h
    void* dcl               # LSTM LN, units scheme: (B, H) through the cell's LayerNorm
    void* acc_gh
    void* acc_bh
    void* acc_gc
    void* acc_bc
    void* dx
    void* dw_ih
    void* dw_hh
    void* db


# ---- row helpers (csrc/fr_norm.c, dispatched for the CPU) ---------------------------------

cdef enum:
    ROWS = 4        # the row statistics are computed this many rows at a time (fr_norm.c)


cdef inline void ln_stats_rows(const floating* v, Py_ssize_t ld, Py_ssize_t rows,
                               Py_ssize_t n, double eps, floating* mean,
                               floating* rstd) noexcept nogil:
    """For rows v[b*ld : b*ld+n], b < rows: the mean and 1 / sqrt(var + eps)."""
    if floating is float:
        ln_stats_rows_f32(v, ld, rows, n, eps, mean, rstd)
    else:
        ln_stats_rows_f64(v, ld, rows, n, eps, mean, rstd)


cdef inline void ln_apply(const floating* v, floating* out, Py_ssize_t n, floating mean,
                          floating r) noexcept nogil:
    if floating is float:
        ln_apply_f32(v, out, n, mean, r)
    else:
        ln_apply_f64(v, out, n, mean, r)


cdef inline void ln_normalize(floating* v, Py_ssize_t ld, Py_ssize_t rows, Py_ssize_t n,
                              double eps, floating* rstd) noexcept nogil:
    """Rows v[b*ld : b*ld+n] <- (v - mean) / sqrt(var + eps) in place, rstd[b] the
    1 / sqrt(var + eps) of each."""
    cdef floating mean[ROWS]
    cdef Py_ssize_t b, i, nr
    b = 0
    while b < rows:
        nr = min(<Py_ssize_t>ROWS, rows - b)
        ln_stats_rows(v + b * ld, ld, nr, n, eps, mean, rstd + b)
        for i in range(nr):
            ln_apply(v + (b + i) * ld, v + (b + i) * ld, n, mean[i], rstd[b + i])
        b += nr


cdef inline void ln_means_rows(const floating* d, Py_ssize_t ldd, const floating* gain,
                               const floating* xhat, Py_ssize_t ldx, Py_ssize_t rows,
                               Py_ssize_t n, floating* m1, floating* m2) noexcept nogil:
    """For each row b < rows: m1 = mean(d*gain), m2 = mean(d*gain*xhat) over n values."""
    if floating is float:
        ln_means_rows_f32(d, ldd, gain, xhat, ldx, rows, n, m1, m2)
    else:
        ln_means_rows_f64(d, ldd, gain, xhat, ldx, rows, n, m1, m2)


cdef inline void ln_back_apply(const floating* d, const floating* gain, const floating* xhat,
                               floating* out, Py_ssize_t n, floating r, floating m1,
                               floating m2, floating* acc_g, floating* acc_b) noexcept nogil:
    """out = r*(d*gain - m1 - xhat*m2): the gradient w.r.t. LN's input, from d, the
    gradient w.r.t. its output xhat*gain + bias; acc_g += d*xhat, acc_b += d (not NULL)."""
    if floating is float:
        ln_back_apply_f32(d, gain, xhat, out, n, r, m1, m2, acc_g, acc_b)
    else:
        ln_back_apply_f64(d, gain, xhat, out, n, r, m1, m2, acc_g, acc_b)


cdef inline void ln_gates(Py_ssize_t n, floating* g, const floating* xh, const floating* hh,
                          const floating* ln, Py_ssize_t ld, const floating* bias,
                          floating* hh_out) noexcept nogil:
    """g = xh*g_x + b_x + hh*g_h + b_h + bias (g_x|b_x|g_h|b_h ld apart), or with hh_out
    the recurrent side there."""
    if floating is float:
        ln_gates_f32(n, g, xh, hh, ln, ld, bias, hh_out)
    else:
        ln_gates_f64(n, g, xh, hh, ln, ld, bias, hh_out)


cdef inline void zone(floating* cur, const floating* prev, const unsigned char* keep, double k,
                      Py_ssize_t n) noexcept nogil:
    """Zoneout: cur <- prev where keep != 0 (training), or k*prev + (1-k)*cur (evaluation)."""
    if floating is float:
        zone_f32(cur, prev, keep, k, n)
    else:
        zone_f64(cur, prev, keep, k, n)


cdef inline void zone_back(floating* dt, floating* dd, const unsigned char* keep, double k,
                           Py_ssize_t n) noexcept nogil:
    """Split dt (gradient w.r.t. the zoned-out state) into dd (to the previous state) and dt
    (to the candidate)."""
    if floating is float:
        zone_back_f32(dt, dd, keep, k, n)
    else:
        zone_back_f64(dt, dd, keep, k, n)


cdef inline void mul(floating* dst, const floating* a, const floating* m, Py_ssize_t n,
                     bint add) noexcept nogil:
    """dst = a * m (m NULL: a), or dst += a * m when add."""
    if floating is float:
        mul_f32(dst, a, m, n, add)
    else:
        mul_f64(dst, a, m, n, add)


cdef inline void ln_back(const floating* d, const floating* gain, floating* xhat,
                         const floating* rstd, Py_ssize_t ld, Py_ssize_t rows,
                         Py_ssize_t n) noexcept nogil:
    """Rows of xhat (LN's normalized input, ld apart like d's) <- the gradient w.r.t. LN's
    input, from d."""
    cdef floating m1[ROWS]
    cdef floating m2[ROWS]
    cdef Py_ssize_t b, i, nr
    b = 0
    while b < rows:
        nr = min(<Py_ssize_t>ROWS, rows - b)
        ln_means_rows(d + b * ld, ld, gain, xhat + b * ld, ld, nr, n, m1, m2)
        for i in range(nr):
            ln_back_apply(d + (b + i) * ld, gain, xhat + (b + i) * ld, xhat + (b + i) * ld, n,
                          rstd[b + i], m1[i], m2[i], NULL, NULL)
        b += nr


# ---- one step's buffers -------------------------------------------------------------------

cdef struct Step:
    Py_ssize_t t
    void* xg            # (B, GH) this step's input-side projection (normalized with LN)
    void* g             # (B, GH) gates: pre-activations in, activations out
    void* hh            # (B, GH) recurrent product (LN: normalized), or NULL
    void* raw           # LN: (B, GH) where the product lands before its normalization
    void* h_prev
    void* h_cur
    void* c_prev
    void* c_cur
    void* ctil          # LSTM LN: (B, H) the candidate cell before its zoneout
    void* aux           # LSTM: tanh(c~) (or with LN, of its normalization); GRU: W_hn h + b_hn
    void* cn            # LSTM LN: (B, H) the candidate cell normalized
    void* rh            # LN: (B,) 1/std of the recurrent product
    void* rc            # LSTM LN: (B,) 1/std of the candidate cell
    const void* src     # what enters the product: h_prev, or h_prev * mask
    void* hm_cur        # (B, H) h_cur * mask for the next step, or NULL
    void* y
    const unsigned char* zh
    const unsigned char* zc


cdef Step step_view(const floating* x, const Opts* o, const Ptrs* p, Py_ssize_t s,
                    Py_ssize_t t, Py_ssize_t t_lo) noexcept nogil:
    cdef Step v
    cdef Py_ssize_t B = o.B, GH = o.G * o.H, BH = o.B * o.H
    cdef Py_ssize_t ts = t if o.keep else 0
    cdef floating* hm = <floating*>p.hm
    v.t = t
    v.xg = <floating*>p.xg + (t - t_lo) * B * GH
    v.g = (<floating*>p.gates + ts * B * GH) if o.ln else v.xg
    v.hh = (<floating*>p.hhat + ts * B * GH) if (o.ln or o.cell == GRU) else NULL
    v.raw = (p.hraw if not o.by_rows else v.hh) if o.ln else NULL
    v.h_prev = <floating*>p.hs + prev_slot(s, t, o.reverse, o.keep) * BH
    v.h_cur = <floating*>p.hs + cur_slot(s, t, o.reverse, o.keep) * BH
    v.c_prev = v.c_cur = v.ctil = NULL
    if o.cell == LSTM:
        v.c_prev = <floating*>p.cs + prev_slot(s, t, o.reverse, o.keep) * BH
        v.c_cur = <floating*>p.cs + cur_slot(s, t, o.reverse, o.keep) * BH
        v.ctil = v.c_cur if o.by_rows else p.ctil
    v.aux = (<floating*>p.aux + ts * BH) if p.aux != NULL else NULL
    v.cn = (<floating*>p.cn + ts * BH) if p.cn != NULL else NULL
    v.rh = (<floating*>p.rstd_h + ts * B) if o.ln else NULL
    v.rc = (<floating*>p.rstd_c + ts * B) if p.rstd_c != NULL else NULL
    # h enters the product masked: h * rmask, in slots like the states' (training keeps
    # them all: they are H_prev of W_hh's gradient)
    v.src = v.h_prev if p.rmask == NULL else hm + prev_slot(s, t, o.reverse, o.keep) * BH
    v.hm_cur = (hm + cur_slot(s, t, o.reverse, o.keep) * BH) if p.rmask != NULL else NULL
    v.y = <floating*>p.y + t * BH
    v.zh = (p.zh + t * BH) if p.zh != NULL else NULL
    v.zc = (p.zc + t * BH) if p.zc != NULL else NULL
    return v


# ---- forward ------------------------------------------------------------------------------

cdef void forward_product(const floating* x, const Opts* o, const Ptrs* p, const Step* v,
                          Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t ub0,
                          Py_ssize_t ub1) noexcept nogil:
    """The recurrent product of rows b0 .. b1-1 for unit blocks ub0 .. ub1-1, GROUP blocks
    at a time (their panels stay in cache while every row passes).  Into raw (LayerNorm),
    hh (GRU), or added to the gates' input side."""
    cdef Py_ssize_t H = o.H, G = o.G, GH = o.G * o.H, NR = panel_cols(x)
    cdef Py_ssize_t ug = ub0, nb
    cdef const floating* src = <const floating*>v.src + b0 * H
    cdef floating* dst = <floating*>(v.raw if o.ln else (v.hh if v.hh != NULL else v.g))
    cdef bint acc = not o.ln and v.hh == NULL
    while ug < ub1:
        nb = min(<Py_ssize_t>GROUP, ub1 - ug)
        gemm_panels(b1 - b0, H, src, H, <const floating*>p.panels + G * ug * H * NR, G * nb,
                    p.col0 + G * ug, p.width + G * ug, dst + b0 * GH, GH, acc)
        ug += nb


cdef inline bint pass_inactive(const Opts* o, const Ptrs* p, const Step* v, floating* dummy,
                               Py_ssize_t b, Py_ssize_t k, Py_ssize_t nu) noexcept nogil:
    """A row past its length keeps its state and outputs zeros: True when it did."""
    if is_active(p.lengths, b, v.t):
        return False
    memcpy(<floating*>v.h_cur + k, <floating*>v.h_prev + k, nu * sizeof(floating))
    if o.cell == LSTM:
        memcpy(<floating*>v.c_cur + k, <floating*>v.c_prev + k, nu * sizeof(floating))
    memset(<floating*>v.y + k, 0, nu * sizeof(floating))
    if v.hm_cur != NULL:
        memcpy(<floating*>v.hm_cur + k, <const floating*>v.src + k, nu * sizeof(floating))
    return True


cdef inline void finish_h(const Opts* o, const Ptrs* p, const Step* v, floating* dummy,
                          Py_ssize_t k, Py_ssize_t nu) noexcept nogil:
    """h's zoneout, the output, and h * mask for the next product."""
    cdef floating* h_cur = <floating*>v.h_cur
    zone(h_cur + k, <const floating*>v.h_prev + k, v.zh + k if v.zh != NULL else NULL,
         o.zh_c, nu)
    memcpy(<floating*>v.y + k, h_cur + k, nu * sizeof(floating))
    if v.hm_cur != NULL:
        mul(<floating*>v.hm_cur + k, h_cur + k, <const floating*>p.rmask + k, nu, False)


cdef void forward_cells(const floating* x, const Opts* o, const Ptrs* p, const Step* v,
                        Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t u0,
                        Py_ssize_t nu) noexcept nogil:
    """The cell update of rows b0 .. b1-1, units u0 .. u0+nu-1, without LayerNorm."""
    cdef Py_ssize_t H = o.H, GH = o.G * o.H
    cdef Py_ssize_t b, j, k
    cdef floating* grow
    cdef floating* h_cur = <floating*>v.h_cur
    cdef const floating* h_prev = <const floating*>v.h_prev
    cdef floating* c_cur = <floating*>v.c_cur
    cdef const floating* c_prev = <const floating*>v.c_prev
    cdef floating* aux = <floating*>v.aux
    cdef const floating* b_hn = <const floating*>p.b_hn
    for b in range(b0, b1):
        k = b * H + u0
        if pass_inactive(o, p, v, <floating*>NULL, b, k, nu):
            continue
        grow = <floating*>v.g + b * GH + u0
        if o.cell == LSTM:
            if floating is float:
                lstm_fwd_f32(nu, grow, H, c_prev + k, c_cur + k, h_cur + k, aux + k, NULL)
            else:
                lstm_fwd_f64(nu, grow, H, c_prev + k, c_cur + k, h_cur + k, aux + k, NULL)
            zone(c_cur + k, c_prev + k, v.zc + k if v.zc != NULL else NULL, o.zc_c, nu)
        elif o.cell == GRU:
            if floating is float:
                gru_fwd_f32(nu, grow, <floating*>v.hh + b * GH + u0, H,
                            b_hn + u0 if b_hn != NULL else NULL, h_prev + k, aux + k,
                            h_cur + k)
            else:
                gru_fwd_f64(nu, grow, <floating*>v.hh + b * GH + u0, H,
                            b_hn + u0 if b_hn != NULL else NULL, h_prev + k, aux + k,
                            h_cur + k)
        else:
            if o.cell == RNN_RELU:
                for j in range(nu):
                    grow[j] = relu(grow[j])
            else:
                tanh_v(grow, grow, nu)
            memcpy(h_cur + k, grow, nu * sizeof(floating))
        finish_h(o, p, v, <floating*>NULL, k, nu)


cdef void forward_ln_gates(const floating* x, const Opts* o, const Ptrs* p, const Step* v,
                           Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t u0,
                           Py_ssize_t nu) noexcept nogil:
    """LayerNorm, first part, for rows b0 .. b1-1 and units u0 .. u0+nu-1: the recurrent
    product's row statistics (over all G*H gates: every thread computes them alike), its
    normalization and the gates of these units; then the LSTM's activations and candidate
    cell, or the GRU's whole update."""
    cdef Py_ssize_t H = o.H, G = o.G, GH = o.G * o.H
    cdef Py_ssize_t b, k, q, c0
    cdef floating mean, r
    cdef floating means[ROWS]
    cdef floating rstds[ROWS]
    cdef const floating* ln = <const floating*>p.ln
    cdef const floating* bias = <const floating*>p.bias
    cdef const floating* b_hn = <const floating*>p.b_hn
    cdef floating* scr = <floating*>p.scr
    cdef const floating* raw
    cdef floating* hrow
    cdef floating* grow
    for b in range(b0, b1):
        if (b - b0) % ROWS == 0:
            ln_stats_rows(<const floating*>v.raw + b * GH, GH, min(<Py_ssize_t>ROWS, b1 - b),
                          GH, o.eps, means, rstds)
        mean = means[(b - b0) % ROWS]
        r = rstds[(b - b0) % ROWS]
        k = b * H + u0
        if pass_inactive(o, p, v, <floating*>NULL, b, k, nu):
            continue
        raw = <const floating*>v.raw + b * GH
        hrow = <floating*>v.hh + b * GH
        grow = <floating*>v.g + b * GH
        if u0 == 0:
            (<floating*>v.rh)[b] = r
        for q in range(G):
            c0 = q * H + u0
            ln_apply(raw + c0, hrow + c0, nu, mean, r)
            ln_gates(nu, grow + c0, <const floating*>v.xg + b * GH + c0, hrow + c0, ln + c0,
                     GH, bias + c0 if bias != NULL else NULL,
                     scr + b * GH + c0 if o.cell == GRU else NULL)
        if o.cell == LSTM:
            if floating is float:
                lstm_cand_f32(nu, grow + u0, H, <const float*>v.c_prev + k,
                              <float*>v.ctil + k)
            else:
                lstm_cand_f64(nu, grow + u0, H, <const double*>v.c_prev + k,
                              <double*>v.ctil + k)
        else:
            if floating is float:
                gru_fwd_f32(nu, grow + u0, scr + b * GH + u0, H,
                            b_hn + u0 if b_hn != NULL else NULL,
                            <const float*>v.h_prev + k, <float*>v.aux + k, <float*>v.h_cur + k)
            else:
                gru_fwd_f64(nu, grow + u0, scr + b * GH + u0, H,
                            b_hn + u0 if b_hn != NULL else NULL,
                            <const double*>v.h_prev + k, <double*>v.aux + k,
                            <double*>v.h_cur + k)
            finish_h(o, p, v, <floating*>NULL, k, nu)


cdef void forward_ln_cell(const floating* x, const Opts* o, const Ptrs* p, const Step* v,
                          Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t u0,
                          Py_ssize_t nu) noexcept nogil:
    """LayerNorm LSTM, second part: the candidate cell's row statistics (over all H units,
    computed alike by every thread), then for units u0 .. u0+nu-1 its normalization, the
    cell's zoneout, h."""
    cdef Py_ssize_t H = o.H, GH = o.G * o.H
    cdef Py_ssize_t b, k
    cdef floating mean, r
    cdef floating means[ROWS]
    cdef floating rstds[ROWS]
    cdef const floating* ln = <const floating*>p.ln
    cdef const floating* ctil
    cdef floating* c_cur = <floating*>v.c_cur
    cdef floating* cn = <floating*>v.cn
    for b in range(b0, b1):
        if (b - b0) % ROWS == 0:
            ln_stats_rows(<const floating*>v.ctil + b * H, H, min(<Py_ssize_t>ROWS, b1 - b), H,
                          o.eps, means, rstds)
        mean = means[(b - b0) % ROWS]
        r = rstds[(b - b0) % ROWS]
        k = b * H + u0
        if not is_active(p.lengths, b, v.t):
            continue
        ctil = <const floating*>v.ctil + b * H
        if u0 == 0:
            (<floating*>v.rc)[b] = r
        ln_apply(ctil + u0, cn + k, nu, mean, r)
        if ctil + u0 != c_cur + k:
            memcpy(c_cur + k, ctil + u0, nu * sizeof(floating))
        zone(c_cur + k, <const floating*>v.c_prev + k, v.zc + k if v.zc != NULL else NULL,
             o.zc_c, nu)
        if floating is float:
            lstm_ln_out_f32(nu, <const float*>v.g + b * GH + 3 * H + u0, cn + k,
                            ln + 4 * GH + u0, ln + 4 * GH + H + u0, <float*>v.aux + k,
                            <float*>v.h_cur + k)
        else:
            lstm_ln_out_f64(nu, <const double*>v.g + b * GH + 3 * H + u0, cn + k,
                            ln + 4 * GH + u0, ln + 4 * GH + H + u0, <double*>v.aux + k,
                            <double*>v.h_cur + k)
        finish_h(o, p, v, <floating*>NULL, k, nu)


cdef void forward_step(const floating* x, const Opts* o, const Ptrs* p, const Step* v,
                       Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t ub0, Py_ssize_t ub1,
                       int phase) noexcept nogil:
    """Phase `phase` of a step for rows b0 .. b1-1 and unit blocks ub0 .. ub1-1; phase -1:
    all of them (the rows scheme).  Without LayerNorm a step is one phase; with it, the
    phases are separated by barriers in the units scheme: 0 the product, 1 its
    normalization and the gates, 2 (LSTM) the cell's normalization."""
    cdef Py_ssize_t NR = panel_cols(x)
    cdef Py_ssize_t u0 = ub0 * NR
    cdef Py_ssize_t nu = min(ub1 * NR, o.H) - u0
    if phase <= 0:
        forward_product(x, o, p, v, b0, b1, ub0, ub1)
        if not o.ln:
            forward_cells(x, o, p, v, b0, b1, u0, nu)
    if o.ln and (phase == -1 or phase == 1):
        forward_ln_gates(x, o, p, v, b0, b1, u0, nu)
    if o.ln and o.cell == LSTM and (phase == -1 or phase == 2):
        forward_ln_cell(x, o, p, v, b0, b1, u0, nu)


cdef void project_fused(const floating* x, const Opts* o, const Ptrs* p, Py_ssize_t s0,
                        Py_ssize_t n, Py_ssize_t t_lo, Py_ssize_t b0, Py_ssize_t b1,
                        Py_ssize_t ub0, Py_ssize_t ub1) noexcept nogil:
    """The fused input projection of steps s0 .. s0+n-1 into xg (time t at row block
    t - t_lo): rows b0 .. b1-1, the gates of unit blocks ub0 .. ub1-1 (+ the input-side bias
    unless LayerNorm follows).  The same dot products as any other split of the work."""
    cdef Py_ssize_t s, t, B = o.B, I = o.n_in, G = o.G, GH = o.G * o.H, NR = panel_cols(x)
    cdef floating* xg = <floating*>p.xg
    for s in range(s0, s0 + n):
        t = step_time(s, o.T, o.reverse)
        step_input(b1 - b0, I, x + (t * B + b0) * I,
                   <const floating*>p.panels_x + G * ub0 * I * NR, G * (ub1 - ub0),
                   p.col0 + G * ub0, p.width + G * ub0,
                   NULL if o.ln else <const floating*>p.bias, xg + ((t - t_lo) * B + b0) * GH,
                   GH)


cdef void forward_kernel(const floating* x, const Opts* o, const Ptrs* p) noexcept nogil:
    cdef Py_ssize_t T = o.T, B = o.B, I = o.n_in, H = o.H, GH = o.G * o.H, BH = o.B * o.H
    cdef Py_ssize_t s0, n, s, t, t_lo, part, b0, b1, r, grp, first
    cdef Py_ssize_t gs = group_size(o.nub, o.nthreads)
    cdef int phase, phases = (3 if o.cell == LSTM else 2) if o.ln else 1
    cdef int nthreads = o.nthreads
    cdef floating* xg = <floating*>p.xg
    cdef floating* rstd_x = <floating*>p.rstd_x
    cdef floating* hs = <floating*>p.hs
    cdef floating* cs = <floating*>p.cs
    cdef const floating* rmask = <const floating*>p.rmask
    cdef Step v
    s = t = r = 0
    pack_panels(<const floating*>p.w_hh, H, True, H, o.G * o.nub, p.col0, p.width,
                <floating*>p.panels)
    if o.fused:
        pack_panels(<const floating*>p.w_ih, I, True, I, o.G * o.nub, p.col0, p.width,
                    <floating*>p.panels_x)
    first = T if (o.reverse and o.keep) else 0
    copy_or_zero(hs + first * BH, <const floating*>p.h0, BH)
    if rmask != NULL:
        mul(<floating*>p.hm + first * BH, hs + first * BH, rmask, BH, False)
    if o.cell == LSTM:
        copy_or_zero(cs + first * BH, <const floating*>p.c0, BH)
    s0 = 0
    while s0 < T:
        n = min(o.chunk, T - s0)
        if o.fused:
            t_lo = T - s0 - n if o.reverse else s0
            if not o.by_rows:
                # each thread: the gates of its groups of unit blocks, every row and step
                with parallel(num_threads=nthreads):
                    for grp in prange(n_groups(o.nub, gs), schedule="static"):
                        project_fused(x, o, p, s0, n, t_lo, 0, B, grp * gs,
                                      grp * gs + group_panels(grp, o.nub, gs))
        else:
            t_lo = chunk_projection(s0, n, T, o.reverse, B, I, GH, x, <const floating*>p.w_ih,
                                    NULL if o.ln else <const floating*>p.bias, xg, nthreads)
        if o.ln and not (o.fused and o.by_rows):
            with parallel(num_threads=nthreads):
                for r in prange((n * B + ROWS - 1) // ROWS, schedule="static"):
                    ln_normalize(xg + r * ROWS * GH, GH, min(<Py_ssize_t>ROWS, n * B - r * ROWS),
                                 GH, o.eps, rstd_x + r * ROWS)
        if o.by_rows:
            # each thread: its rows through every step, all units, no barrier
            with parallel(num_threads=nthreads):
                for part in prange(nthreads, schedule="static"):
                    b0 = B * part // nthreads
                    b1 = B * (part + 1) // nthreads
                    if o.fused:
                        # its rows' input projections (and their normalization) first
                        project_fused(x, o, p, s0, n, t_lo, b0, b1, 0, o.nub)
                        if o.ln:
                            for s in range(n):
                                ln_normalize(xg + (s * B + b0) * GH, GH, b1 - b0, GH, o.eps,
                                             rstd_x + s * B + b0)
                    for s in range(s0, s0 + n):
                        v = step_view(x, o, p, s, step_time(s, T, o.reverse), t_lo)
                        forward_step(x, o, p, &v, b0, b1, 0, o.nub, -1)
        else:
            # each thread: its groups of unit blocks of every row; a barrier after each
            # phase (one a step without LayerNorm)
            with parallel(num_threads=nthreads):
                for s in range(s0, s0 + n):
                    for phase in range(phases):
                        for grp in prange(n_groups(o.nub, gs), schedule="static"):
                            v = step_view(x, o, p, s, step_time(s, T, o.reverse), t_lo)
                            forward_step(x, o, p, &v, 0, B, grp * gs,
                                         grp * gs + group_panels(grp, o.nub, gs),
                                         phase if o.ln else -1)
        s0 += n
    t = cur_slot(T - 1, step_time(T - 1, T, o.reverse), o.reverse, o.keep)
    memcpy(p.hT, hs + t * BH, BH * sizeof(floating))
    if o.cell == LSTM:
        memcpy(p.cT, cs + t * BH, BH * sizeof(floating))


# ---- backward -----------------------------------------------------------------------------

cdef struct BStep:
    Py_ssize_t t
    void* g             # (B, GH) saved activations in, gate gradients out
    void* hh            # (B, GH) GRU: recurrent-side gradients; LN: the normalized product
    void* dR            # (B, GH) what the recurrent product of the next iteration reads
    void* wrow          # (B, GH) GRU: where gru_bwd puts the recurrent-side gradients
    void* h_prev
    void* c_prev
    void* aux
    void* cn
    void* dcl           # LSTM LN: (B, H) the gradient through the cell's LayerNorm
    const unsigned char* zh
    const unsigned char* zc


cdef BStep bstep_view(const Opts* o, const Ptrs* p, Py_ssize_t t, floating* dummy) noexcept nogil:
    cdef BStep v
    cdef Py_ssize_t B = o.B, GH = o.G * o.H, BH = o.B * o.H
    v.t = t
    v.g = ((<floating*>p.gates) if o.ln else (<floating*>p.xg)) + t * B * GH
    v.hh = (<floating*>p.hhat + t * B * GH) if (o.ln or o.cell == GRU) else NULL
    if o.ln:
        v.dR = (<floating*>p.dR + t * B * GH) if not o.by_rows else v.hh
    else:
        v.dR = v.hh if o.cell == GRU else v.g
    v.wrow = (p.wscr if o.ln else v.hh) if o.cell == GRU else NULL
    v.h_prev = <floating*>p.hs + prev_slot(0, t, o.reverse, True) * BH
    v.c_prev = (<floating*>p.cs + prev_slot(0, t, o.reverse, True) * BH) if o.cell == LSTM \
        else NULL
    v.aux = (<floating*>p.aux + t * BH) if p.aux != NULL else NULL
    v.cn = (<floating*>p.cn + t * BH) if p.cn != NULL else NULL
    v.dcl = (v.cn if o.by_rows else p.dcl) if p.cn != NULL else NULL
    v.zh = (p.zh + t * BH) if p.zh != NULL else NULL
    v.zc = (p.zc + t * BH) if p.zc != NULL else NULL
    return v


cdef inline void direct(floating* dh_next, const floating* dd, bint zoned,
                        Py_ssize_t n) noexcept nogil:
    """dh_next's direct part (the recurrent product is added to it later): zoneout's, or 0."""
    if zoned:
        memcpy(dh_next, dd, n * sizeof(floating))
    else:
        memset(dh_next, 0, n * sizeof(floating))


cdef void backward_cells(const floating* x, const Opts* o, const Ptrs* p, const BStep* v,
                         Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t u0, Py_ssize_t nu,
                         floating* dh, floating* dh_next) noexcept nogil:
    """Time t, rows b0 .. b1-1, units u0 .. u0+nu-1: dh (the gradient reaching h_t from later
    steps, its recurrent product included) in; the gate gradients out (with LayerNorm the
    LSTM's o gate and the gradient at the cell's normalization only: backward_ln_cell
    finishes them), and dh_next's direct part (the recurrent product is added at the next
    iteration)."""
    cdef Py_ssize_t B = o.B, H = o.H, G = o.G, GH = o.G * o.H, BH = o.B * o.H
    cdef Py_ssize_t b, j, k, q, t = v.t
    cdef const floating* dy = <const floating*>p.dy
    cdef floating* dt = dh
    cdef floating* dd = <floating*>p.dd
    cdef floating* dcd = <floating*>p.dcd
    cdef floating* dc = <floating*>p.dc
    cdef bint zoned = v.zh != NULL or o.zh_c > 0
    cdef bint zoned_c = v.zc != NULL or o.zc_c > 0
    cdef floating* grow
    cdef floating* aux = <floating*>v.aux
    cdef const floating* c_prev = <const floating*>v.c_prev
    cdef floating val
    for b in range(b0, b1):
        k = b * H + u0
        grow = <floating*>v.g + b * GH + u0
        if o.clip > 0:
            clamp_units(dh + b * H, 1, H, u0, nu, o.clip)
        if not is_active(p.lengths, b, t):
            # the state passed through unchanged: so does its gradient
            for q in range(G):
                memset(grow + q * H, 0, nu * sizeof(floating))
                if v.hh != NULL:
                    memset(<floating*>v.hh + b * GH + u0 + q * H, 0, nu * sizeof(floating))
                if v.dR != v.hh and v.dR != v.g:
                    memset(<floating*>v.dR + b * GH + u0 + q * H, 0, nu * sizeof(floating))
            memcpy(dh_next + k, dh + k, nu * sizeof(floating))
            continue
        # dt = dh + dy in place (dh is not read again); zoneout splits off dd, the part
        # that reaches h_prev directly
        if dy != NULL:
            mul(dt + k, dy + t * BH + k, NULL, nu, True)
        if zoned:
            zone_back(dt + k, dd + k, v.zh + k if v.zh != NULL else NULL, o.zh_c, nu)
        if o.cell == LSTM:
            if zoned_c:
                zone_back(dc + k, dcd + k, v.zc + k if v.zc != NULL else NULL, o.zc_c, nu)
            if o.ln:
                if floating is float:
                    lstm_ln_back1_f32(nu, grow, H, aux + k, dt + k)
                else:
                    lstm_ln_back1_f64(nu, grow, H, aux + k, dt + k)
            else:
                if floating is float:
                    lstm_bwd_f32(nu, grow, H, c_prev + k, aux + k, dt + k, NULL, dc + k, NULL)
                else:
                    lstm_bwd_f64(nu, grow, H, c_prev + k, aux + k, dt + k, NULL, dc + k, NULL)
                if zoned_c:
                    mul(dc + k, dcd + k, NULL, nu, True)
            direct(dh_next + k, dd + k, zoned, nu)
        elif o.cell == GRU:
            if floating is float:
                gru_bwd_f32(nu, grow, H, <const float*>v.h_prev + k, dt + k, NULL, dh_next + k,
                            aux + k, <float*>v.wrow + b * GH + u0)
            else:
                gru_bwd_f64(nu, grow, H, <const double*>v.h_prev + k, dt + k, NULL,
                            dh_next + k, aux + k, <double*>v.wrow + b * GH + u0)
            if zoned:
                mul(dh_next + k, dd + k, NULL, nu, True)
        else:
            for j in range(nu):
                val = grow[j]
                if o.cell == RNN_RELU:
                    grow[j] = dt[k + j] if val > 0 else 0
                else:
                    grow[j] = dt[k + j] * (1 - val * val)
            direct(dh_next + k, dd + k, zoned, nu)


cdef void backward_ln_cell(const floating* x, const Opts* o, const Ptrs* p, const BStep* v,
                           Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t u0,
                           Py_ssize_t nu) noexcept nogil:
    """LayerNorm LSTM: the gradient through the cell's normalization (its means over all H
    units, computed alike by every thread), then the i, f, g gates' gradients and dc."""
    cdef Py_ssize_t B = o.B, H = o.H, GH = o.G * o.H
    cdef Py_ssize_t b, k, t = v.t
    cdef floating m1[ROWS]
    cdef floating m2[ROWS]
    cdef const floating* gc = <const floating*>p.ln + 4 * GH
    cdef floating* tc = <floating*>v.aux
    cdef floating* cn = <floating*>v.cn
    cdef floating* dcl = <floating*>v.dcl
    cdef floating* dc = <floating*>p.dc
    cdef floating* dcd = <floating*>p.dcd
    cdef bint zoned_c = v.zc != NULL or o.zc_c > 0
    for b in range(b0, b1):
        if (b - b0) % ROWS == 0:
            ln_means_rows(tc + b * H, H, gc, cn + b * H, H, min(<Py_ssize_t>ROWS, b1 - b), H,
                          m1, m2)
        if not is_active(p.lengths, b, t):
            continue
        k = b * H + u0
        ln_back_apply(tc + k, gc + u0, cn + k, dcl + k, nu,
                      (<floating*>p.rstd_c)[t * B + b], m1[(b - b0) % ROWS],
                      m2[(b - b0) % ROWS], <floating*>p.acc_gc + k,
                      <floating*>p.acc_bc + k)
        if floating is float:
            lstm_ln_back2_f32(nu, <float*>v.g + b * GH + u0, H, <const float*>v.c_prev + k,
                              dcl + k, dc + k)
        else:
            lstm_ln_back2_f64(nu, <double*>v.g + b * GH + u0, H, <const double*>v.c_prev + k,
                              dcl + k, dc + k)
        if zoned_c:
            mul(dc + k, dcd + k, NULL, nu, True)


cdef void backward_ln_product(const floating* x, const Opts* o, const Ptrs* p,
                              const BStep* v, Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t u0,
                              Py_ssize_t nu) noexcept nogil:
    """The recurrent side's LayerNorm: from the gradient w.r.t. its output (the LSTM's gate
    gradients, the GRU's recurrent-side ones; means over all G*H gates, alike in every
    thread) to dR, the gradient w.r.t. W_hh h, for units u0 .. u0+nu-1."""
    cdef Py_ssize_t B = o.B, H = o.H, G = o.G, GH = o.G * o.H
    cdef Py_ssize_t b, q, c0, t = v.t
    cdef floating m1, m2, r
    cdef floating m1s[ROWS]
    cdef floating m2s[ROWS]
    cdef const floating* gh = <const floating*>p.ln + 2 * GH
    cdef const floating* d
    cdef const floating* hhat
    for b in range(b0, b1):
        d = (<const floating*>v.wrow if o.cell == GRU else <const floating*>v.g) + b * GH
        hhat = <const floating*>v.hh + b * GH
        if (b - b0) % ROWS == 0:
            ln_means_rows(d, GH, gh, hhat, GH, min(<Py_ssize_t>ROWS, b1 - b), GH, m1s, m2s)
        m1 = m1s[(b - b0) % ROWS]
        m2 = m2s[(b - b0) % ROWS]
        if not is_active(p.lengths, b, t):
            continue
        r = (<floating*>p.rstd_h)[t * B + b]
        for q in range(G):
            c0 = q * H + u0
            ln_back_apply(d + c0, gh + c0, hhat + c0, <floating*>v.dR + b * GH + c0, nu, r,
                          m1, m2, <floating*>p.acc_gh + b * GH + c0,
                          (<floating*>p.acc_bh + b * GH + c0) if o.cell == GRU else NULL)


cdef void backward_step(const floating* x, const Opts* o, const Ptrs* p, const BStep* v,
                        Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t u0, Py_ssize_t nu,
                        floating* dh, floating* dh_next, int phase) noexcept nogil:
    """Phase `phase` of the backward of one step (-1: all of them, the rows scheme); with
    LayerNorm the units scheme puts a barrier between phases: 0 the cells, 1 (LSTM) the
    cell's normalization, 2 the recurrent side's normalization."""
    if phase <= 0:
        backward_cells(x, o, p, v, b0, b1, u0, nu, dh, dh_next)
    if o.ln and o.cell == LSTM and (phase == -1 or phase == 1):
        backward_ln_cell(x, o, p, v, b0, b1, u0, nu)
    if o.ln and (phase == -1 or phase == 2):
        backward_ln_product(x, o, p, v, b0, b1, u0, nu)


cdef inline void add_product(floating* dh, const floating* scr, const floating* rmask,
                             Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t H, Py_ssize_t u0,
                             Py_ssize_t nu) noexcept nogil:
    """dh[b0:b1, u0:u0+nu] += rmask * scr (the recurrent product reached h * rmask)."""
    cdef Py_ssize_t b, k
    for b in range(b0, b1):
        k = b * H + u0
        mul(dh + k, scr + k, rmask + k if rmask != NULL else NULL, nu, True)


cdef void backward_kernel(const floating* x, const Opts* o, const Ptrs* p) noexcept nogil:
    cdef Py_ssize_t T = o.T, B = o.B, H = o.H, GH = o.G * o.H, BH = o.B * o.H
    cdef Py_ssize_t s, t, part, b0, b1, r, grp, u0, nu
    cdef Py_ssize_t NR = panel_cols(x)
    cdef Py_ssize_t gs = GROUP if o.by_rows else group_size(o.nub, o.nthreads)
    cdef int phase, phases = (3 if o.cell == LSTM else 2) if o.ln else 1
    cdef int nthreads = o.nthreads
    cdef floating* bufs[2]
    cdef floating* dR
    cdef floating* scr = <floating*>p.scr
    cdef const floating* rmask = <const floating*>p.rmask
    cdef const floating* panels = <const floating*>p.panels
    cdef floating* xg = <floating*>p.xg
    cdef floating* gates = (<floating*>p.gates) if o.ln else xg
    cdef BStep v
    s = t = r = 0
    if o.ln:
        dR = (<floating*>p.hhat) if o.by_rows else (<floating*>p.dR)
    else:
        dR = (<floating*>p.hhat) if o.cell == GRU else gates
    bufs[0] = <floating*>p.dh0
    bufs[1] = <floating*>p.work
    pack_panels(<const floating*>p.w_hh, H, False, GH, o.nub, p.col0, p.width,
                <floating*>p.panels)
    copy_or_zero(bufs[0], <const floating*>p.dhT, BH)
    if o.cell == LSTM:
        copy_or_zero(<floating*>p.dc, <const floating*>p.dcT, BH)
    if o.by_rows:
        with parallel(num_threads=nthreads):
            for part in prange(nthreads, schedule="static"):
                b0 = B * part // nthreads
                b1 = B * (part + 1) // nthreads
                for s in range(T + 1):
                    if s > 0:
                        # dh(s) += mask * (dR[t(s-1)] @ W_hh) for these rows (without a
                        # mask straight into dh, which holds its direct part)
                        for grp in range(n_groups(o.nub, gs)):
                            gemm_panels(b1 - b0, GH,
                                        dR + (step_time(T - s, T, o.reverse) * B + b0) * GH,
                                        GH, panels + grp * gs * GH * NR,
                                        group_panels(grp, o.nub, gs), p.col0 + grp * gs,
                                        p.width + grp * gs,
                                        (scr if rmask != NULL else bufs[s & 1]) + b0 * H, H,
                                        rmask == NULL)
                        if rmask != NULL:
                            add_product(bufs[s & 1], scr, rmask, b0, b1, H, 0, H)
                    if s < T:
                        v = bstep_view(o, p, step_time(T - 1 - s, T, o.reverse), <floating*>NULL)
                        backward_step(x, o, p, &v, b0, b1, 0, H, bufs[s & 1],
                                      bufs[(s + 1) & 1], -1)
    else:
        # each thread: its groups of unit blocks of every row; a barrier after each phase
        with parallel(num_threads=nthreads):
            for s in range(T + 1):
                for phase in range(phases if s < T else 1):
                    for grp in prange(n_groups(o.nub, gs), schedule="static"):
                        u0 = p.col0[grp * gs]
                        nu = group_units(grp, o.nub, p.col0, p.width, gs)
                        if s > 0 and phase == 0:
                            gemm_panels(B, GH, dR + step_time(T - s, T, o.reverse) * B * GH,
                                        GH, panels + grp * gs * GH * NR,
                                        group_panels(grp, o.nub, gs), p.col0 + grp * gs,
                                        p.width + grp * gs,
                                        scr if rmask != NULL else bufs[s & 1], H,
                                        rmask == NULL)
                            if rmask != NULL:
                                add_product(bufs[s & 1], scr, rmask, 0, B, H, u0, nu)
                        if s < T:
                            v = bstep_view(o, p, step_time(T - 1 - s, T, o.reverse), <floating*>NULL)
                            # the GRU has no cell normalization: its phases are 0, 2
                            backward_step(x, o, p, &v, 0, B, u0, nu, bufs[s & 1],
                                          bufs[(s + 1) & 1],
                                          -1 if not o.ln else
                                          (2 if phase == 1 and o.cell == GRU else phase))
    if T % 2 == 1:
        memcpy(p.dh0, p.work, BH * sizeof(floating))
    # dW_hh = dR.T @ H_prev (the masked states that entered the product)
    gemm_split(True, False, <int>GH, <int>H, <int>(T * B), dR, <int>GH,
               <const floating*>p.hprev, <int>H, False, <floating*>p.dw_hh, <int>H, nthreads,
               False)
    # the input side: db = sum of the gate gradients; with LayerNorm, its gain's gradient,
    # then the gradient through the normalization (in place of the normalized input)
    column_sums(T * B, GH, GH, gates, <floating*>p.db, nthreads)
    if o.ln:
        column_dots(T * B, GH, GH, gates, xg, <floating*>p.acc_gh + B * GH, nthreads)
        with parallel(num_threads=nthreads):
            for r in prange((T * B + ROWS - 1) // ROWS, schedule="static"):
                ln_back(gates + r * ROWS * GH, <const floating*>p.ln, xg + r * ROWS * GH,
                        <floating*>p.rstd_x + r * ROWS, GH, min(<Py_ssize_t>ROWS, T * B - r * ROWS),
                        GH)
        input_side_grads(T * B, o.n_in, GH, x, <const floating*>p.w_ih, xg, <floating*>p.dx,
                         <floating*>p.dw_ih, NULL, nthreads)
    else:
        input_side_grads(T * B, o.n_in, GH, x, <const floating*>p.w_ih, gates, <floating*>p.dx,
                         <floating*>p.dw_ih, NULL, nthreads)


# ---- Python entry points ------------------------------------------------------------------

cdef Opts make_opts(int cell, x, Py_ssize_t H, bint ln, double eps, double zh_c, double zc_c,
                    bint reverse, bint keep, int nthreads, bint by_rows, double clip):
    cdef Opts o
    o.fused = False
    o.cell = cell
    o.T, o.B, o.n_in = x.shape[0], x.shape[1], x.shape[2]
    o.H = H
    o.G = _GATES[cell]
    o.ln = ln
    o.eps = eps
    o.zh_c = zh_c
    o.zc_c = zc_c
    o.reverse = reverse
    o.keep = keep
    o.clip = clip
    o.by_rows = by_rows
    o.nthreads = max(1, min(nthreads, o.B)) if o.by_rows else max(1, nthreads)
    o.chunk = o.T if keep else max(1, min(o.T, INFER_ROWS // o.B))
    return o


cdef void set_common(Ptrs* p, w_ih, w_hh, ln, rmask, zh, zc, lengths, col0, width, panels,
                     saved):
    """The pointers forward and backward share: the arguments, and the buffers forward saves
    (xg, gates, hhat, rstd_x, rstd_h, rstd_c, hs, cs, aux, cn, hm: arrays or None)."""
    xg, gates, hhat, rstd_x, rstd_h, rstd_c, hs, cs, aux, cn, hm = saved
    p.w_ih = data_or_null(w_ih)
    p.w_hh = data_or_null(w_hh)
    p.ln = data_or_null(ln)
    p.rmask = data_or_null(rmask)
    p.zh = <unsigned char*>data_or_null(zh)
    p.zc = <unsigned char*>data_or_null(zc)
    p.lengths = <int64_t*>data_or_null(lengths)
    p.col0 = <Py_ssize_t*>data_or_null(col0)
    p.width = <int*>data_or_null(width)
    p.panels = data_or_null(panels)
    p.xg = data_or_null(xg)
    p.gates = data_or_null(gates)
    p.hhat = data_or_null(hhat)
    p.rstd_x = data_or_null(rstd_x)
    p.rstd_h = data_or_null(rstd_h)
    p.rstd_c = data_or_null(rstd_c)
    p.hs = data_or_null(hs)
    p.cs = data_or_null(cs)
    p.aux = data_or_null(aux)
    p.cn = data_or_null(cn)
    p.hm = data_or_null(hm)


def forward(int cell, x, w_ih, w_hh, bias, b_hn, ln, double eps, rmask, zh, zc,
            double zh_c, double zc_c, h0, c0, lengths, bint reverse, bint training,
            int nthreads=1, bint by_rows=True, bint fused=False):
    """y (T,B,H), hT, cT (None unless LSTM), saved (None unless training).

    cell: CELLS[name]; bias: input-side bias (GH,) (for the GRU b_hr, b_hz joined in) or
    None; b_hn: GRU's (H,) or None; ln: packed LayerNorm parameters or None; rmask (B, H)
    or None; zh, zc: (T, B, H) uint8 keep masks (1: keep the old value) or None, zh_c, zc_c: evaluation-mode zoneout
    probabilities (used when the masks are None).  by_rows: the threads split the batch,
    else the hidden units (see common.pxd; with LayerNorm two or three barriers a step).
    fused: the input projection with packed W_ih panels in the kernel's parallel region
    instead of BLAS (functional._fuse_input: small layers)."""
    cdef Opts o = make_opts(cell, x, w_hh.shape[1], ln is not None, eps, zh_c, zc_c, reverse,
                            training, nthreads, by_rows, 0)
    cdef Ptrs p
    cdef Py_ssize_t T = o.T, B = o.B, H = o.H, GH = o.G * o.H
    cdef Py_ssize_t nkeep = T if training else 1
    dtype = x.dtype
    NR = 16 if dtype == np.float32 else 8
    col0, width, nub = unit_block_layout(o.G, H, dtype)
    o.nub = nub
    o.fused = fused
    if not o.by_rows:
        o.nthreads = min(o.nthreads, nub)
    panels = ws_empty((o.G * nub, H, NR), dtype)
    panels_x = ws_empty((o.G * nub, o.n_in, NR), dtype) if fused else None
    xg = ws_empty((o.chunk, B, GH), dtype)
    gates = ws_empty((nkeep, B, GH), dtype) if o.ln else None
    hhat = ws_empty((nkeep, B, GH), dtype) if (o.ln or cell == GRU) else None
    rstd_x = np.empty(o.chunk * B, dtype) if o.ln else None
    rstd_h = np.empty((nkeep, B), dtype) if o.ln else None
    rstd_c = np.empty((nkeep, B), dtype) if (o.ln and cell == LSTM) else None
    hs = ws_empty((T + 1 if training else 2, B, H), dtype)
    cs = ws_empty((T + 1 if training else 2, B, H), dtype) if cell == LSTM else None
    aux = ws_empty((nkeep, B, H), dtype) if cell in (LSTM, GRU) else None
    cn = ws_empty((nkeep, B, H), dtype) if (o.ln and cell == LSTM) else None
    hm = ws_empty((T + 1 if training else 2, B, H), dtype) if rmask is not None else None
    scr = np.empty((B, GH), dtype) if (o.ln and cell == GRU) else None
    units_ln = o.ln and not o.by_rows
    hraw = np.empty((B, GH), dtype) if units_ln else None
    ctil = np.empty((B, H), dtype) if (units_ln and cell == LSTM) else None
    y = np.empty((T, B, H), dtype)
    hT = np.empty((B, H), dtype)
    cT = np.empty((B, H), dtype) if cell == LSTM else None
    set_common(&p, w_ih, w_hh, ln, rmask, zh, zc, lengths, col0, width, panels,
               (xg, gates, hhat, rstd_x, rstd_h, rstd_c, hs, cs, aux, cn, hm))
    p.panels_x = data_or_null(panels_x)
    p.bias = data_or_null(bias)
    p.b_hn = data_or_null(b_hn)
    p.h0 = data_or_null(h0)
    p.c0 = data_or_null(c0)
    p.scr = data_or_null(scr)
    p.hraw = data_or_null(hraw)
    p.ctil = data_or_null(ctil)
    p.y = data_or_null(y)
    p.hT = data_or_null(hT)
    p.cT = data_or_null(cT)
    cdef void* xp = data_or_null(x)
    if dtype == np.float32:
        with nogil:
            forward_kernel(<const float*>xp, &o, &p)
    else:
        _check_double(x)
        with nogil:
            forward_kernel(<const double*>xp, &o, &p)
    ws_release((panels, panels_x), extra_refs=1)
    if training:
        return y, hT, cT, (xg, gates, hhat, rstd_x, rstd_h, rstd_c, hs, cs, aux, cn, hm)
    ws_release((xg, gates, hhat, hs, cs, aux, cn, hm), extra_refs=1)
    return y, hT, cT, None


def backward(int cell, dy, dhT, dcT, x, w_ih, w_hh, ln, rmask, zh, zc, double zh_c,
             double zc_c, lengths, bint reverse, saved, int nthreads=1, double clip=0,
             bint by_rows=True):
    """dx, dh0, dc0 (None unless LSTM), dw_ih, dw_hh, db_ih, db_hh, dln (None without
    LayerNorm; packed as ln).  Overwrites the saved buffers."""
    cdef Opts o = make_opts(cell, x, w_hh.shape[1], ln is not None, 0, zh_c, zc_c, reverse,
                            True, nthreads, by_rows, clip)
    cdef Ptrs p
    cdef Py_ssize_t T = o.T, B = o.B, H = o.H, GH = o.G * o.H
    xg, gates, hhat, rstd_x, rstd_h, rstd_c, hs, cs, aux, cn, hm = saved
    dtype = x.dtype
    NR = 16 if dtype == np.float32 else 8
    col0, width, nub = unit_block_layout(1, H, dtype)
    o.nub = nub
    if not o.by_rows:
        o.nthreads = min(o.nthreads, nub)
    panels = ws_empty((nub, GH, NR), dtype)
    states = hs if hm is None else hm              # what entered the recurrent product
    hprev = states[1:] if reverse else states[:T]
    dh0 = np.empty((B, H), dtype)
    work = np.empty((B, H), dtype)
    dc = np.empty((B, H), dtype) if cell == LSTM else None
    scr = np.empty((B, H), dtype)
    dd = np.empty((B, H), dtype)
    dcd = np.empty((B, H), dtype) if cell == LSTM else None
    wscr = np.empty((B, GH), dtype) if (o.ln and cell == GRU) else None
    units_ln = o.ln and not o.by_rows
    dR = ws_empty((T, B, GH), dtype) if units_ln else None
    dcl = np.empty((B, H), dtype) if (units_ln and cell == LSTM) else None
    # per-row sums of the gains' gradients; acc_gh has one more row for the input side's
    acc_gh = np.zeros((B + 1, GH), dtype) if o.ln else None
    acc_bh = np.zeros((B, GH), dtype) if (o.ln and cell == GRU) else None
    acc_gc = np.zeros((B, H), dtype) if (o.ln and cell == LSTM) else None
    acc_bc = np.zeros((B, H), dtype) if (o.ln and cell == LSTM) else None
    dx = np.empty_like(x)
    dw_ih = np.empty_like(w_ih)
    dw_hh = np.empty_like(w_hh)
    db = np.empty(GH, dtype)
    set_common(&p, w_ih, w_hh, ln, rmask, zh, zc, lengths, col0, width, panels, saved)
    p.scr = data_or_null(scr)
    p.dy = data_or_null(dy)
    p.dhT = data_or_null(dhT)
    p.dcT = data_or_null(dcT)
    p.hprev = data_or_null(hprev)
    p.dh0 = data_or_null(dh0)
    p.work = data_or_null(work)
    p.dc = data_or_null(dc)
    p.dd = data_or_null(dd)
    p.dcd = data_or_null(dcd)
    p.wscr = data_or_null(wscr)
    p.dR = data_or_null(dR)
    p.dcl = data_or_null(dcl)
    p.acc_gh = data_or_null(acc_gh)
    p.acc_bh = data_or_null(acc_bh)
    p.acc_gc = data_or_null(acc_gc)
    p.acc_bc = data_or_null(acc_bc)
    p.dx = data_or_null(dx)
    p.dw_ih = data_or_null(dw_ih)
    p.dw_hh = data_or_null(dw_hh)
    p.db = data_or_null(db)
    cdef void* xp = data_or_null(x)
    if dtype == np.float32:
        with nogil:
            backward_kernel(<const float*>xp, &o, &p)
    else:
        _check_double(x)
        with nogil:
            backward_kernel(<const double*>xp, &o, &p)
    ws_release((panels, dR), extra_refs=1)
    if cell == GRU:
        db_hh = acc_bh.sum(axis=0) if o.ln else hhat.reshape(T * B, GH).sum(axis=0)
    else:
        db_hh = db.copy()
    dln = None
    if o.ln:
        parts = [acc_gh[B], db, acc_gh[:B].sum(axis=0), db_hh]
        if cell == LSTM:
            parts += [acc_gc.sum(axis=0), acc_bc.sum(axis=0)]
        dln = np.concatenate(parts)
    return dx, dh0, dc, dw_ih, dw_hh, db, db_hh, dln
