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

#ifdef __cplusplus
extern "C" {
#endif

/* y[i] = 1 / (1 + exp(-x[i])) */
void fr_sigmoid_f32(const float *x, float *y, ptrdiff_t n);
void fr_sigmoid_f64(const double *x, double *y, ptrdiff_t n);
/* y[i] = tanh(x[i]) */
void fr_tanh_f32(const float *x, float *y, ptrdiff_t n);
void fr_tanh_f64(const double *x, double *y, ptrdiff_t n);

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
