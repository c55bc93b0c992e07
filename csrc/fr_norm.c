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
    ATTR static T ln_fwd_##SUFFIX(T *v, ptrdiff_t n, double eps)                             \
    {                                                                                        \
        double mean = rsum_##SUFFIX(v, NULL, 0, n) / n;                                      \
        double var = rsum_##SUFFIX(v, v, mean, n) / n;                                       \
        T r = (T)(1.0 / sqrt(var + eps)), m = (T)mean;                                       \
        FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) v[j] = (v[j] - m) * r;                    \
        return r;                                                                            \
    }                                                                                        \
    ATTR static void ln_bwd_##SUFFIX(const T *d, const T *gain, T *xhat, T r, ptrdiff_t n,   \
                                     T *acc_g, T *acc_b)                                     \
    {                                                                                        \
        T m1 = (T)(rsum_##SUFFIX(d, gain, 0, n) / n);                                        \
        T m2 = (T)(rsum3_##SUFFIX(d, gain, xhat, n) / n);                                    \
        if (acc_g) {                                                                         \
            FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) acc_g[j] += d[j] * xhat[j];           \
        }                                                                                    \
        if (acc_b) {                                                                         \
            FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) acc_b[j] += d[j];                     \
        }                                                                                    \
        FR_IVDEP for (ptrdiff_t j = 0; j < n; j++)                                           \
            xhat[j] = r * (d[j] * gain[j] - m1 - xhat[j] * m2);                              \
    }                                                                                        \
    ATTR static void ln_gates_##SUFFIX(ptrdiff_t n, T *g, const T *xh, const T *hh,          \
                                       const T *ln, const T *bias, T *hh_out)                \
    {                                                                                        \
        const T *gx = ln, *bx = ln + n, *gh = ln + 2 * n, *bh = ln + 3 * n;                  \
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
    ATTR static void lstm_ln_fwd_##SUFFIX(ptrdiff_t H, T *g, const T *c_prev, T *c_cur,      \
                                          T *h_cur, T *tc, T *cn, T *rc, const T *gc,        \
                                          const T *bc, double eps)                           \
    {                                                                                        \
        FR_IVDEP for (ptrdiff_t j = 0; j < H; j++) {                                         \
            T c = g[H + j] * c_prev[j] + g[j] * g[2 * H + j];                                \
            c_cur[j] = c;                                                                    \
            cn[j] = c;                                                                       \
        }                                                                                    \
        *rc = ln_fwd_##SUFFIX(cn, H, eps);                                                   \
        FR_IVDEP for (ptrdiff_t j = 0; j < H; j++) tc[j] = cn[j] * gc[j] + bc[j];            \
    }                                                                                        \
    ATTR static void lstm_ln_out_##SUFFIX(ptrdiff_t H, const T *o, const T *tc, T *h_cur)    \
    {                                                                                        \
        FR_IVDEP for (ptrdiff_t j = 0; j < H; j++) h_cur[j] = o[j] * tc[j];                  \
    }                                                                                        \
    ATTR static void lstm_ln_bwd_##SUFFIX(ptrdiff_t H, T *g, const T *c_prev, T *tc, T *cn,  \
                                          T r, const T *dt, T *dc, const T *gc, T *acc_gc,   \
                                          T *acc_bc)                                         \
    {                                                                                        \
        T *go = g + 3 * H;                                                                   \
        FR_IVDEP for (ptrdiff_t j = 0; j < H; j++) {                                         \
            T o = go[j], t = tc[j], d = dt[j];                                               \
            go[j] = d * t * o * (1 - o);                                                     \
            tc[j] = d * o * (1 - t * t);                                                     \
        }                                                                                    \
        ln_bwd_##SUFFIX(tc, gc, cn, r, H, acc_gc, acc_bc);                                   \
        FR_IVDEP for (ptrdiff_t j = 0; j < H; j++) {                                         \
            T dct = dc[j] + cn[j], i = g[j], f = g[H + j], u = g[2 * H + j];                 \
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
    T (*ln_fwd_##SUF)(T *, ptrdiff_t, double);                                               \
    void (*ln_bwd_##SUF)(const T *, const T *, T *, T, ptrdiff_t, T *, T *);                 \
    void (*ln_gates_##SUF)(ptrdiff_t, T *, const T *, const T *, const T *, const T *, T *); \
    void (*lstm_ln_fwd_##SUF)(ptrdiff_t, T *, const T *, T *, T *, T *, T *, T *,            \
                              const T *, const T *, double);                                 \
    void (*lstm_ln_out_##SUF)(ptrdiff_t, const T *, const T *, T *);                         \
    void (*lstm_ln_bwd_##SUF)(ptrdiff_t, T *, const T *, T *, T *, T, const T *, T *,        \
                              const T *, T *, T *);                                          \
    void (*zone_##SUF)(T *, const T *, const uint8_t *, double, ptrdiff_t);                  \
    void (*zone_back_##SUF)(T *, T *, const uint8_t *, double, ptrdiff_t);                   \
    void (*mul_##SUF)(T *, const T *, const T *, ptrdiff_t, int);

typedef struct {
    FR_NORM_FIELDS(f32, float)
    FR_NORM_FIELDS(f64, double)
} fr_norm_table;

#define FR_NORM_ROW(S) ln_fwd_##S, ln_bwd_##S, ln_gates_##S, lstm_ln_fwd_##S, lstm_ln_out_##S, \
                       lstm_ln_bwd_##S, zone_##S, zone_back_##S, mul_##S
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
    T fr_ln_fwd_##SUF(T *v, ptrdiff_t n, double eps) { return FR_NORM->ln_fwd_##SUF(v, n, eps); } \
    void fr_ln_bwd_##SUF(const T *d, const T *gain, T *xhat, T r, ptrdiff_t n, T *acc_g,     \
                         T *acc_b)                                                           \
    {                                                                                        \
        FR_NORM->ln_bwd_##SUF(d, gain, xhat, r, n, acc_g, acc_b);                            \
    }                                                                                        \
    void fr_ln_gates_##SUF(ptrdiff_t n, T *g, const T *xh, const T *hh, const T *ln,         \
                           const T *bias, T *hh_out)                                         \
    {                                                                                        \
        FR_NORM->ln_gates_##SUF(n, g, xh, hh, ln, bias, hh_out);                             \
    }                                                                                        \
    void fr_lstm_ln_fwd_##SUF(ptrdiff_t H, T *g, const T *c_prev, T *c_cur, T *h_cur, T *tc, \
                              T *cn, T *rc, const T *gc, const T *bc, double eps)            \
    {                                                                                        \
        fr_sigmoid_##SUF(g, g, 2 * H);                                                       \
        fr_tanh_##SUF(g + 2 * H, g + 2 * H, H);                                              \
        fr_sigmoid_##SUF(g + 3 * H, g + 3 * H, H);                                           \
        FR_NORM->lstm_ln_fwd_##SUF(H, g, c_prev, c_cur, h_cur, tc, cn, rc, gc, bc, eps);     \
        fr_tanh_##SUF(tc, tc, H);                                                            \
        FR_NORM->lstm_ln_out_##SUF(H, g + 3 * H, tc, h_cur);                                 \
    }                                                                                        \
    void fr_lstm_ln_bwd_##SUF(ptrdiff_t H, T *g, const T *c_prev, T *tc, T *cn, T r,         \
                              const T *dt, T *dc, const T *gc, T *acc_gc, T *acc_bc)         \
    {                                                                                        \
        FR_NORM->lstm_ln_bwd_##SUF(H, g, c_prev, tc, cn, r, dt, dc, gc, acc_gc, acc_bc);     \
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
