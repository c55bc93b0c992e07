/* LayerNorm over rows and the elementwise passes of the regularized recurrences
 * (src/fastrnn/engine/variants.pyx), compiled for each SIMD level and chosen at run time with
 * the level fr_simd.c uses.  See fr_simd.h for the contracts.
 *
 * Row sums run in double, in FR_LANES interleaved accumulators combined in a fixed order:
 * the loops vectorize without reassociation, and the result depends only on the data (not
 * on the thread count, nor on the SIMD level).
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

/* FR_DEFINE_NORM(SUFFIX, ATTR, T): the row functions for one type and target. */
#define FR_DEFINE_NORM(SUFFIX, ATTR, T)                                                      \
    /* sum_j (a[j] - shift) * (b ? b[j] - shift : 1) */                                      \
    ATTR static double rsum_##SUFFIX(const T *a, const T *b, double shift, ptrdiff_t n)      \
    {                                                                                        \
        double acc[FR_LANES] = {0}, tail = 0;                                                \
        ptrdiff_t j = 0;                                                                     \
        if (b) {                                                                             \
            for (; j + FR_LANES <= n; j += FR_LANES)                                         \
                for (int l = 0; l < FR_LANES; l++)                                           \
                    acc[l] += ((double)a[j + l] - shift) * ((double)b[j + l] - shift);       \
            for (; j < n; j++) tail += ((double)a[j] - shift) * ((double)b[j] - shift);      \
        } else {                                                                             \
            for (; j + FR_LANES <= n; j += FR_LANES)                                         \
                for (int l = 0; l < FR_LANES; l++) acc[l] += (double)a[j + l] - shift;       \
            for (; j < n; j++) tail += (double)a[j] - shift;                                 \
        }                                                                                    \
        for (int w = FR_LANES / 2; w > 0; w /= 2)                                            \
            for (int l = 0; l < w; l++) acc[l] += acc[l + w];                                \
        return acc[0] + tail;                                                                \
    }                                                                                        \
    /* sum_j a[j] * b[j] * c[j] */                                                           \
    ATTR static double rsum3_##SUFFIX(const T *a, const T *b, const T *c, ptrdiff_t n)       \
    {                                                                                        \
        double acc[FR_LANES] = {0}, tail = 0;                                                \
        ptrdiff_t j = 0;                                                                     \
        for (; j + FR_LANES <= n; j += FR_LANES)                                             \
            for (int l = 0; l < FR_LANES; l++)                                               \
                acc[l] += (double)a[j + l] * b[j + l] * c[j + l];                            \
        for (; j < n; j++) tail += (double)a[j] * b[j] * c[j];                               \
        for (int w = FR_LANES / 2; w > 0; w /= 2)                                            \
            for (int l = 0; l < w; l++) acc[l] += acc[l + w];                                \
        return acc[0] + tail;                                                                \
    }                                                                                        \
    ATTR static T ln_stats_##SUFFIX(const T *v, ptrdiff_t n, double eps, T *mean)          \
    {                                                                                        \
        double m = rsum_##SUFFIX(v, NULL, 0, n) / n;                                         \
        double var = rsum_##SUFFIX(v, v, m, n) / n;                                          \
        *mean = (T)m;                                                                        \
        return (T)(1.0 / sqrt(var + eps));                                                   \
    }                                                                                        \
    ATTR static void ln_apply_##SUFFIX(const T *v, T *out, ptrdiff_t n, T mean, T r)         \
    {                                                                                        \
        FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) out[j] = (v[j] - mean) * r;               \
    }                                                                                        \
    ATTR static void ln_means_##SUFFIX(const T *d, const T *gain, const T *xhat,             \
                                       ptrdiff_t n, T *m1, T *m2)                            \
    {                                                                                        \
        *m1 = (T)(rsum_##SUFFIX(d, gain, 0, n) / n);                                         \
        *m2 = (T)(rsum3_##SUFFIX(d, gain, xhat, n) / n);                                     \
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
    T (*ln_stats_##SUF)(const T *, ptrdiff_t, double, T *);                                  \
    void (*ln_apply_##SUF)(const T *, T *, ptrdiff_t, T, T);                                 \
    void (*ln_means_##SUF)(const T *, const T *, const T *, ptrdiff_t, T *, T *);            \
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

#define FR_NORM_ROW(S) ln_stats_##S, ln_apply_##S, ln_means_##S, ln_back_apply_##S,         \
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
    T fr_ln_stats_##SUF(const T *v, ptrdiff_t n, double eps, T *mean)                        \
    {                                                                                        \
        return FR_NORM->ln_stats_##SUF(v, n, eps, mean);                                     \
    }                                                                                        \
    void fr_ln_apply_##SUF(const T *v, T *out, ptrdiff_t n, T mean, T r)                     \
    {                                                                                        \
        FR_NORM->ln_apply_##SUF(v, out, n, mean, r);                                         \
    }                                                                                        \
    void fr_ln_means_##SUF(const T *d, const T *gain, const T *xhat, ptrdiff_t n, T *m1,     \
                           T *m2)                                                            \
    {                                                                                        \
        FR_NORM->ln_means_##SUF(d, gain, xhat, n, m1, m2);                                   \
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
