"""Vectorized sigmoid/tanh with runtime CPU dispatch (csrc/fr_simd.c).

The kernel modules call the cdef functions below; Python sees the dispatch controls
(`supported`, `select`, `level_name`) and array entry points used by the tests.
"""
import os

import numpy as np
cimport numpy as cnp

cnp.import_array()

cdef extern from "fr_simd.h":
    void fr_sigmoid_f32(const float* x, float* y, Py_ssize_t n) nogil
    void fr_sigmoid_f64(const double* x, double* y, Py_ssize_t n) nogil
    void fr_tanh_f32(const float* x, float* y, Py_ssize_t n) nogil
    void fr_tanh_f64(const double* x, double* y, Py_ssize_t n) nogil
    void fr_lstm_fwd_f32(Py_ssize_t n, float* g, Py_ssize_t H, const float* c_prev,
                         float* c_cur, float* h_cur, float* tc, const float* p) nogil
    void fr_lstm_fwd_f64(Py_ssize_t n, double* g, Py_ssize_t H, const double* c_prev,
                         double* c_cur, double* h_cur, double* tc, const double* p) nogil
    void fr_pack_panels_f32(const float* w, Py_ssize_t ldw, int trans, Py_ssize_t K,
                            Py_ssize_t npanels, const Py_ssize_t* col0, const int* width,
                            float* panels) nogil
    void fr_pack_panels_f64(const double* w, Py_ssize_t ldw, int trans, Py_ssize_t K,
                            Py_ssize_t npanels, const Py_ssize_t* col0, const int* width,
                            double* panels) nogil
    void fr_gemm_panels_f32(Py_ssize_t M, Py_ssize_t K, const float* A, Py_ssize_t lda,
                            const float* panels, Py_ssize_t npanels, const Py_ssize_t* col0,
                            const int* width, float* C, Py_ssize_t ldc, int accumulate) nogil
    void fr_gemm_panels_f64(Py_ssize_t M, Py_ssize_t K, const double* A, Py_ssize_t lda,
                            const double* panels, Py_ssize_t npanels, const Py_ssize_t* col0,
                            const int* width, double* C, Py_ssize_t ldc, int accumulate) nogil
    void fr_lstm_bwd_f32(Py_ssize_t n, float* g, Py_ssize_t H, const float* c_prev,
                         const float* tc, const float* dh, const float* dy, float* dc,
                       const float* p) nogil
    void fr_lstm_bwd_f64(Py_ssize_t n, double* g, Py_ssize_t H, const double* c_prev,
                         const double* tc, const double* dh, const double* dy,
                         double* dc, const double* p) nogil
    void fr_gru_bwd_f32(Py_ssize_t n, float* g, Py_ssize_t H, const float* h_prev,
                        const float* dh, const float* dy, float* dh_next, float* aux,
                        float* w) nogil
    void fr_gru_bwd_f64(Py_ssize_t n, double* g, Py_ssize_t H, const double* h_prev,
                        const double* dh, const double* dy, double* dh_next, double* aux,
                        double* w) nogil
    void fr_gru_fwd_f32(Py_ssize_t n, float* g, const float* hh, Py_ssize_t H,
                        const float* b_hn, const float* h_prev, float* hn, float* h_cur) nogil
    void fr_gru_fwd_f64(Py_ssize_t n, double* g, const double* hh, Py_ssize_t H,
                        const double* b_hn, const double* h_prev, double* hn,
                        double* h_cur) nogil
    float fr_xent_f32(const float* z, Py_ssize_t C, Py_ssize_t target, float eps,
                      float scale, float* d) nogil
    double fr_xent_f64(const double* z, Py_ssize_t C, Py_ssize_t target, double eps,
                       double scale, double* d) nogil
    void fr_ln_stats_rows_f32(const float* v, Py_ssize_t ld, Py_ssize_t rows, Py_ssize_t n,
        double eps, float* mean, float* rstd) nogil
    void fr_ln_apply_f32(const float* v, float* out, Py_ssize_t n, float mean, float r) nogil
    void fr_ln_means_rows_f32(const float* d, Py_ssize_t ldd, const float* gain, const float* xhat,
        Py_ssize_t ldx, Py_ssize_t rows, Py_ssize_t n, float* m1, float* m2) nogil
    void fr_ln_back_apply_f32(const float* d, const float* gain, const float* xhat, float* out,
        Py_ssize_t n, float r, float m1, float m2, float* acc_g, float* acc_b) nogil
    void fr_ln_gates_f32(Py_ssize_t n, float* g, const float* xh, const float* hh,
        const float* ln, Py_ssize_t ld, const float* bias, float* hh_out) nogil
    void fr_lstm_cand_f32(Py_ssize_t n, float* g, Py_ssize_t H, const float* c_prev,
        float* ctil) nogil
    void fr_lstm_ln_out_f32(Py_ssize_t n, const float* o, const float* cn, const float* gc,
        const float* bc, float* tc, float* h_cur) nogil
    void fr_lstm_ln_back1_f32(Py_ssize_t n, float* g, Py_ssize_t H, float* tc,
        const float* dt) nogil
    void fr_lstm_ln_back2_f32(Py_ssize_t n, float* g, Py_ssize_t H, const float* c_prev,
        const float* dcl, float* dc) nogil
    void fr_zone_f32(float* cur, const float* prev, const unsigned char* keep, double k,
        Py_ssize_t n) nogil
    void fr_zone_back_f32(float* dt, float* dd, const unsigned char* keep, double k,
        Py_ssize_t n) nogil
    void fr_mul_f32(float* dst, const float* a, const float* m, Py_ssize_t n, int add) nogil
    void fr_ln_stats_rows_f64(const double* v, Py_ssize_t ld, Py_ssize_t rows, Py_ssize_t n,
        double eps, double* mean, double* rstd) nogil
    void fr_ln_apply_f64(const double* v, double* out, Py_ssize_t n, double mean,
        double r) nogil
    void fr_ln_means_rows_f64(const double* d, Py_ssize_t ldd, const double* gain, const double* xhat,
        Py_ssize_t ldx, Py_ssize_t rows, Py_ssize_t n, double* m1, double* m2) nogil
    void fr_ln_back_apply_f64(const double* d, const double* gain, const double* xhat,
        double* out, Py_ssize_t n, double r, double m1, double m2, double* acc_g,
        double* acc_b) nogil
    void fr_ln_gates_f64(Py_ssize_t n, double* g, const double* xh, const double* hh,
        const double* ln, Py_ssize_t ld, const double* bias, double* hh_out) nogil
    void fr_lstm_cand_f64(Py_ssize_t n, double* g, Py_ssize_t H, const double* c_prev,
        double* ctil) nogil
    void fr_lstm_ln_out_f64(Py_ssize_t n, const double* o, const double* cn, const double* gc,
        const double* bc, double* tc, double* h_cur) nogil
    void fr_lstm_ln_back1_f64(Py_ssize_t n, double* g, Py_ssize_t H, double* tc,
        const double* dt) nogil
    void fr_lstm_ln_back2_f64(Py_ssize_t n, double* g, Py_ssize_t H, const double* c_prev,
        const double* dcl, double* dc) nogil
    void fr_zone_f64(double* cur, const double* prev, const unsigned char* keep, double k,
        Py_ssize_t n) nogil
    void fr_zone_back_f64(double* dt, double* dd, const unsigned char* keep, double k,
        Py_ssize_t n) nogil
    void fr_mul_f64(double* dst, const double* a, const double* m, Py_ssize_t n, int add) nogil
    int fr_simd_supported() nogil
    int fr_simd_select(int level) nogil
    int fr_simd_level() nogil
    const char* fr_simd_name(int level) nogil

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int fr_openmp_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int fr_openmp_max_threads(void) { return 0; }
    #endif
    """
    int fr_openmp_max_threads() nogil

LEVELS = ("generic", "avx2", "avx512")


def openmp_threads_available():
    """OpenMP's default thread count, or 0 when the kernels were built without OpenMP."""
    return fr_openmp_max_threads()


def _init_level():
    """FASTRNN_SIMD=generic|avx2|avx512 caps the kernel level (default: the best supported)."""
    name = os.environ.get("FASTRNN_SIMD", "").strip().lower()
    if name:
        if name not in LEVELS:
            raise ImportError(f"FASTRNN_SIMD must be one of {LEVELS}, got {name!r}")
        fr_simd_select(LEVELS.index(name))
    else:
        fr_simd_select(len(LEVELS) - 1)


cdef void sigmoid_f32(const float* x, float* y, Py_ssize_t n) noexcept nogil:
    fr_sigmoid_f32(x, y, n)


cdef void sigmoid_f64(const double* x, double* y, Py_ssize_t n) noexcept nogil:
    fr_sigmoid_f64(x, y, n)


cdef void tanh_f32(const float* x, float* y, Py_ssize_t n) noexcept nogil:
    fr_tanh_f32(x, y, n)


cdef void tanh_f64(const double* x, double* y, Py_ssize_t n) noexcept nogil:
    fr_tanh_f64(x, y, n)


cdef void lstm_fwd_f32(Py_ssize_t n, float* g, Py_ssize_t H, const float* c_prev, float* c_cur,
                       float* h_cur, float* tc, const float* p) noexcept nogil:
    fr_lstm_fwd_f32(n, g, H, c_prev, c_cur, h_cur, tc, p)


cdef void lstm_fwd_f64(Py_ssize_t n, double* g, Py_ssize_t H, const double* c_prev,
                       double* c_cur, double* h_cur, double* tc, const double* p) noexcept nogil:
    fr_lstm_fwd_f64(n, g, H, c_prev, c_cur, h_cur, tc, p)


cdef void lstm_bwd_f32(Py_ssize_t n, float* g, Py_ssize_t H, const float* c_prev,
                       const float* tc, const float* dh, const float* dy, float* dc,
                       const float* p) noexcept nogil:
    fr_lstm_bwd_f32(n, g, H, c_prev, tc, dh, dy, dc, p)


cdef void lstm_bwd_f64(Py_ssize_t n, double* g, Py_ssize_t H, const double* c_prev,
                       const double* tc, const double* dh, const double* dy,
                       double* dc, const double* p) noexcept nogil:
    fr_lstm_bwd_f64(n, g, H, c_prev, tc, dh, dy, dc, p)


cdef void gru_bwd_f32(Py_ssize_t n, float* g, Py_ssize_t H, const float* h_prev,
                      const float* dh, const float* dy, float* dh_next, float* aux,
                      float* w) noexcept nogil:
    fr_gru_bwd_f32(n, g, H, h_prev, dh, dy, dh_next, aux, w)


cdef void gru_bwd_f64(Py_ssize_t n, double* g, Py_ssize_t H, const double* h_prev,
                      const double* dh, const double* dy, double* dh_next, double* aux,
                      double* w) noexcept nogil:
    fr_gru_bwd_f64(n, g, H, h_prev, dh, dy, dh_next, aux, w)


cdef void gru_fwd_f32(Py_ssize_t n, float* g, const float* hh, Py_ssize_t H, const float* b_hn,
                      const float* h_prev, float* hn, float* h_cur) noexcept nogil:
    fr_gru_fwd_f32(n, g, hh, H, b_hn, h_prev, hn, h_cur)


cdef void gru_fwd_f64(Py_ssize_t n, double* g, const double* hh, Py_ssize_t H,
                      const double* b_hn, const double* h_prev, double* hn,
                      double* h_cur) noexcept nogil:
    fr_gru_fwd_f64(n, g, hh, H, b_hn, h_prev, hn, h_cur)


cdef float xent_f32(const float* z, Py_ssize_t C, Py_ssize_t target, float eps, float scale,
                    float* d) noexcept nogil:
    return fr_xent_f32(z, C, target, eps, scale, d)


cdef double xent_f64(const double* z, Py_ssize_t C, Py_ssize_t target, double eps,
                     double scale, double* d) noexcept nogil:
    return fr_xent_f64(z, C, target, eps, scale, d)


cdef void pack_panels_f32(const float* w, Py_ssize_t ldw, bint trans, Py_ssize_t K,
                          Py_ssize_t npanels, const Py_ssize_t* col0, const int* width,
                          float* panels) noexcept nogil:
    fr_pack_panels_f32(w, ldw, trans, K, npanels, col0, width, panels)


cdef void pack_panels_f64(const double* w, Py_ssize_t ldw, bint trans, Py_ssize_t K,
                          Py_ssize_t npanels, const Py_ssize_t* col0, const int* width,
                          double* panels) noexcept nogil:
    fr_pack_panels_f64(w, ldw, trans, K, npanels, col0, width, panels)


cdef void gemm_panels_f32(Py_ssize_t M, Py_ssize_t K, const float* A, Py_ssize_t lda,
                          const float* panels, Py_ssize_t npanels, const Py_ssize_t* col0,
                          const int* width, float* C, Py_ssize_t ldc, bint accumulate) noexcept nogil:
    fr_gemm_panels_f32(M, K, A, lda, panels, npanels, col0, width, C, ldc, accumulate)


cdef void gemm_panels_f64(Py_ssize_t M, Py_ssize_t K, const double* A, Py_ssize_t lda,
                          const double* panels, Py_ssize_t npanels, const Py_ssize_t* col0,
                          const int* width, double* C, Py_ssize_t ldc, bint accumulate) noexcept nogil:
    fr_gemm_panels_f64(M, K, A, lda, panels, npanels, col0, width, C, ldc, accumulate)


def panel_width(dtype):
    """Columns per packed panel (= hidden units per work block) for float32 / float64."""
    return FR_NR_F32 if np.dtype(dtype) == np.float32 else FR_NR_F64


_layouts = {}


def unit_block_layout(Py_ssize_t G, Py_ssize_t H, dtype):
    """Panels of the recurrent weight for the forward product, grouped by blocks of hidden
    units: for unit block u, one panel per gate (columns gate*H + u*NR ...).  Returns
    (col0 intp array, width intc array, number of unit blocks); cached, read-only."""
    key = (G, H, np.dtype(dtype).itemsize)
    hit = _layouts.get(key)
    if hit is None:
        hit = _layouts[key] = _make_layout(G, H, dtype)
        if len(_layouts) > 256:
            _layouts.clear()
            _layouts[key] = hit
    return hit


def _make_layout(Py_ssize_t G, Py_ssize_t H, dtype):
    NR = panel_width(dtype)
    nub = (H + NR - 1) // NR
    col0 = np.empty(nub * G, np.intp)
    width = np.empty(nub * G, np.intc)
    for u in range(nub):
        for gate in range(G):
            col0[u * G + gate] = gate * H + u * NR
            width[u * G + gate] = min(NR, H - u * NR)
    col0.setflags(write=False)
    width.setflags(write=False)
    return col0, width, nub


def pack_unit_blocks(w, Py_ssize_t G, Py_ssize_t H):
    """w.T packed by unit blocks (the panels of unit_block_layout(G, H)): w is a C-contiguous
    native float32/float64 array whose rows gate*H + u are read (G*H rows or more), K columns.
    Returns an array (G * nub, K, NR)."""
    if w.dtype != np.float32 and w.dtype != np.float64:
        raise TypeError(f"w must be native float32 or float64, got {w.dtype}")
    col0, width, nub = unit_block_layout(G, H, w.dtype)
    cdef Py_ssize_t K = w.shape[1]
    cdef Py_ssize_t npanels = G * nub
    out = np.empty((npanels, K, panel_width(w.dtype)), w.dtype)
    cdef const Py_ssize_t* c = <Py_ssize_t*>cnp.PyArray_DATA(col0)
    cdef const int* wd = <int*>cnp.PyArray_DATA(width)
    cdef void* src = cnp.PyArray_DATA(w)
    cdef void* dst = cnp.PyArray_DATA(out)
    cdef bint f32 = w.dtype == np.float32
    with nogil:
        if f32:
            fr_pack_panels_f32(<float*>src, K, 1, K, npanels, c, wd, <float*>dst)
        else:
            fr_pack_panels_f64(<double*>src, K, 1, K, npanels, c, wd, <double*>dst)
    return out


def supported():
    """Name of the best kernel level this CPU can run: 'avx512', 'avx2' or 'generic'."""
    return LEVELS[fr_simd_supported()]


def current():
    """Name of the kernel level in use."""
    return LEVELS[fr_simd_level()]


def select(name):
    """Use kernel level `name` (or the best supported one below it); returns the level used."""
    if name not in LEVELS:
        raise ValueError(f"SIMD level must be one of {LEVELS}, got {name!r}")
    return LEVELS[fr_simd_select(LEVELS.index(name))]


def _apply(name, x):
    """sigmoid or tanh of a float32/float64 array (a copy), for the tests."""
    cdef cnp.ndarray a = np.array(x, copy=True, order="C")
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"x must be float32 or float64, got {a.dtype}")
    cdef Py_ssize_t n = a.size
    cdef void* p = cnp.PyArray_DATA(a)
    if name == "sigmoid":
        if a.dtype == np.float32:
            fr_sigmoid_f32(<float*>p, <float*>p, n)
        else:
            fr_sigmoid_f64(<double*>p, <double*>p, n)
    elif name == "tanh":
        if a.dtype == np.float32:
            fr_tanh_f32(<float*>p, <float*>p, n)
        else:
            fr_tanh_f64(<double*>p, <double*>p, n)
    else:
        raise ValueError(f"name must be 'sigmoid' or 'tanh', got {name!r}")
    return a


_init_level()


def _gemm_unit_blocks(a, packed, Py_ssize_t G, Py_ssize_t H):
    """a (M, K) @ w.T for `packed` = pack_unit_blocks(w, G, H): (M, G*H), on the packed-panel
    micro-kernel of the current level (for the tests)."""
    a = np.ascontiguousarray(a, dtype=packed.dtype)
    col0, width, nub = unit_block_layout(G, H, packed.dtype)
    cdef Py_ssize_t M = a.shape[0], K = a.shape[1], npanels = G * nub
    if packed.shape[0] != npanels or packed.shape[1] != K:
        raise ValueError("packed does not match a, G and H")
    out = np.zeros((M, G * H), packed.dtype)
    cdef const Py_ssize_t* c = <Py_ssize_t*>cnp.PyArray_DATA(col0)
    cdef const int* wd = <int*>cnp.PyArray_DATA(width)
    cdef void* ap = cnp.PyArray_DATA(a)
    cdef void* pp = cnp.PyArray_DATA(packed)
    cdef void* op = cnp.PyArray_DATA(out)
    cdef bint f32 = packed.dtype == np.float32
    cdef Py_ssize_t ldc = G * H
    with nogil:
        if f32:
            fr_gemm_panels_f32(M, K, <float*>ap, K, <float*>pp, npanels, c, wd, <float*>op,
                               ldc, 0)
        else:
            fr_gemm_panels_f64(M, K, <double*>ap, K, <double*>pp, npanels, c, wd,
                               <double*>op, ldc, 0)
    return out


# LayerNorm rows and the regularized recurrences' passes (csrc/fr_norm.c)

cdef void ln_stats_rows_f32(const float* v, Py_ssize_t ld, Py_ssize_t rows, Py_ssize_t n,
        double eps, float* mean, float* rstd) noexcept nogil:
    fr_ln_stats_rows_f32(v, ld, rows, n, eps, mean, rstd)


cdef void ln_apply_f32(const float* v, float* out, Py_ssize_t n, float mean,
        float r) noexcept nogil:
    fr_ln_apply_f32(v, out, n, mean, r)


cdef void ln_means_rows_f32(const float* d, Py_ssize_t ldd, const float* gain, const float* xhat,
        Py_ssize_t ldx, Py_ssize_t rows, Py_ssize_t n, float* m1, float* m2) noexcept nogil:
    fr_ln_means_rows_f32(d, ldd, gain, xhat, ldx, rows, n, m1, m2)


cdef void ln_back_apply_f32(const float* d, const float* gain, const float* xhat, float* out,
        Py_ssize_t n, float r, float m1, float m2, float* acc_g, float* acc_b) noexcept nogil:
    fr_ln_back_apply_f32(d, gain, xhat, out, n, r, m1, m2, acc_g, acc_b)


cdef void ln_gates_f32(Py_ssize_t n, float* g, const float* xh, const float* hh,
        const float* ln, Py_ssize_t ld, const float* bias, float* hh_out) noexcept nogil:
    fr_ln_gates_f32(n, g, xh, hh, ln, ld, bias, hh_out)


cdef void lstm_cand_f32(Py_ssize_t n, float* g, Py_ssize_t H, const float* c_prev,
        float* ctil) noexcept nogil:
    fr_lstm_cand_f32(n, g, H, c_prev, ctil)


cdef void lstm_ln_out_f32(Py_ssize_t n, const float* o, const float* cn, const float* gc,
        const float* bc, float* tc, float* h_cur) noexcept nogil:
    fr_lstm_ln_out_f32(n, o, cn, gc, bc, tc, h_cur)


cdef void lstm_ln_back1_f32(Py_ssize_t n, float* g, Py_ssize_t H, float* tc,
        const float* dt) noexcept nogil:
    fr_lstm_ln_back1_f32(n, g, H, tc, dt)


cdef void lstm_ln_back2_f32(Py_ssize_t n, float* g, Py_ssize_t H, const float* c_prev,
        const float* dcl, float* dc) noexcept nogil:
    fr_lstm_ln_back2_f32(n, g, H, c_prev, dcl, dc)


cdef void zone_f32(float* cur, const float* prev, const unsigned char* keep, double k,
        Py_ssize_t n) noexcept nogil:
    fr_zone_f32(cur, prev, keep, k, n)


cdef void zone_back_f32(float* dt, float* dd, const unsigned char* keep, double k,
        Py_ssize_t n) noexcept nogil:
    fr_zone_back_f32(dt, dd, keep, k, n)


cdef void mul_f32(float* dst, const float* a, const float* m, Py_ssize_t n,
        int add) noexcept nogil:
    fr_mul_f32(dst, a, m, n, add)


cdef void ln_stats_rows_f64(const double* v, Py_ssize_t ld, Py_ssize_t rows, Py_ssize_t n,
        double eps, double* mean, double* rstd) noexcept nogil:
    fr_ln_stats_rows_f64(v, ld, rows, n, eps, mean, rstd)


cdef void ln_apply_f64(const double* v, double* out, Py_ssize_t n, double mean,
        double r) noexcept nogil:
    fr_ln_apply_f64(v, out, n, mean, r)


cdef void ln_means_rows_f64(const double* d, Py_ssize_t ldd, const double* gain, const double* xhat,
        Py_ssize_t ldx, Py_ssize_t rows, Py_ssize_t n, double* m1, double* m2) noexcept nogil:
    fr_ln_means_rows_f64(d, ldd, gain, xhat, ldx, rows, n, m1, m2)


cdef void ln_back_apply_f64(const double* d, const double* gain, const double* xhat,
        double* out, Py_ssize_t n, double r, double m1, double m2, double* acc_g,
        double* acc_b) noexcept nogil:
    fr_ln_back_apply_f64(d, gain, xhat, out, n, r, m1, m2, acc_g, acc_b)


cdef void ln_gates_f64(Py_ssize_t n, double* g, const double* xh, const double* hh,
        const double* ln, Py_ssize_t ld, const double* bias, double* hh_out) noexcept nogil:
    fr_ln_gates_f64(n, g, xh, hh, ln, ld, bias, hh_out)


cdef void lstm_cand_f64(Py_ssize_t n, double* g, Py_ssize_t H, const double* c_prev,
        double* ctil) noexcept nogil:
    fr_lstm_cand_f64(n, g, H, c_prev, ctil)


cdef void lstm_ln_out_f64(Py_ssize_t n, const double* o, const double* cn, const double* gc,
        const double* bc, double* tc, double* h_cur) noexcept nogil:
    fr_lstm_ln_out_f64(n, o, cn, gc, bc, tc, h_cur)


cdef void lstm_ln_back1_f64(Py_ssize_t n, double* g, Py_ssize_t H, double* tc,
        const double* dt) noexcept nogil:
    fr_lstm_ln_back1_f64(n, g, H, tc, dt)


cdef void lstm_ln_back2_f64(Py_ssize_t n, double* g, Py_ssize_t H, const double* c_prev,
        const double* dcl, double* dc) noexcept nogil:
    fr_lstm_ln_back2_f64(n, g, H, c_prev, dcl, dc)


cdef void zone_f64(double* cur, const double* prev, const unsigned char* keep, double k,
        Py_ssize_t n) noexcept nogil:
    fr_zone_f64(cur, prev, keep, k, n)


cdef void zone_back_f64(double* dt, double* dd, const unsigned char* keep, double k,
        Py_ssize_t n) noexcept nogil:
    fr_zone_back_f64(dt, dd, keep, k, n)


cdef void mul_f64(double* dst, const double* a, const double* m, Py_ssize_t n,
        int add) noexcept nogil:
    fr_mul_f64(dst, a, m, n, add)
