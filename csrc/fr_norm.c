/* LayerNorm over rows and the elementwise passes of the regularized recurrences
 * (src/fastrnn/engine/variants.pyx), compiled for each SIMD level and chosen at run time with
 * the level fr_simd.c uses.  See fr_simd.h for the contracts.
 *
 * Row sums: FR_LANES interleaved partial sums per row, in the data's type, combined by a
 * fixed tree, FR_ROWS rows at a time (independent chains that hide the add latency, which
 * limits a single row).  A row's result depends only on its data: not on which rows share
 * its group, nor on the thread count.
 */
#include "fr_simd.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FR_X86_DISPATCH 1
#endif

#if defined(__clang__)
#define FR_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define FR_IVDEP _Pragma("GCC ivdep")
#else
#define FR_IVDEP
#endif

#define FR_LANES 16
#define FR_ROWS 4

/* FR_DEFINE_NORM(SUFFIX, ATTR, T): the row functions for one type and target. */
#define FR_DEFINE_NORM(SUFFIX, ATTR, T)                                                      \
    ATTR static inline T tree_##SUFFIX(T *acc)                                               \
    {                                                                                        \
        for (int l = 0; l < 8; l++) acc[l] += acc[l + 8];                                    \
        for (int l = 0; l < 4; l++) acc[l] += acc[l + 4];                                    \
        for (int l = 0; l < 2; l++) acc[l] += acc[l + 2];                                    \
        return acc[0] + acc[1];                                                              \
    }                                                                                        \
    /* out[r] = sum_j (a[r][j] - shift[r]) * (sq ? a[r][j] - shift[r] : 1), FR_ROWS rows */   \
    ATTR static void rsum4_##SUFFIX(const T *const *a, int sq, const T *shift, ptrdiff_t n,  \
                                    double *out)                                             \
    {                                                                                        \
        T acc[FR_ROWS][FR_LANES] = {{0}}, tail[FR_ROWS] = {0};                               \
        const T *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3];                              \
        const T s0 = shift[0], s1 = shift[1], s2 = shift[2], s3 = shift[3];                  \
        ptrdiff_t j = 0;                                                                     \
        if (sq) {                                                                            \
            for (; j + FR_LANES <= n; j += FR_LANES)                                         \
                for (int l = 0; l < FR_LANES; l++) {                                         \
                    T d0 = a0[j + l] - s0, d1 = a1[j + l] - s1;                              \
                    T d2 = a2[j + l] - s2, d3 = a3[j + l] - s3;                              \
                    acc[0][l] += d0 * d0;                                                    \
                    acc[1][l] += d1 * d1;                                                    \
                    acc[2][l] += d2 * d2;                                                    \
                    acc[3][l] += d3 * d3;                                                    \
                }                                                                            \
            for (; j < n; j++)                                                               \
                for (int r = 0; r < FR_ROWS; r++) {                                          \
                    T d = a[r][j] - shift[r];                                                \
                    tail[r] += d * d;                                                        \
                }                                                                            \
        } else {                                                                             \
            for (; j + FR_LANES <= n; j += FR_LANES)                                         \
                for (int l = 0; l < FR_LANES; l++) {                                         \
                    acc[0][l] += a0[j + l] - s0;                                             \
                    acc[1][l] += a1[j + l] - s1;                                             \
                    acc[2][l] += a2[j + l] - s2;                                             \
                    acc[3][l] += a3[j + l] - s3;                                             \
                }                                                                            \
            for (; j < n; j++)                                                               \
                for (int r = 0; r < FR_ROWS; r++) tail[r] += a[r][j] - shift[r];             \
        }                                                                                    \
        for (int r = 0; r < FR_ROWS; r++)                                                    \
            out[r] = (double)tree_##SUFFIX(acc[r]) + tail[r];                                \
    }                                                                                        \
    /* FR_ROWS rows' pointers from row0 (ld apart), the last real row repeated */            \
    ATTR static inline void group_##SUFFIX(const T *row0, ptrdiff_t ld, ptrdiff_t nr,        \
                                           const T **rows)                                   \
    {                                                                                        \
        for (int r = 0; r < FR_ROWS; r++) rows[r] = row0 + (r < nr ? r : nr - 1) * ld;      \
    }                                                                                        \
    ATTR static void ln_stats_rows_##SUFFIX(const T *v, ptrdiff_t ld, ptrdiff_t rows,       \
                                            ptrdiff_t n, double eps, T *mean, T *rstd)       \
    {                                                                                        \
        for (ptrdiff_t b = 0; b < rows; b += FR_ROWS) {                                      \
            ptrdiff_t nr = rows - b < FR_ROWS ? rows - b : FR_ROWS;                          \
            const T *a[FR_ROWS];                                                             \
            T zero[FR_ROWS] = {0}, m[FR_ROWS];                                               \
            double sum[FR_ROWS];                                                             \
            group_##SUFFIX(v + b * ld, ld, nr, a);                                           \
            rsum4_##SUFFIX(a, 0, zero, n, sum);                                              \
            for (int r = 0; r < FR_ROWS; r++) m[r] = (T)(sum[r] / n);                        \
            rsum4_##SUFFIX(a, 1, m, n, sum);                                                 \
            for (ptrdiff_t r = 0; r < nr; r++) {                                             \
                mean[b + r] = m[r];                                                          \
                rstd[b + r] = (T)(1.0 / sqrt(sum[r] / n + eps));                             \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    /* m1 = mean(d*gain), m2 = mean(d*gain*xhat) of rows of d (ldd apart) and xhat (ldx) */  \
    ATTR static void ln_means_rows_##SUFFIX(const T *d, ptrdiff_t ldd, const T *gain,        \
                                            const T *xhat, ptrdiff_t ldx, ptrdiff_t rows,    \
                                            ptrdiff_t n, T *m1, T *m2)                       \
    {                                                                                        \
        for (ptrdiff_t b = 0; b < rows; b += FR_ROWS) {                                      \
            ptrdiff_t nr = rows - b < FR_ROWS ? rows - b : FR_ROWS;                          \
            const T *dr[FR_ROWS], *xr[FR_ROWS];                                              \
            T p[FR_ROWS][FR_LANES] = {{0}}, q[FR_ROWS][FR_LANES] = {{0}};                    \
            T tp[FR_ROWS] = {0}, tq[FR_ROWS] = {0};                                          \
            group_##SUFFIX(d + b * ldd, ldd, nr, dr);                                        \
            group_##SUFFIX(xhat + b * ldx, ldx, nr, xr);                                     \
            ptrdiff_t j = 0;                                                                 \
            for (; j + FR_LANES <= n; j += FR_LANES)                                         \
                for (int r = 0; r < FR_ROWS; r++)                                            \
                    for (int l = 0; l < FR_LANES; l++) {                                     \
                        T u = dr[r][j + l] * gain[j + l];                                    \
                        p[r][l] += u;                                                        \
                        q[r][l] += u * xr[r][j + l];                                         \
                    }                                                                        \
            for (; j < n; j++)                                                               \
                for (int r = 0; r < FR_ROWS; r++) {                                          \
                    T u = dr[r][j] * gain[j];                                                \
                    tp[r] += u;                                                              \
                    tq[r] += u * xr[r][j];                                                   \
                }                                                                            \
            for (ptrdiff_t r = 0; r < nr; r++) {                                             \
                m1[b + r] = (T)(((double)tree_##SUFFIX(p[r]) + tp[r]) / n);                  \
                m2[b + r] = (T)(((double)tree_##SUFFIX(q[r]) + tq[r]) / n);                  \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    ATTR static void ln_apply_##SUFFIX(const T *v, T *out, ptrdiff_t n, T mean, T r)         \
    {                                                                                        \
        FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) out[j] = (v[j] - mean) * r;               \
    }                                                                                        \
    ATTR static void ln_back_apply_##SUFFIX(const T *d, const T *gain, const T *xhat, T *out, \
                                            ptrdiff_t n, T r, T m1, T m2, T *acc_g,          \
                                            T *acc_b)                                        \
    {                                                                                        \
        if (acc_g) {                                                                         \
            FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) acc_g[j] += d[j] * xhat[j];           \
        }                                                                                    \
        if (acc_b) {                                                                         \
            FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) acc_b[j] += d[j];                     \
        }                                                                                    \
        FR_IVDEP for (ptrdiff_t j = 0; j < n; j++)                                           \
            out[j] = r * (d[j] * gain[j] - m1 - xhat[j] * m2);                               \
    }                                                                                        \
    ATTR static void ln_gates_##SUFFIX(ptrdiff_t n, T *g, const T *xh, const T *hh,          \
                                       const T *ln, ptrdiff_t ld, const T *bias, T *hh_out)  \
    {                                                                                        \
        const T *gx = ln, *bx = ln + ld, *gh = ln + 2 * ld, *bh = ln + 3 * ld;               \
        if (hh_out) {                                                                        \
            FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) {                                     \
                g[j] = xh[j] * gx[j] + bx[j] + (bias ? bias[j] : 0);                         \
                hh_out[j] = hh[j] * gh[j] + bh[j];                                           \
            }                                                                                \
        } else {                                                                             \
            FR_IVDEP for (ptrdiff_t j = 0; j < n; j++)                                       \
                g[j] = xh[j] * gx[j] + bx[j] + hh[j] * gh[j] + bh[j] + (bias ? bias[j] : 0); \
        }                                                                                    \
    }                                                                                        \
    /* LSTM with LayerNorm, n units of a row (gates H apart; activations already in g):     \
     * the candidate cell f*c + i*g */                                                       \
    ATTR static void lstm_cand_##SUFFIX(ptrdiff_t n, const T *g, ptrdiff_t H,                \
                                        const T *c_prev, T *ctil)                            \
    {                                                                                        \
        FR_IVDEP for (ptrdiff_t j = 0; j < n; j++)                                           \
            ctil[j] = g[H + j] * c_prev[j] + g[j] * g[2 * H + j];                            \
    }                                                                                        \
    /* tc = cn*gc + bc (the caller takes its tanh), then h = o * tc */                       \
    ATTR static void lstm_lnc_##SUFFIX(ptrdiff_t n, const T *cn, const T *gc, const T *bc,   \
                                       T *tc)                                                \
    {                                                                                        \
        FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) tc[j] = cn[j] * gc[j] + bc[j];            \
    }                                                                                        \
    ATTR static void lstm_ln_out_##SUFFIX(ptrdiff_t H, const T *o, const T *tc, T *h_cur)    \
    {                                                                                        \
        FR_IVDEP for (ptrdiff_t j = 0; j < H; j++) h_cur[j] = o[j] * tc[j];                  \
    }                                                                                        \
    /* backward, part 1: dt (gradient w.r.t. h~) -> the o gate's gradient (in g), and in tc  \
     * the gradient w.r.t. cn*gc + bc */                                                     \
    ATTR static void lstm_ln_back1_##SUFFIX(ptrdiff_t n, T *g, ptrdiff_t H, T *tc,           \
                                            const T *dt)                                     \
    {                                                                                        \
        T *go = g + 3 * H;                                                                   \
        FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) {                                         \
            T o = go[j], t = tc[j], d = dt[j];                                               \
            go[j] = d * t * o * (1 - o);                                                     \
            tc[j] = d * o * (1 - t * t);                                                     \
        }                                                                                    \
    }                                                                                        \
    /* part 2: dcl (through the cell's LayerNorm) + dc -> the i, f, g gradients; dc becomes  \
     * the gradient reaching c_prev through f */                                             \
    ATTR static void lstm_ln_back2_##SUFFIX(ptrdiff_t n, T *g, ptrdiff_t H, const T *c_prev, \
                                            const T *dcl, T *dc)                             \
    {                                                                                        \
        FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) {                                         \
            T dct = dc[j] + dcl[j], i = g[j], f = g[H + j], u = g[2 * H + j];                \
            g[j] = dct * u * i * (1 - i);                                                    \
            g[H + j] = dct * c_prev[j] * f * (1 - f);                                        \
            g[2 * H + j] = dct * i * (1 - u * u);                                            \
            dc[j] = dct * f;                                                                 \
        }                                                                                    \
    }                                                                                        \
    ATTR static void zone_##SUFFIX(T *cur, const T *prev, const uint8_t *keep, double k,           \
                                   ptrdiff_t n)                                              \
    {                                                                                        \
        if (keep) {                                                                          \
            FR_IVDEP for (ptrdiff_t j = 0; j < n; j++)                                       \
                cur[j] = keep[j] != 0 ? prev[j] : cur[j];                                    \
        } else if (k > 0) {                                                                  \
            T kk = (T)k, k1 = (T)(1 - k);                                                    \
            FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) cur[j] = kk * prev[j] + k1 * cur[j];  \
        }                                                                                    \
    }                                                                                        \
    ATTR static void zone_back_##SUFFIX(T *dt, T *dd, const uint8_t *keep, double k,        \
                                        ptrdiff_t n)                                         \
    {                                                                                        \
        if (keep) {                                                                          \
            FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) {                                     \
                T d = dt[j];                                                                 \
                int kept = keep[j] != 0;                                                     \
                dd[j] = kept ? d : 0;                                                        \
                dt[j] = kept ? 0 : d;                                                        \
            }                                                                                \
        } else if (k > 0) {                                                                  \
            T kk = (T)k, k1 = (T)(1 - k);                                                    \
            FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) {                                     \
                T d = dt[j];                                                                 \
                dd[j] = kk * d;                                                              \
                dt[j] = k1 * d;                                                              \
            }                                                                                \
        } else {                                                                             \
            memset(dd, 0, n * sizeof(T));                                                    \
        }                                                                                    \
    }                                                                                        \
    /* dst = a * m (m NULL: a), or dst += a * m when add */                                  \
    ATTR static void mul_##SUFFIX(T *dst, const T *a, const T *m, ptrdiff_t n, int add)      \
    {                                                                                        \
        if (add && m) {                                                                      \
            FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) dst[j] += a[j] * m[j];                \
        } else if (add) {                                                                    \
            FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) dst[j] += a[j];                       \
        } else if (m) {                                                                      \
            FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) dst[j] = a[j] * m[j];                 \
        } else {                                                                             \
            memcpy(dst, a, n * sizeof(T));                                                   \
        }                                                                                    \
    }

#define FR_DEFINE_NORM_ALL(SUFFIX, ATTR)                                                     \
    FR_DEFINE_NORM(f32_##SUFFIX, ATTR, float)                                                \
    FR_DEFINE_NORM(f64_##SUFFIX, ATTR, double)

FR_DEFINE_NORM_ALL(generic, )
#ifdef FR_X86_DISPATCH
FR_DEFINE_NORM_ALL(avx2, __attribute__((target("avx2,fma"))))
FR_DEFINE_NORM_ALL(avx512, __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma,prefer-vector-width=512"))))
#endif

/* ---- dispatch (the level fr_simd.c selected) ------------------------------------------ */

#define FR_NORM_FIELDS(SUF, T)                                                               \
    void (*ln_stats_rows_##SUF)(const T *, ptrdiff_t, ptrdiff_t, ptrdiff_t, double, T *, T *); \
    void (*ln_apply_##SUF)(const T *, T *, ptrdiff_t, T, T);                                 \
    void (*ln_means_rows_##SUF)(const T *, ptrdiff_t, const T *, const T *, ptrdiff_t,       \
                                ptrdiff_t, ptrdiff_t, T *, T *);                             \
    void (*ln_back_apply_##SUF)(const T *, const T *, const T *, T *, ptrdiff_t, T, T, T,    \
                                T *, T *);                                                   \
    void (*ln_gates_##SUF)(ptrdiff_t, T *, const T *, const T *, const T *, ptrdiff_t,       \
                           const T *, T *);                                                  \
    void (*lstm_cand_##SUF)(ptrdiff_t, const T *, ptrdiff_t, const T *, T *);                \
    void (*lstm_lnc_##SUF)(ptrdiff_t, const T *, const T *, const T *, T *);                 \
    void (*lstm_ln_out_##SUF)(ptrdiff_t, const T *, const T *, T *);                         \
    void (*lstm_ln_back1_##SUF)(ptrdiff_t, T *, ptrdiff_t, T *, const T *);                  \
    void (*lstm_ln_back2_##SUF)(ptrdiff_t, T *, ptrdiff_t, const T *, const T *, T *);       \
    void (*zone_##SUF)(T *, const T *, const uint8_t *, double, ptrdiff_t);                  \
    void (*zone_back_##SUF)(T *, T *, const uint8_t *, double, ptrdiff_t);                   \
    void (*mul_##SUF)(T *, const T *, const T *, ptrdiff_t, int);

typedef struct {
    FR_NORM_FIELDS(f32, float)
    FR_NORM_FIELDS(f64, double)
} fr_norm_table;

#define FR_NORM_ROW(S) ln_stats_rows_##S, ln_apply_##S, ln_means_rows_##S, ln_back_apply_##S,         \
                       ln_gates_##S, lstm_cand_##S, lstm_lnc_##S, lstm_ln_out_##S,           \
                       lstm_ln_back1_##S, lstm_ln_back2_##S, zone_##S, zone_back_##S, mul_##S
#define FR_NORM_TABLE(SUFFIX) {FR_NORM_ROW(f32_##SUFFIX), FR_NORM_ROW(f64_##SUFFIX)}

static const fr_norm_table fr_norm_tables[] = {
    FR_NORM_TABLE(generic),
#ifdef FR_X86_DISPATCH
    FR_NORM_TABLE(avx2),
    FR_NORM_TABLE(avx512),
#endif
};

#define FR_NORM (&fr_norm_tables[fr_simd_level()])

#define FR_NORM_PUBLIC(SUF, T)                                                               \
    void fr_ln_stats_rows_##SUF(const T *v, ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t n,       \
                                double eps, T *mean, T *rstd)                                \
    {                                                                                        \
        FR_NORM->ln_stats_rows_##SUF(v, ld, rows, n, eps, mean, rstd);                       \
    }                                                                                        \
    void fr_ln_apply_##SUF(const T *v, T *out, ptrdiff_t n, T mean, T r)                     \
    {                                                                                        \
        FR_NORM->ln_apply_##SUF(v, out, n, mean, r);                                         \
    }                                                                                        \
    void fr_ln_means_rows_##SUF(const T *d, ptrdiff_t ldd, const T *gain, const T *xhat,     \
                                ptrdiff_t ldx, ptrdiff_t rows, ptrdiff_t n, T *m1, T *m2)    \
    {                                                                                        \
        FR_NORM->ln_means_rows_##SUF(d, ldd, gain, xhat, ldx, rows, n, m1, m2);              \
    }                                                                                        \
    void fr_ln_back_apply_##SUF(const T *d, const T *gain, const T *xhat, T *out,            \
                                ptrdiff_t n, T r, T m1, T m2, T *acc_g, T *acc_b)            \
    {                                                                                        \
        FR_NORM->ln_back_apply_##SUF(d, gain, xhat, out, n, r, m1, m2, acc_g, acc_b);        \
    }                                                                                        \
    void fr_ln_gates_##SUF(ptrdiff_t n, T *g, const T *xh, const T *hh, const T *ln,         \
                           ptrdiff_t ld, const T *bias, T *hh_out)                           \
    {                                                                                        \
        FR_NORM->ln_gates_##SUF(n, g, xh, hh, ln, ld, bias, hh_out);                         \
    }                                                                                        \
    void fr_lstm_cand_##SUF(ptrdiff_t n, T *g, ptrdiff_t H, const T *c_prev, T *ctil)        \
    {                                                                                        \
        fr_sigmoid_##SUF(g, g, n);                                                           \
        fr_sigmoid_##SUF(g + H, g + H, n);                                                   \
        fr_tanh_##SUF(g + 2 * H, g + 2 * H, n);                                              \
        fr_sigmoid_##SUF(g + 3 * H, g + 3 * H, n);                                           \
        FR_NORM->lstm_cand_##SUF(n, g, H, c_prev, ctil);                                     \
    }                                                                                        \
    void fr_lstm_ln_out_##SUF(ptrdiff_t n, const T *o, const T *cn, const T *gc,             \
                              const T *bc, T *tc, T *h_cur)                                  \
    {                                                                                        \
        FR_NORM->lstm_lnc_##SUF(n, cn, gc, bc, tc);                                          \
        fr_tanh_##SUF(tc, tc, n);                                                            \
        FR_NORM->lstm_ln_out_##SUF(n, o, tc, h_cur);                                         \
    }                                                                                        \
    void fr_lstm_ln_back1_##SUF(ptrdiff_t n, T *g, ptrdiff_t H, T *tc, const T *dt)          \
    {                                                                                        \
        FR_NORM->lstm_ln_back1_##SUF(n, g, H, tc, dt);                                       \
    }                                                                                        \
    void fr_lstm_ln_back2_##SUF(ptrdiff_t n, T *g, ptrdiff_t H, const T *c_prev,             \
                                const T *dcl, T *dc)                                         \
    {                                                                                        \
        FR_NORM->lstm_ln_back2_##SUF(n, g, H, c_prev, dcl, dc);                              \
    }                                                                                        \
    void fr_zone_##SUF(T *cur, const T *prev, const uint8_t *keep, double k, ptrdiff_t n)    \
    {                                                                                        \
        FR_NORM->zone_##SUF(cur, prev, keep, k, n);                                          \
    }                                                                                        \
    void fr_zone_back_##SUF(T *dt, T *dd, const uint8_t *keep, double k, ptrdiff_t n)        \
    {                                                                                        \
        FR_NORM->zone_back_##SUF(dt, dd, keep, k, n);                                        \
    }                                                                                        \
    void fr_mul_##SUF(T *dst, const T *a, const T *m, ptrdiff_t n, int add)                  \
    {                                                                                        \
        FR_NORM->mul_##SUF(dst, a, m, n, add);                                               \
    }

FR_NORM_PUBLIC(f32, float)
FR_NORM_PUBLIC(f64, double)
