/* Vectorized activations with runtime dispatch; see fr_simd.h.
 *
 * The math is written as plain, branch-free C loops that the compiler vectorizes for each
 * target: exp by Cody-Waite range reduction (x = n ln2 + r, |r| <= ln2/2) and a Taylor
 * polynomial for exp(r), with 2^n built directly in the exponent bits; tanh by its odd Taylor
 * series for |x| < 0.4 and 1 - 2 / (exp(2|x|) + 1) above (at most a few ulp of cancellation).
 */
#include "fr_simd.h"

#include <math.h>
#include <stdint.h>

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

#if defined(__GNUC__)
#define FR_INLINE static inline __attribute__((always_inline))
#else
#define FR_INLINE static inline
#endif

/* ---- scalar building blocks (inlined into each target's loop) ------------------------- */

/* unsigned views: the exponent arithmetic below wraps (NaN inputs) instead of overflowing
 * a signed shift, which would be undefined behaviour */
typedef union { float f; uint32_t i; } fr_bits32;
typedef union { double f; uint64_t i; } fr_bits64;

FR_INLINE float fr_expf(float x)
{
    const float magic = 12582912.0f;                  /* 1.5 * 2^23: ulp 1 */
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    fr_bits32 t, scale;
    t.f = x * 1.44269504088896341f + magic;            /* round(x / ln2) + magic */
    float n = t.f - magic;
    float r = x - n * 0.693359375f;                    /* ln2 = 0.693359375 - 2.12194440e-4 */
    r = r + n * 2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    scale.i = (t.i - 0x4B400000u + 127u) << 23;        /* 2^n */
    return p * scale.f;
}

FR_INLINE double fr_exp(double x)
{
    const double magic = 6755399441055744.0;           /* 1.5 * 2^52: ulp 1 */
    x = x < -708.0 ? -708.0 : (x > 709.0 ? 709.0 : x);
    fr_bits64 t, scale;
    t.f = x * 1.4426950408889634 + magic;
    double n = t.f - magic;
    double r = x - n * 6.93147180369123816490e-01;     /* ln2 hi */
    r = r - n * 1.90821492927058770002e-10;            /* ln2 lo */
    double p = 1.0 / 6227020800.0;                     /* 1/13! */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    scale.i = (t.i - 0x4338000000000000ull + 1023u) << 52;
    return p * scale.f;
}

FR_INLINE float fr_sigmoidf(float x)
{
    float s = 1.0f / (1.0f + fr_expf(-x));
    s = x < -87.34f ? 0.0f : s;                        /* true value is below FLT_MIN */
    return x != x ? x : s;
}

FR_INLINE double fr_sigmoidd(double x)
{
    double s = 1.0 / (1.0 + fr_exp(-x));
    s = x < -708.4 ? 0.0 : s;                          /* true value is below DBL_MIN */
    return x != x ? x : s;
}

FR_INLINE float fr_tanhf(float x)
{
    float a = x < 0 ? -x : x;
    float big = 1.0f - 2.0f / (fr_expf(2.0f * a) + 1.0f);
    float z = x * x;                                   /* odd Taylor series to x^13 */
    float p = 0x1.d6d3d0p-9f;
    p = p * z - 0x1.226e36p-7f;
    p = p * z + 0x1.664f48p-6f;
    p = p * z - 0x1.ba1ba2p-5f;
    p = p * z + 0x1.111112p-3f;
    p = p * z - 0x1.555556p-2f;
    float small = a + a * (p * z);
    float t = a < 0.4f ? small : big;
    t = x < 0 ? -t : t;
    return x != x ? x : t;
}

FR_INLINE double fr_tanhd(double x)
{
    double a = x < 0 ? -x : x;
    double big = 1.0 - 2.0 / (fr_exp(2.0 * a) + 1.0);
    double z = x * x;                                  /* odd Taylor series to x^29 */
    double p = 0x1.5ef2da474e5b7p-19;
    p = p * z - 0x1.b0f72d3ee24e9p-18;
    p = p * z + 0x1.0b132d39a6050p-16;
    p = p * z - 0x1.497d8eea25259p-15;
    p = p * z + 0x1.967e18afcafadp-14;
    p = p * z - 0x1.f57d7734d1664p-13;
    p = p * z + 0x1.3558248036744p-11;
    p = p * z - 0x1.7da36452b75e3p-10;
    p = p * z + 0x1.d6d3d0e157de0p-9;
    p = p * z - 0x1.226e355e6c23dp-7;
    p = p * z + 0x1.664f4882c10fap-6;
    p = p * z - 0x1.ba1ba1ba1ba1cp-5;
    p = p * z + 0x1.1111111111111p-3;
    p = p * z - 0x1.5555555555555p-2;
    double small = a + a * (p * z);
    double t = a < 0.4 ? small : big;
    t = x < 0 ? -t : t;
    return x != x ? x : t;
}

/* ---- the array loops, instantiated per target ------------------------------------------ */

#define FR_DEFINE_LOOPS(SUFFIX, ATTR)                                                       \
    ATTR static void sigmoid_f32_##SUFFIX(const float *x, float *y, ptrdiff_t n)           \
    {                                                                                       \
        FR_IVDEP for (ptrdiff_t i = 0; i < n; i++) y[i] = fr_sigmoidf(x[i]);               \
    }                                                                                       \
    ATTR static void sigmoid_f64_##SUFFIX(const double *x, double *y, ptrdiff_t n)         \
    {                                                                                       \
        FR_IVDEP for (ptrdiff_t i = 0; i < n; i++) y[i] = fr_sigmoidd(x[i]);               \
    }                                                                                       \
    ATTR static void tanh_f32_##SUFFIX(const float *x, float *y, ptrdiff_t n)              \
    {                                                                                       \
        FR_IVDEP for (ptrdiff_t i = 0; i < n; i++) y[i] = fr_tanhf(x[i]);                  \
    }                                                                                       \
    ATTR static void tanh_f64_##SUFFIX(const double *x, double *y, ptrdiff_t n)            \
    {                                                                                       \
        FR_IVDEP for (ptrdiff_t i = 0; i < n; i++) y[i] = fr_tanhd(x[i]);                  \
    }

/* Fused LSTM step for n units of one row: g points at the i-block pre-activations of the
 * first unit (f, g, o blocks at g + H, g + 2H, g + 3H); activations are written back in place
 * (what backward needs), then c' = f*c + i*g, tc = tanh(c'), h' = o*tc.  With peepholes
 * (p not NULL: p_i, p_f, p_o at p, p + H, p + 2H) the i and f gates also see p*c and the o
 * gate p_o*c'. */
#define FR_DEFINE_LSTM(SUFFIX, ATTR, T, SIG, TANH)                                          \
    ATTR static void lstm_fwd_##SUFFIX(ptrdiff_t n, T *g, ptrdiff_t H, const T *c_prev,     \
                                       T *c_cur, T *h_cur, T *tc, const T *p)               \
    {                                                                                       \
        T *gi = g, *gf = g + H, *gg = g + 2 * H, *go = g + 3 * H;                           \
        if (p) {                                                                            \
            FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) {                                    \
                T cp = c_prev[j];                                                           \
                T i = SIG(gi[j] + p[j] * cp), f = SIG(gf[j] + p[H + j] * cp);               \
                T u = TANH(gg[j]);                                                          \
                T c = f * cp + i * u;                                                       \
                T o = SIG(go[j] + p[2 * H + j] * c);                                        \
                gi[j] = i; gf[j] = f; gg[j] = u; go[j] = o;                                 \
                T t = TANH(c);                                                              \
                c_cur[j] = c; tc[j] = t; h_cur[j] = o * t;                                  \
            }                                                                               \
            return;                                                                         \
        }                                                                                   \
        FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) {                                        \
            T i = SIG(gi[j]), f = SIG(gf[j]), c = TANH(gg[j]), o = SIG(go[j]);              \
            gi[j] = i; gf[j] = f; gg[j] = c; go[j] = o;                                     \
            c = f * c_prev[j] + i * c;                                                      \
            T t = TANH(c);                                                                  \
            c_cur[j] = c; tc[j] = t; h_cur[j] = o * t;                                      \
        }                                                                                   \
    }

/* GRU forward (reset_after) for n units of one row: g holds the input-side pre-activations
 * r|z|n (blocks H apart), hh the recurrent products W_hh h (same layout); b_hn may be NULL.
 * Writes the activations r, z, n back into g, W_hn h + b_hn into hn, and h'. */
#define FR_DEFINE_GRU_FWD(SUFFIX, ATTR, T, SIG, TANH)                                       \
    ATTR static void gru_fwd_##SUFFIX(ptrdiff_t n, T *g, const T *hh, ptrdiff_t H,          \
                                      const T *b_hn, const T *h_prev, T *hn, T *h_cur)      \
    {                                                                                       \
        T *gr = g, *gz = g + H, *gn = g + 2 * H;                                            \
        FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) {                                        \
            T r = SIG(gr[j] + hh[j]), z = SIG(gz[j] + hh[H + j]);                           \
            T a = hh[2 * H + j] + (b_hn ? b_hn[j] : 0);                                     \
            T c = TANH(gn[j] + r * a);                                                      \
            gr[j] = r; gz[j] = z; gn[j] = c; hn[j] = a;                                     \
            h_cur[j] = c + z * (h_prev[j] - c);                                             \
        }                                                                                   \
    }

/* LSTM backward for n units of one row at one step: the saved gates in g (as above)
 * become the pre-activation gradients; dc is carried back through the forget gate.
 * dh is the gradient reaching h from the next step; dy (or NULL) the output gradient. */
#define FR_LSTM_BWD_BODY(T, DY)                                                                \
    {                                                                                       \
        T i = gi[j], f = gf[j], c = gg[j], o = go[j], t = tc[j];                            \
        T d = dh[j] + DY;                                                                   \
        T dcj = dc[j] + d * o * (1 - t * t);                                                \
        gi[j] = dcj * c * i * (1 - i);                                                      \
        gf[j] = dcj * c_prev[j] * f * (1 - f);                                              \
        gg[j] = dcj * i * (1 - c * c);                                                      \
        go[j] = d * t * o * (1 - o);                                                        \
        dc[j] = dcj * f;                                                                    \
    }
/* With peepholes, c' also reaches the o gate (through p_o) and c the i and f gates. */
#define FR_LSTM_PEEP_BWD_BODY(T, DY)                                                           \
    {                                                                                       \
        T i = gi[j], f = gf[j], c = gg[j], o = go[j], t = tc[j];                            \
        T d = dh[j] + DY;                                                                   \
        T dao = d * t * o * (1 - o);                                                        \
        T dcj = dc[j] + d * o * (1 - t * t) + dao * p[2 * H + j];                           \
        T dai = dcj * c * i * (1 - i), daf = dcj * c_prev[j] * f * (1 - f);                 \
        gi[j] = dai;                                                                        \
        gf[j] = daf;                                                                        \
        gg[j] = dcj * i * (1 - c * c);                                                      \
        go[j] = dao;                                                                        \
        dc[j] = dcj * f + dai * p[j] + daf * p[H + j];                                      \
    }
#define FR_DEFINE_LSTM_BWD(SUFFIX, ATTR, T)                                                 \
    ATTR static void lstm_bwd_##SUFFIX(ptrdiff_t n, T *g, ptrdiff_t H, const T *c_prev,     \
                                       const T *tc, const T *dh, const T *dy, T *dc,        \
                                       const T *p)                                          \
    {                                                                                       \
        T *gi = g, *gf = g + H, *gg = g + 2 * H, *go = g + 3 * H;                           \
        if (p && dy) {                                                                      \
            FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) FR_LSTM_PEEP_BWD_BODY(T, dy[j])         \
        } else if (p) {                                                                     \
            FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) FR_LSTM_PEEP_BWD_BODY(T, 0)            \
        } else if (dy) {                                                                    \
            FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) FR_LSTM_BWD_BODY(T, dy[j])              \
        } else {                                                                            \
            FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) FR_LSTM_BWD_BODY(T, 0)                 \
        }                                                                                   \
    }

/* GRU backward for n units of one row at one step: g holds the saved r|z|n (blocks H apart)
 * and becomes their pre-activation gradients; dh_next = dh * z.  With reset_after (aux not
 * NULL: W_hn h + b_hn in, its gradient out) also dr and the hh-side gradients into w. */
#define FR_GRU_BWD_BODY(T, DY, RESET_AFTER)                                                 \
    {                                                                                       \
        T r = gr[j], z = gz[j], nn = gn[j];                                                 \
        T d = dh[j] + DY;                                                                   \
        T dn = d * (1 - z) * (1 - nn * nn);                                                 \
        gz[j] = d * (h_prev[j] - nn) * z * (1 - z);                                         \
        gn[j] = dn;                                                                         \
        dh_next[j] = d * z;                                                                 \
        if (RESET_AFTER) {                                                                  \
            T dr = dn * aux[j] * r * (1 - r);                                               \
            gr[j] = dr;                                                                     \
            aux[j] = dn * r;                                                                \
            w[j] = dr;                                                                      \
            w[H + j] = gz[j];                                                               \
            w[2 * H + j] = dn * r;                                                          \
        }                                                                                   \
    }
#define FR_DEFINE_GRU_BWD(SUFFIX, ATTR, T)                                                  \
    ATTR static void gru_bwd_##SUFFIX(ptrdiff_t n, T *g, ptrdiff_t H, const T *h_prev,      \
                                      const T *dh, const T *dy, T *dh_next, T *aux, T *w)   \
    {                                                                                       \
        T *gr = g, *gz = g + H, *gn = g + 2 * H;                                            \
        if (dy && aux) {                                                                    \
            FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) FR_GRU_BWD_BODY(T, dy[j], 1)         \
        } else if (dy) {                                                                    \
            FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) FR_GRU_BWD_BODY(T, dy[j], 0)         \
        } else if (aux) {                                                                   \
            FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) FR_GRU_BWD_BODY(T, 0, 1)             \
        } else {                                                                            \
            FR_IVDEP for (ptrdiff_t j = 0; j < n; j++) FR_GRU_BWD_BODY(T, 0, 0)             \
        }                                                                                   \
    }

/* Softmax cross-entropy of one row of logits z (C,) against the target distribution
 * (1 - eps) onehot(target) + eps / C: returns the loss and writes d = scale * (softmax(z) -
 * target distribution), its gradient times `scale`.  The max, the sum of exponentials and
 * the sum of logits are kept in FR_LANES partial sums (a fixed order, so vectorized and
 * deterministic); NaN logits give a NaN loss. */
#define FR_LANES 16
#define FR_DEFINE_XENT(SUFFIX, ATTR, T, EXP, LOG)                                           \
    ATTR static T xent_##SUFFIX(const T *z, ptrdiff_t C, ptrdiff_t target, T eps, T scale,  \
                                T *d)                                                       \
    {                                                                                       \
        T mx[FR_LANES], se[FR_LANES], sz[FR_LANES];                                         \
        ptrdiff_t j, l, C0 = C - C % FR_LANES;                                              \
        T m = z[0], s = 0, zs = 0;                                                          \
        for (l = 0; l < FR_LANES; l++) { mx[l] = z[0]; se[l] = 0; sz[l] = 0; }              \
        for (j = 0; j < C0; j += FR_LANES)                                                  \
            for (l = 0; l < FR_LANES; l++) mx[l] = z[j + l] > mx[l] ? z[j + l] : mx[l];     \
        for (l = 0; l < FR_LANES; l++) m = mx[l] > m ? mx[l] : m;                           \
        for (j = C0; j < C; j++) m = z[j] > m ? z[j] : m;                                   \
        for (j = 0; j < C0; j += FR_LANES)                                                  \
            for (l = 0; l < FR_LANES; l++) {                                                \
                T e = EXP(z[j + l] - m);                                                    \
                d[j + l] = e;                                                               \
                se[l] += e;                                                                 \
                sz[l] += z[j + l];                                                          \
            }                                                                               \
        for (l = 0; l < FR_LANES; l++) { s += se[l]; zs += sz[l]; }                         \
        for (j = C0; j < C; j++) { T e = EXP(z[j] - m); d[j] = e; s += e; zs += z[j]; }     \
        T inv = scale / s, off = scale * eps / (T)C;                                        \
        FR_IVDEP for (j = 0; j < C; j++) d[j] = d[j] * inv - off;                           \
        d[target] -= scale * (1 - eps);                                                     \
        return m + LOG(s) - (1 - eps) * z[target] - eps / (T)C * zs;                        \
    }

#define FR_DEFINE_ALL(SUFFIX, ATTR)                                                         \
    FR_DEFINE_LOOPS(SUFFIX, ATTR)                                                           \
    FR_DEFINE_LSTM(f32_##SUFFIX, ATTR, float, fr_sigmoidf, fr_tanhf)                        \
    FR_DEFINE_LSTM(f64_##SUFFIX, ATTR, double, fr_sigmoidd, fr_tanhd)                       \
    FR_DEFINE_GRU_FWD(f32_##SUFFIX, ATTR, float, fr_sigmoidf, fr_tanhf)                     \
    FR_DEFINE_GRU_FWD(f64_##SUFFIX, ATTR, double, fr_sigmoidd, fr_tanhd)                    \
    FR_DEFINE_LSTM_BWD(f32_##SUFFIX, ATTR, float)                                           \
    FR_DEFINE_LSTM_BWD(f64_##SUFFIX, ATTR, double)                                          \
    FR_DEFINE_GRU_BWD(f32_##SUFFIX, ATTR, float)                                            \
    FR_DEFINE_GRU_BWD(f64_##SUFFIX, ATTR, double)                                           \
    FR_DEFINE_XENT(f32_##SUFFIX, ATTR, float, fr_expf, logf)                                \
    FR_DEFINE_XENT(f64_##SUFFIX, ATTR, double, fr_exp, log)

FR_DEFINE_ALL(generic, )
#ifdef FR_X86_DISPATCH
FR_DEFINE_ALL(avx2, __attribute__((target("avx2,fma"))))
FR_DEFINE_ALL(avx512, __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma,prefer-vector-width=512"))))
#endif

/* ---- AVX-512 float32 with a reciprocal instead of a division ---------------------------
 * The compiled loops above divide (vdivps) once per sigmoid and tanh: five divisions a
 * unit in the LSTM step, which bound its speed.  Here the same formulas are written with
 * intrinsics and 1/d is rcp14(d) refined by one Newton step (relative error about 2^-28,
 * far below float's 2^-24), on masked vectors so every element takes the same path. */
#ifdef FR_X86_DISPATCH
#include <immintrin.h>
#define FR_T512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")))

FR_T512 FR_INLINE __m512 fr_rcp512(__m512 d)
{
    __m512 r = _mm512_rcp14_ps(d);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
}

FR_T512 FR_INLINE __m512 fr_exp512(__m512 x)
{
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    __m512 t = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), magic);
    __m512 n = _mm512_sub_ps(t, magic);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512i e = _mm512_slli_epi32(
        _mm512_add_epi32(_mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(0x4B400000)),
                         _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

FR_T512 FR_INLINE __m512 fr_sigmoid512(__m512 x)
{
    __m512 s = fr_rcp512(_mm512_add_ps(_mm512_set1_ps(1.0f), fr_exp512(_mm512_sub_ps(
        _mm512_setzero_ps(), x))));
    s = _mm512_mask_mov_ps(s, _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.34f), _CMP_LT_OQ),
                           _mm512_setzero_ps());
    return _mm512_mask_mov_ps(s, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}

FR_T512 FR_INLINE __m512 fr_tanh512(__m512 x)
{
    const __m512 sign = _mm512_set1_ps(-0.0f);
    __m512 a = _mm512_andnot_ps(sign, x);
    __m512 big = _mm512_fnmadd_ps(_mm512_set1_ps(2.0f),
                                  fr_rcp512(_mm512_add_ps(fr_exp512(_mm512_add_ps(a, a)),
                                                          _mm512_set1_ps(1.0f))),
                                  _mm512_set1_ps(1.0f));
    __m512 z = _mm512_mul_ps(x, x);
    __m512 p = _mm512_set1_ps(0x1.d6d3d0p-9f);
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-0x1.226e36p-7f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(0x1.664f48p-6f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-0x1.ba1ba2p-5f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(0x1.111112p-3f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-0x1.555556p-2f));
    __m512 small = _mm512_fmadd_ps(a, _mm512_mul_ps(p, z), a);
    __m512 t = _mm512_mask_mov_ps(big, _mm512_cmp_ps_mask(a, _mm512_set1_ps(0.4f), _CMP_LT_OQ),
                                  small);
    t = _mm512_or_ps(t, _mm512_and_ps(x, sign));
    return _mm512_mask_mov_ps(t, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}

FR_T512 FR_INLINE __mmask16 fr_mask512(ptrdiff_t left)
{
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
}

FR_T512 static void sigmoid_f32_avx512r(const float *x, float *y, ptrdiff_t n)
{
    for (ptrdiff_t j = 0; j < n; j += 16) {
        __mmask16 m = fr_mask512(n - j);
        _mm512_mask_storeu_ps(y + j, m, fr_sigmoid512(_mm512_maskz_loadu_ps(m, x + j)));
    }
}

FR_T512 static void tanh_f32_avx512r(const float *x, float *y, ptrdiff_t n)
{
    for (ptrdiff_t j = 0; j < n; j += 16) {
        __mmask16 m = fr_mask512(n - j);
        _mm512_mask_storeu_ps(y + j, m, fr_tanh512(_mm512_maskz_loadu_ps(m, x + j)));
    }
}

FR_T512 static void lstm_fwd_f32_avx512r(ptrdiff_t n, float *g, ptrdiff_t H, const float *c_prev,
                                         float *c_cur, float *h_cur, float *tc, const float *p)
{
    float *gi = g, *gf = g + H, *gg = g + 2 * H, *go = g + 3 * H;
    for (ptrdiff_t j = 0; j < n; j += 16) {
        __mmask16 m = fr_mask512(n - j);
        __m512 cp = _mm512_maskz_loadu_ps(m, c_prev + j);
        __m512 ai = _mm512_maskz_loadu_ps(m, gi + j), af = _mm512_maskz_loadu_ps(m, gf + j);
        __m512 ao = _mm512_maskz_loadu_ps(m, go + j);
        if (p) {
            ai = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p + j), cp, ai);
            af = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p + H + j), cp, af);
        }
        __m512 i = fr_sigmoid512(ai);
        __m512 f = fr_sigmoid512(af);
        __m512 c = fr_tanh512(_mm512_maskz_loadu_ps(m, gg + j));
        _mm512_mask_storeu_ps(gi + j, m, i);
        _mm512_mask_storeu_ps(gf + j, m, f);
        _mm512_mask_storeu_ps(gg + j, m, c);
        c = _mm512_fmadd_ps(f, cp, _mm512_mul_ps(i, c));
        if (p)
            ao = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p + 2 * H + j), c, ao);
        __m512 o = fr_sigmoid512(ao);
        _mm512_mask_storeu_ps(go + j, m, o);
        __m512 t = fr_tanh512(c);
        _mm512_mask_storeu_ps(c_cur + j, m, c);
        _mm512_mask_storeu_ps(tc + j, m, t);
        _mm512_mask_storeu_ps(h_cur + j, m, _mm512_mul_ps(o, t));
    }
}

FR_T512 static void gru_fwd_f32_avx512r(ptrdiff_t n, float *g, const float *hh, ptrdiff_t H,
                                        const float *b_hn, const float *h_prev, float *hn,
                                        float *h_cur)
{
    float *gr = g, *gz = g + H, *gn = g + 2 * H;
    for (ptrdiff_t j = 0; j < n; j += 16) {
        __mmask16 m = fr_mask512(n - j);
        __m512 r = fr_sigmoid512(_mm512_add_ps(_mm512_maskz_loadu_ps(m, gr + j),
                                               _mm512_maskz_loadu_ps(m, hh + j)));
        __m512 z = fr_sigmoid512(_mm512_add_ps(_mm512_maskz_loadu_ps(m, gz + j),
                                               _mm512_maskz_loadu_ps(m, hh + H + j)));
        __m512 a = _mm512_maskz_loadu_ps(m, hh + 2 * H + j);
        if (b_hn)
            a = _mm512_add_ps(a, _mm512_maskz_loadu_ps(m, b_hn + j));
        __m512 c = fr_tanh512(_mm512_fmadd_ps(r, a, _mm512_maskz_loadu_ps(m, gn + j)));
        _mm512_mask_storeu_ps(gr + j, m, r);
        _mm512_mask_storeu_ps(gz + j, m, z);
        _mm512_mask_storeu_ps(gn + j, m, c);
        _mm512_mask_storeu_ps(hn + j, m, a);
        __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, h_prev + j), c);
        _mm512_mask_storeu_ps(h_cur + j, m, _mm512_fmadd_ps(z, d, c));
    }
}
#endif

/* ---- dispatch ------------------------------------------------------------------------- */

typedef struct {
    void (*sigmoid_f32)(const float *, float *, ptrdiff_t);
    void (*sigmoid_f64)(const double *, double *, ptrdiff_t);
    void (*tanh_f32)(const float *, float *, ptrdiff_t);
    void (*tanh_f64)(const double *, double *, ptrdiff_t);
    void (*lstm_fwd_f32)(ptrdiff_t, float *, ptrdiff_t, const float *, float *, float *, float *,
                         const float *);
    void (*lstm_fwd_f64)(ptrdiff_t, double *, ptrdiff_t, const double *, double *, double *,
                         double *, const double *);
    void (*gru_fwd_f32)(ptrdiff_t, float *, const float *, ptrdiff_t, const float *,
                        const float *, float *, float *);
    void (*gru_fwd_f64)(ptrdiff_t, double *, const double *, ptrdiff_t, const double *,
                        const double *, double *, double *);
    void (*lstm_bwd_f32)(ptrdiff_t, float *, ptrdiff_t, const float *, const float *,
                         const float *, const float *, float *, const float *);
    void (*lstm_bwd_f64)(ptrdiff_t, double *, ptrdiff_t, const double *, const double *,
                         const double *, const double *, double *, const double *);
    void (*gru_bwd_f32)(ptrdiff_t, float *, ptrdiff_t, const float *, const float *,
                        const float *, float *, float *, float *);
    void (*gru_bwd_f64)(ptrdiff_t, double *, ptrdiff_t, const double *, const double *,
                        const double *, double *, double *, double *);
    float (*xent_f32)(const float *, ptrdiff_t, ptrdiff_t, float, float, float *);
    double (*xent_f64)(const double *, ptrdiff_t, ptrdiff_t, double, double, double *);
} fr_table;

#define FR_TABLE(SUFFIX) {sigmoid_f32_##SUFFIX, sigmoid_f64_##SUFFIX, tanh_f32_##SUFFIX, \
                          tanh_f64_##SUFFIX, lstm_fwd_f32_##SUFFIX, lstm_fwd_f64_##SUFFIX, \
                          gru_fwd_f32_##SUFFIX, gru_fwd_f64_##SUFFIX, \
                          lstm_bwd_f32_##SUFFIX, lstm_bwd_f64_##SUFFIX, gru_bwd_f32_##SUFFIX, \
                          gru_bwd_f64_##SUFFIX, xent_f32_##SUFFIX, xent_f64_##SUFFIX}

static const fr_table fr_tables[] = {
    FR_TABLE(generic),
#ifdef FR_X86_DISPATCH
    FR_TABLE(avx2),
    /* AVX-512: the float32 activations and LSTM step with intrinsics (see above) */
    {sigmoid_f32_avx512r, sigmoid_f64_avx512, tanh_f32_avx512r, tanh_f64_avx512,
     lstm_fwd_f32_avx512r, lstm_fwd_f64_avx512, gru_fwd_f32_avx512r, gru_fwd_f64_avx512,
     lstm_bwd_f32_avx512, lstm_bwd_f64_avx512, gru_bwd_f32_avx512, gru_bwd_f64_avx512,
     xent_f32_avx512, xent_f64_avx512},
#endif
};

static int fr_level = -1;                    /* -1: not chosen yet */

int fr_simd_supported(void)
{
#ifdef FR_X86_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"))
        return FR_SIMD_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return FR_SIMD_AVX2;
#endif
    return FR_SIMD_GENERIC;
}

int fr_simd_select(int level)
{
    int best = fr_simd_supported();
    if (level < FR_SIMD_GENERIC) level = FR_SIMD_GENERIC;
    fr_level = level < best ? level : best;
    return fr_level;
}

int fr_simd_level(void)
{
    if (fr_level < 0) fr_simd_select(FR_SIMD_AVX512);
    return fr_level;
}

const char *fr_simd_name(int level)
{
    switch (level) {
    case FR_SIMD_AVX512: return "avx512";
    case FR_SIMD_AVX2: return "avx2";
    default: return "generic";
    }
}

#define FR_CURRENT (&fr_tables[fr_simd_level()])

void fr_sigmoid_f32(const float *x, float *y, ptrdiff_t n) { FR_CURRENT->sigmoid_f32(x, y, n); }
void fr_sigmoid_f64(const double *x, double *y, ptrdiff_t n) { FR_CURRENT->sigmoid_f64(x, y, n); }
void fr_tanh_f32(const float *x, float *y, ptrdiff_t n) { FR_CURRENT->tanh_f32(x, y, n); }
void fr_tanh_f64(const double *x, double *y, ptrdiff_t n) { FR_CURRENT->tanh_f64(x, y, n); }

void fr_lstm_fwd_f32(ptrdiff_t n, float *g, ptrdiff_t H, const float *c_prev, float *c_cur,
                     float *h_cur, float *tc, const float *p)
{
    FR_CURRENT->lstm_fwd_f32(n, g, H, c_prev, c_cur, h_cur, tc, p);
}

void fr_lstm_fwd_f64(ptrdiff_t n, double *g, ptrdiff_t H, const double *c_prev, double *c_cur,
                     double *h_cur, double *tc, const double *p)
{
    FR_CURRENT->lstm_fwd_f64(n, g, H, c_prev, c_cur, h_cur, tc, p);
}

void fr_lstm_bwd_f32(ptrdiff_t n, float *g, ptrdiff_t H, const float *c_prev, const float *tc,
                     const float *dh, const float *dy, float *dc, const float *p)
{
    FR_CURRENT->lstm_bwd_f32(n, g, H, c_prev, tc, dh, dy, dc, p);
}

void fr_lstm_bwd_f64(ptrdiff_t n, double *g, ptrdiff_t H, const double *c_prev,
                     const double *tc, const double *dh, const double *dy, double *dc,
                     const double *p)
{
    FR_CURRENT->lstm_bwd_f64(n, g, H, c_prev, tc, dh, dy, dc, p);
}

void fr_gru_bwd_f32(ptrdiff_t n, float *g, ptrdiff_t H, const float *h_prev, const float *dh,
                    const float *dy, float *dh_next, float *aux, float *w)
{
    FR_CURRENT->gru_bwd_f32(n, g, H, h_prev, dh, dy, dh_next, aux, w);
}

void fr_gru_bwd_f64(ptrdiff_t n, double *g, ptrdiff_t H, const double *h_prev,
                    const double *dh, const double *dy, double *dh_next, double *aux,
                    double *w)
{
    FR_CURRENT->gru_bwd_f64(n, g, H, h_prev, dh, dy, dh_next, aux, w);
}

void fr_gru_fwd_f32(ptrdiff_t n, float *g, const float *hh, ptrdiff_t H, const float *b_hn,
                    const float *h_prev, float *hn, float *h_cur)
{
    FR_CURRENT->gru_fwd_f32(n, g, hh, H, b_hn, h_prev, hn, h_cur);
}

void fr_gru_fwd_f64(ptrdiff_t n, double *g, const double *hh, ptrdiff_t H, const double *b_hn,
                    const double *h_prev, double *hn, double *h_cur)
{
    FR_CURRENT->gru_fwd_f64(n, g, hh, H, b_hn, h_prev, hn, h_cur);
}

float fr_xent_f32(const float *z, ptrdiff_t C, ptrdiff_t target, float eps, float scale,
                  float *d)
{
    return FR_CURRENT->xent_f32(z, C, target, eps, scale, d);
}

double fr_xent_f64(const double *z, ptrdiff_t C, ptrdiff_t target, double eps, double scale,
                   double *d)
{
    return FR_CURRENT->xent_f64(z, C, target, eps, scale, d);
}
