/* Packed-panel products for the per-step recurrent GEMMs (see fr_simd.h).
 *
 * The recurrent weight is packed once per call into panels of FR_NR columns, each stored
 * k-major (K rows of FR_NR contiguous elements, zero-padded past the panel's width), so the
 * inner loop streams one panel with unit stride while each row of A is broadcast.  Unlike a
 * BLAS call per step, nothing is repacked per step and the caller chooses which panels (and
 * so which output columns) each thread computes.
 */
#include "fr_simd.h"

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define FR_X86_DISPATCH 1
#endif

/* float, portable */
#define FR_T float
#define FR_NR FR_NR_F32
#define FR_NAME(x) x##_f32_generic
#define FR_ATTR
#define FR_AVX2 0
#define FR_AVX512 0
#include "fr_gemm_impl.h"
#undef FR_T
#undef FR_NR
#undef FR_NAME
#undef FR_ATTR
#undef FR_AVX2
#undef FR_AVX512

/* double, portable */
#define FR_T double
#define FR_NR FR_NR_F64
#define FR_NAME(x) x##_f64_generic
#define FR_ATTR
#define FR_AVX2 0
#define FR_AVX512 0
#include "fr_gemm_impl.h"
#undef FR_T
#undef FR_NR
#undef FR_NAME
#undef FR_ATTR
#undef FR_AVX2

#ifdef FR_X86_DISPATCH
#define FR_ATTR __attribute__((target("avx2,fma")))
#define FR_AVX2 1
#define FR_AVX512 0

#define FR_T float
#define FR_NR FR_NR_F32
#define FR_NAME(x) x##_f32_avx2
#include "fr_gemm_impl.h"
#undef FR_T
#undef FR_NR
#undef FR_NAME

#define FR_T double
#define FR_NR FR_NR_F64
#define FR_NAME(x) x##_f64_avx2
#include "fr_gemm_impl.h"
#undef FR_T
#undef FR_NR
#undef FR_NAME

#undef FR_ATTR
#undef FR_AVX2
#undef FR_AVX512

#define FR_ATTR __attribute__((target("avx512f,avx2,fma")))
#define FR_AVX2 0
#define FR_AVX512 1

#define FR_T float
#define FR_NR FR_NR_F32
#define FR_NAME(x) x##_f32_avx512
#include "fr_gemm_impl.h"
#undef FR_T
#undef FR_NR
#undef FR_NAME

#define FR_T double
#define FR_NR FR_NR_F64
#define FR_NAME(x) x##_f64_avx512
#include "fr_gemm_impl.h"
#undef FR_T
#undef FR_NR
#undef FR_NAME

#undef FR_ATTR
#undef FR_AVX2
#undef FR_AVX512
#endif

#define FR_PACK(T, NR)                                                                       \
    ptrdiff_t i;                                                                             \
    for (ptrdiff_t k = 0; k < K; k++) {                                                      \
        T *dst = panel + k * NR;                                                             \
        for (i = 0; i < width; i++)                                                          \
            dst[i] = trans ? w[(col0 + i) * ldw + k] : w[k * ldw + col0 + i];                \
        for (; i < NR; i++) dst[i] = 0;                                                      \
    }

void fr_pack_panel_f32(const float *w, ptrdiff_t ldw, int trans, ptrdiff_t K, ptrdiff_t col0,
                       int width, float *panel)
{
    FR_PACK(float, FR_NR_F32)
}

void fr_pack_panel_f64(const double *w, ptrdiff_t ldw, int trans, ptrdiff_t K, ptrdiff_t col0,
                       int width, double *panel)
{
    FR_PACK(double, FR_NR_F64)
}

void fr_gemm_panels_f32(ptrdiff_t M, ptrdiff_t K, const float *A, ptrdiff_t lda,
                        const float *panels, ptrdiff_t npanels, const ptrdiff_t *col0,
                        const int *width, float *C, ptrdiff_t ldc, int accumulate)
{
#ifdef FR_X86_DISPATCH
    if (fr_simd_level() >= FR_SIMD_AVX512) {
        gemm_panels_f32_avx512(M, K, A, lda, panels, npanels, col0, width, C, ldc, accumulate);
        return;
    }
    if (fr_simd_level() >= FR_SIMD_AVX2) {
        gemm_panels_f32_avx2(M, K, A, lda, panels, npanels, col0, width, C, ldc, accumulate);
        return;
    }
#endif
    gemm_panels_f32_generic(M, K, A, lda, panels, npanels, col0, width, C, ldc, accumulate);
}

void fr_gemm_panels_f64(ptrdiff_t M, ptrdiff_t K, const double *A, ptrdiff_t lda,
                        const double *panels, ptrdiff_t npanels, const ptrdiff_t *col0,
                        const int *width, double *C, ptrdiff_t ldc, int accumulate)
{
#ifdef FR_X86_DISPATCH
    if (fr_simd_level() >= FR_SIMD_AVX512) {
        gemm_panels_f64_avx512(M, K, A, lda, panels, npanels, col0, width, C, ldc, accumulate);
        return;
    }
    if (fr_simd_level() >= FR_SIMD_AVX2) {
        gemm_panels_f64_avx2(M, K, A, lda, panels, npanels, col0, width, C, ldc, accumulate);
        return;
    }
#endif
    gemm_panels_f64_generic(M, K, A, lda, panels, npanels, col0, width, C, ldc, accumulate);
}

void fr_pack_panels_f32(const float *w, ptrdiff_t ldw, int trans, ptrdiff_t K, ptrdiff_t npanels,
                        const ptrdiff_t *col0, const int *width, float *panels)
{
    for (ptrdiff_t q = 0; q < npanels; q++)
        fr_pack_panel_f32(w, ldw, trans, K, col0[q], width[q], panels + q * K * FR_NR_F32);
}

void fr_pack_panels_f64(const double *w, ptrdiff_t ldw, int trans, ptrdiff_t K,
                        ptrdiff_t npanels, const ptrdiff_t *col0, const int *width,
                        double *panels)
{
    for (ptrdiff_t q = 0; q < npanels; q++)
        fr_pack_panel_f64(w, ldw, trans, K, col0[q], width[q], panels + q * K * FR_NR_F64);
}
