/* fastrnn C helpers: vectorized activation functions with runtime CPU dispatch.
 *
 * Each function is compiled three times on x86-64 with GCC/Clang (AVX-512, AVX2+FMA, and the
 * baseline); fr_simd_init() picks the best the CPU supports (or the one named by
 * fr_simd_select()).  Elsewhere only the portable version exists.  In-place use (x == y) is
 * allowed.  Accuracy: a few ulp in both precisions; NaN propagates; +-inf saturate.
 */
#ifndef FASTRNN_SIMD_H
#define FASTRNN_SIMD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y[i] = 1 / (1 + exp(-x[i])) */
void fr_sigmoid_f32(const float *x, float *y, ptrdiff_t n);
void fr_sigmoid_f64(const double *x, double *y, ptrdiff_t n);
/* y[i] = tanh(x[i]) */
void fr_tanh_f32(const float *x, float *y, ptrdiff_t n);
void fr_tanh_f64(const double *x, double *y, ptrdiff_t n);

/* Softmax cross-entropy of one row of C logits against (1 - eps) onehot(target) + eps/C:
 * returns the loss, writes d = scale * (softmax(z) - that distribution). */
float fr_xent_f32(const float *z, ptrdiff_t C, ptrdiff_t target, float eps, float scale,
                  float *d);
double fr_xent_f64(const double *z, ptrdiff_t C, ptrdiff_t target, double eps, double scale,
                   double *d);

/* Fused LSTM forward step over n units of one row; p: peephole weights or NULL (see
 * fr_simd.c). */
void fr_lstm_fwd_f32(ptrdiff_t n, float *g, ptrdiff_t H, const float *c_prev, float *c_cur,
                     float *h_cur, float *tc, const float *p);
void fr_lstm_fwd_f64(ptrdiff_t n, double *g, ptrdiff_t H, const double *c_prev, double *c_cur,
                     double *h_cur, double *tc, const double *p);

/* Fused GRU (reset_after) forward step over n units of one row (see fr_simd.c). */
void fr_gru_fwd_f32(ptrdiff_t n, float *g, const float *hh, ptrdiff_t H, const float *b_hn,
                    const float *h_prev, float *hn, float *h_cur);
void fr_gru_fwd_f64(ptrdiff_t n, double *g, const double *hh, ptrdiff_t H, const double *b_hn,
                    const double *h_prev, double *hn, double *h_cur);

/* Fused LSTM / GRU backward updates over n units of one row (see fr_simd.c). */
void fr_lstm_bwd_f32(ptrdiff_t n, float *g, ptrdiff_t H, const float *c_prev, const float *tc,
                     const float *dh, const float *dy, float *dc, const float *p);
void fr_lstm_bwd_f64(ptrdiff_t n, double *g, ptrdiff_t H, const double *c_prev,
                     const double *tc, const double *dh, const double *dy, double *dc,
                     const double *p);
void fr_gru_bwd_f32(ptrdiff_t n, float *g, ptrdiff_t H, const float *h_prev, const float *dh,
                    const float *dy, float *dh_next, float *aux, float *w);
void fr_gru_bwd_f64(ptrdiff_t n, double *g, ptrdiff_t H, const double *h_prev,
                    const double *dh, const double *dy, double *dh_next, double *aux,
                    double *w);

/* Packed-panel products for the per-step recurrent GEMM (fr_gemm.c).
 * A panel holds FR_NR consecutive output columns of the right operand B (K, N), k-major:
 * panel[k * FR_NR + j] = B[k, col0 + j] for j < width, 0 for width <= j < FR_NR.
 * B is read from w as w[k * ldw + n], or w[n * ldw + k] when trans (B = w^T). */
#define FR_NR_F32 16
#define FR_NR_F64 8
void fr_pack_panel_f32(const float *w, ptrdiff_t ldw, int trans, ptrdiff_t K, ptrdiff_t col0,
                       int width, float *panel);
void fr_pack_panel_f64(const double *w, ptrdiff_t ldw, int trans, ptrdiff_t K, ptrdiff_t col0,
                       int width, double *panel);
/* npanels panels one after another (K * FR_NR elements each), panel q from columns
 * col0[q] .. col0[q] + width[q] - 1. */
void fr_pack_panels_f32(const float *w, ptrdiff_t ldw, int trans, ptrdiff_t K, ptrdiff_t npanels,
                        const ptrdiff_t *col0, const int *width, float *panels);
void fr_pack_panels_f64(const double *w, ptrdiff_t ldw, int trans, ptrdiff_t K,
                        ptrdiff_t npanels, const ptrdiff_t *col0, const int *width,
                        double *panels);
/* For each panel q (stored one after another, K * FR_NR elements each):
 * C[0:M, col0[q] : col0[q] + width[q]] (+)= A (M, K; row stride lda) @ panel_q.
 * Every output is summed in k order, so results do not depend on how panels or rows are
 * split between calls (threads). */
void fr_gemm_panels_f32(ptrdiff_t M, ptrdiff_t K, const float *A, ptrdiff_t lda,
                        const float *panels, ptrdiff_t npanels, const ptrdiff_t *col0,
                        const int *width, float *C, ptrdiff_t ldc, int accumulate);
void fr_gemm_panels_f64(ptrdiff_t M, ptrdiff_t K, const double *A, ptrdiff_t lda,
                        const double *panels, ptrdiff_t npanels, const ptrdiff_t *col0,
                        const int *width, double *C, ptrdiff_t ldc, int accumulate);

/* LayerNorm rows and the regularized recurrences' elementwise passes (fr_norm.c).
 * ln_stats_rows: for `rows` rows of n values (ld apart) their means and 1/sqrt(var + eps);
 *   ln_apply: out = (v - mean) * r.
 * ln_means_rows: m1 = mean(d*gain), m2 = mean(d*gain*xhat) for rows of d (ldd apart) and
 *   xhat (ldx apart); ln_back_apply: out = r*(d*gain - m1 -
 *   xhat*m2), the gradient w.r.t. the LN input from d, the gradient w.r.t. xhat*gain + bias
 *   (out may be xhat); acc_g += d*xhat, acc_b += d when not NULL.
 * ln_gates: g = xh*g_x + b_x [+ hh*g_h + b_h] + bias over n gates; with hh_out the
 *   recurrent side goes there instead (hh*g_h + b_h); g_x|b_x|g_h|b_h are ld apart.
 * LSTM with LayerNorm over n units of a row (gate blocks i|f|g|o H apart): lstm_cand: the
 *   activations in g, ctil = f*c + i*g; lstm_ln_out: tc = tanh(cn*gc + bc), h = o*tc;
 *   lstm_ln_back1: dt (w.r.t. h~) -> the o gate's gradient, tc <- d(cn*gc + bc);
 *   lstm_ln_back2: dc + dcl -> the i, f, g gradients, dc <- the gradient at c_prev.
 * zone: cur <- prev where keep[j] (0/1 bytes) != 0, or k*prev + (1-k)*cur without keep (k > 0).
 * zone_back: dt -> dd (to the previous state) and dt (to the candidate).
 * mul: dst = a*m (m NULL: a), or dst += a*m (a) when add. */
#define FR_NORM_DECL(SUF, T)                                                                 \
    void fr_ln_stats_rows_##SUF(const T *v, ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t n,       \
                                double eps, T *mean, T *rstd);                               \
    void fr_ln_apply_##SUF(const T *v, T *out, ptrdiff_t n, T mean, T r);                    \
    void fr_ln_means_rows_##SUF(const T *d, ptrdiff_t ldd, const T *gain, const T *xhat,     \
                                ptrdiff_t ldx, ptrdiff_t rows, ptrdiff_t n, T *m1, T *m2);   \
    void fr_ln_back_apply_##SUF(const T *d, const T *gain, const T *xhat, T *out,            \
                                ptrdiff_t n, T r, T m1, T m2, T *acc_g, T *acc_b);           \
    void fr_ln_gates_##SUF(ptrdiff_t n, T *g, const T *xh, const T *hh, const T *ln,         \
                           ptrdiff_t ld, const T *bias, T *hh_out);                          \
    void fr_lstm_cand_##SUF(ptrdiff_t n, T *g, ptrdiff_t H, const T *c_prev, T *ctil);       \
    void fr_lstm_ln_out_##SUF(ptrdiff_t n, const T *o, const T *cn, const T *gc,             \
                              const T *bc, T *tc, T *h_cur);                                 \
    void fr_lstm_ln_back1_##SUF(ptrdiff_t n, T *g, ptrdiff_t H, T *tc, const T *dt);         \
    void fr_lstm_ln_back2_##SUF(ptrdiff_t n, T *g, ptrdiff_t H, const T *c_prev,             \
                                const T *dcl, T *dc);                                        \
    void fr_zone_##SUF(T *cur, const T *prev, const uint8_t *keep, double k, ptrdiff_t n);   \
    void fr_zone_back_##SUF(T *dt, T *dd, const uint8_t *keep, double k, ptrdiff_t n);       \
    void fr_mul_##SUF(T *dst, const T *a, const T *m, ptrdiff_t n, int add);
FR_NORM_DECL(f32, float)
FR_NORM_DECL(f64, double)

/* Kernel levels, best last.  fr_simd_select returns the level in use afterwards. */
enum { FR_SIMD_GENERIC = 0, FR_SIMD_AVX2 = 1, FR_SIMD_AVX512 = 2 };
int fr_simd_supported(void);          /* best level this CPU and build can run */
int fr_simd_select(int level);        /* use min(level, supported); returns the level used */
int fr_simd_level(void);              /* level in use */
const char *fr_simd_name(int level);

#ifdef __cplusplus
}
#endif
#endif
