/* Packed-panel micro-kernels, instantiated by fr_gemm.c once per (precision, target).
 *
 * Before including, define:
 *   FR_T        element type (float, double)
 *   FR_NR       panel width in elements (16 floats / 8 doubles: two 256-bit vectors)
 *   FR_NAME(x)  name mangling for this instance
 *   FR_ATTR     function attributes (target) for this instance
 *   FR_AVX2     1 to use AVX2+FMA intrinsics, 0 for portable C
 *   FR_AVX512   1 to use AVX-512F intrinsics (FR_AVX2 is then ignored)
 *
 * Semantics of FR_NAME(gemm_panels): for each panel q, C[:, col0[q] : col0[q] + width[q]]
 * = (or +=, when accumulate) A (M, K) @ panel_q (K, width[q]).  Every output element is a
 * dot product summed in k order 0..K-1, whatever M, the blocking or the thread split.
 */

#define FR_MR_MAX 6
#define FR_NP_MAX 4

#if FR_AVX512
/* AVX-512: a panel row (16 floats / 8 doubles) is one 512-bit vector, so a block of up to
 * 6 rows x 4 panels keeps 24 accumulators in registers (of 32), and each k step does 4 loads
 * and up to 6 broadcasts for 24 FMAs.  Each output element is still one FMA chain in k
 * order: the results are bit-identical to the AVX2 and portable kernels. */
#if FR_NR == 16
typedef __m512 FR_NAME(vec);
#define FR_VZERO() _mm512_setzero_ps()
#define FR_VLOAD(p) _mm512_loadu_ps(p)
#define FR_VSTORE(p, v) _mm512_storeu_ps((p), (v))
#define FR_VBCAST(p) _mm512_set1_ps(*(p))
#define FR_VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define FR_VADD(a, b) _mm512_add_ps((a), (b))
#else
typedef __m512d FR_NAME(vec);
#define FR_VZERO() _mm512_setzero_pd()
#define FR_VLOAD(p) _mm512_loadu_pd(p)
#define FR_VSTORE(p, v) _mm512_storeu_pd((p), (v))
#define FR_VBCAST(p) _mm512_set1_pd(*(p))
#define FR_VFMA(a, b, c) _mm512_fmadd_pd((a), (b), (c))
#define FR_VADD(a, b) _mm512_add_pd((a), (b))
#endif

FR_ATTR static inline __attribute__((always_inline)) void
FR_NAME(store)(FR_NAME(vec) v, FR_T *c, int width, int accumulate)
{
    if (width == FR_NR) {
        if (accumulate)
            v = FR_VADD(FR_VLOAD(c), v);
        FR_VSTORE(c, v);
    } else {
        FR_T tmp[FR_NR];
        FR_VSTORE(tmp, v);
        for (int j = 0; j < width; j++) c[j] = accumulate ? c[j] + tmp[j] : tmp[j];
    }
}

#define FR_ROWS(X, p) X(0, p) X(1, p) X(2, p) X(3, p) X(4, p) X(5, p)
#define FR_ALL(X) FR_ROWS(X, 0) FR_ROWS(X, 1) FR_ROWS(X, 2) FR_ROWS(X, 3)
#define FR_DECL(r, p) FR_NAME(vec) c##r##p = FR_VZERO();
#define FR_FMA(r, p)                                                                        \
    if (r < MR && p < NP) c##r##p = FR_VFMA(a, w##p, c##r##p);
#define FR_ROWSTEP(r)                                                                       \
    if (r < MR) {                                                                           \
        FR_NAME(vec) a = FR_VBCAST(A + r * lda + k);                                        \
        FR_FMA(r, 0) FR_FMA(r, 1) FR_FMA(r, 2) FR_FMA(r, 3)                                 \
    }
#define FR_STORE(r, p)                                                                      \
    if (r < MR && p < NP) FR_NAME(store)(c##r##p, Cq[p] + r * ldc, width[p], accumulate);
#define FR_LOADW(p)                                                                         \
    if (p < NP) w##p = FR_VLOAD(P + p * pstride + k * FR_NR);

FR_ATTR static inline __attribute__((always_inline)) void
FR_NAME(block)(const int MR, const int NP, ptrdiff_t K, const FR_T *A, ptrdiff_t lda,
               const FR_T *P, ptrdiff_t pstride, FR_T *const *Cq, const int *width,
               ptrdiff_t ldc, int accumulate)
{
    FR_ALL(FR_DECL)
    FR_NAME(vec) w0 = FR_VZERO(), w1 = w0, w2 = w0, w3 = w0;
    for (ptrdiff_t k = 0; k < K; k++) {
        FR_LOADW(0) FR_LOADW(1) FR_LOADW(2) FR_LOADW(3)
        FR_ROWSTEP(0) FR_ROWSTEP(1) FR_ROWSTEP(2) FR_ROWSTEP(3) FR_ROWSTEP(4) FR_ROWSTEP(5)
    }
    FR_ALL(FR_STORE)
}
#undef FR_ROWS
#undef FR_ALL
#undef FR_DECL
#undef FR_FMA
#undef FR_STORE
#undef FR_LOADW
#undef FR_ROWSTEP
#undef FR_VZERO
#undef FR_VLOAD
#undef FR_VSTORE
#undef FR_VBCAST
#undef FR_VFMA
#undef FR_VADD

/* Blocks of up to 6 rows x 4 panels over the whole (M, panels) grid. */
FR_ATTR static void
FR_NAME(gemm_panels)(ptrdiff_t M, ptrdiff_t K, const FR_T *A, ptrdiff_t lda, const FR_T *panels,
                     ptrdiff_t npanels, const ptrdiff_t *col0, const int *width, FR_T *C,
                     ptrdiff_t ldc, int accumulate)
{
    const ptrdiff_t pstride = K * FR_NR;
    FR_T *Cq[FR_NP_MAX];
    for (ptrdiff_t i = 0; i < M; i += 6) {
        const int mr = M - i >= 6 ? 6 : (int)(M - i);
        const FR_T *Ai = A + i * lda;
        for (ptrdiff_t q = 0; q < npanels; q += 4) {
            const int np = npanels - q >= 4 ? 4 : (int)(npanels - q);
            for (int p = 0; p < np; p++) Cq[p] = C + i * ldc + col0[q + p];
            const FR_T *P = panels + q * pstride;
#define FR_CASE(MR, NP)                                                                     \
    case MR * 8 + NP:                                                                       \
        FR_NAME(block)(MR, NP, K, Ai, lda, P, pstride, Cq, width + q, ldc, accumulate);     \
        break;
#define FR_CASES(MR) FR_CASE(MR, 1) FR_CASE(MR, 2) FR_CASE(MR, 3) FR_CASE(MR, 4)
            switch (mr * 8 + np) {
                FR_CASES(1) FR_CASES(2) FR_CASES(3) FR_CASES(4) FR_CASES(5) FR_CASES(6)
                default: break;
            }
#undef FR_CASES
#undef FR_CASE
        }
    }
}

#elif FR_AVX2
#if FR_NR == 16
typedef __m256 FR_NAME(vec);
#define FR_VZERO() _mm256_setzero_ps()
#define FR_VLOAD(p) _mm256_loadu_ps(p)
#define FR_VSTORE(p, v) _mm256_storeu_ps((p), (v))
#define FR_VBCAST(p) _mm256_broadcast_ss(p)
#define FR_VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define FR_VADD(a, b) _mm256_add_ps((a), (b))
#define FR_VW 8
#else
typedef __m256d FR_NAME(vec);
#define FR_VZERO() _mm256_setzero_pd()
#define FR_VLOAD(p) _mm256_loadu_pd(p)
#define FR_VSTORE(p, v) _mm256_storeu_pd((p), (v))
#define FR_VBCAST(p) _mm256_broadcast_sd(p)
#define FR_VFMA(a, b, c) _mm256_fmadd_pd((a), (b), (c))
#define FR_VADD(a, b) _mm256_add_pd((a), (b))
#define FR_VW 4
#endif

FR_ATTR static inline __attribute__((always_inline)) void
FR_NAME(store)(FR_NAME(vec) v0, FR_NAME(vec) v1, FR_T *c, int width, int accumulate)
{
    if (width == FR_NR) {
        if (accumulate) {
            v0 = FR_VADD(FR_VLOAD(c), v0);
            v1 = FR_VADD(FR_VLOAD(c + FR_VW), v1);
        }
        FR_VSTORE(c, v0);
        FR_VSTORE(c + FR_VW, v1);
    } else {
        FR_T tmp[FR_NR];
        FR_VSTORE(tmp, v0);
        FR_VSTORE(tmp + FR_VW, v1);
        for (int j = 0; j < width; j++) c[j] = accumulate ? c[j] + tmp[j] : tmp[j];
    }
}

/* One block of MR rows x NP panels (MR <= 6, NP <= 4, MR * NP <= 6): the accumulators are
 * named variables (two vectors per row and panel) so that they live in registers; MR and NP
 * are constants at every call, so the unused ones are compiled away. */
#define FR_ROWS(X, p) X(0, p) X(1, p) X(2, p) X(3, p) X(4, p) X(5, p)
#define FR_ALL(X) FR_ROWS(X, 0) FR_ROWS(X, 1) FR_ROWS(X, 2) FR_ROWS(X, 3)
#define FR_DECL(r, p) FR_NAME(vec) c##r##p##a = FR_VZERO(), c##r##p##b = FR_VZERO();
#define FR_FMA(r, p)                                                                        \
    if (r < MR && p < NP) {                                                                 \
        c##r##p##a = FR_VFMA(a, w##p##a, c##r##p##a);                                       \
        c##r##p##b = FR_VFMA(a, w##p##b, c##r##p##b);                                       \
    }
#define FR_ROWSTEP(r)                                                                       \
    if (r < MR) {                                                                           \
        FR_NAME(vec) a = FR_VBCAST(A + r * lda + k);                                        \
        FR_FMA(r, 0) FR_FMA(r, 1) FR_FMA(r, 2) FR_FMA(r, 3)                                 \
    }
#define FR_STORE(r, p)                                                                      \
    if (r < MR && p < NP)                                                                   \
        FR_NAME(store)(c##r##p##a, c##r##p##b, Cq[p] + r * ldc, width[p], accumulate);
#define FR_LOADW(p)                                                                         \
    if (p < NP) {                                                                           \
        w##p##a = FR_VLOAD(P + p * pstride + k * FR_NR);                                    \
        w##p##b = FR_VLOAD(P + p * pstride + k * FR_NR + FR_VW);                            \
    }

FR_ATTR static inline __attribute__((always_inline)) void
FR_NAME(block)(const int MR, const int NP, ptrdiff_t K, const FR_T *A, ptrdiff_t lda,
               const FR_T *P, ptrdiff_t pstride, FR_T *const *Cq, const int *width,
               ptrdiff_t ldc, int accumulate)
{
    FR_ALL(FR_DECL)
    FR_NAME(vec) w0a = FR_VZERO(), w0b = w0a, w1a = w0a, w1b = w0a, w2a = w0a, w2b = w0a,
                 w3a = w0a, w3b = w0a;
    for (ptrdiff_t k = 0; k < K; k++) {
        FR_LOADW(0) FR_LOADW(1) FR_LOADW(2) FR_LOADW(3)
        FR_ROWSTEP(0) FR_ROWSTEP(1) FR_ROWSTEP(2) FR_ROWSTEP(3) FR_ROWSTEP(4) FR_ROWSTEP(5)
    }
    FR_ALL(FR_STORE)
}
#undef FR_ROWS
#undef FR_ALL
#undef FR_DECL
#undef FR_FMA
#undef FR_STORE
#undef FR_LOADW
#undef FR_ROWSTEP
#undef FR_VZERO
#undef FR_VLOAD
#undef FR_VSTORE
#undef FR_VBCAST
#undef FR_VFMA
#undef FR_VADD
#undef FR_VW

#else  /* portable C */

FR_ATTR static inline void
FR_NAME(block)(const int MR, const int NP, ptrdiff_t K, const FR_T *A, ptrdiff_t lda,
               const FR_T *P, ptrdiff_t pstride, FR_T *const *Cq, const int *width,
               ptrdiff_t ldc, int accumulate)
{
    for (int p = 0; p < NP; p++) {
        for (int r = 0; r < MR; r++) {
            FR_T acc[FR_NR];
            const FR_T *a = A + r * lda;
            const FR_T *w = P + p * pstride;
            for (int j = 0; j < FR_NR; j++) acc[j] = 0;
            for (ptrdiff_t k = 0; k < K; k++)
                for (int j = 0; j < FR_NR; j++) acc[j] += a[k] * w[k * FR_NR + j];
            FR_T *c = Cq[p] + r * ldc;
            for (int j = 0; j < width[p]; j++)
                c[j] = accumulate ? c[j] + acc[j] : acc[j];
        }
    }
}
#endif

#if !FR_AVX512
/* All panels for rows [0, M): row blocks of 6 (one panel at a time), then the remaining
 * rows with as many panels per block as the registers allow. */
FR_ATTR static void
FR_NAME(gemm_panels)(ptrdiff_t M, ptrdiff_t K, const FR_T *A, ptrdiff_t lda, const FR_T *panels,
                     ptrdiff_t npanels, const ptrdiff_t *col0, const int *width, FR_T *C,
                     ptrdiff_t ldc, int accumulate)
{
    const ptrdiff_t pstride = K * FR_NR;
    FR_T *Cq[FR_NP_MAX];
    ptrdiff_t i = 0;
    for (ptrdiff_t q = 0; q < npanels; q++) {
        const FR_T *P = panels + q * pstride;
        Cq[0] = C + col0[q];
        for (i = 0; i + 6 <= M; i += 6) {
            FR_T *Ci[1] = {Cq[0] + i * ldc};
            FR_NAME(block)(6, 1, K, A + i * lda, lda, P, pstride, Ci, width + q, ldc, accumulate);
        }
    }
    i = M - M % 6;
    while (i < M) {
        const ptrdiff_t rem = M - i;
        const int mr = rem >= 4 ? 4 : (int)rem;
        const int npmax = mr == 4 ? 1 : (mr == 3 ? 2 : (mr == 2 ? 3 : 4));
        const FR_T *Ai = A + i * lda;
        for (ptrdiff_t q = 0; q < npanels;) {
            const int np = npanels - q < npmax ? (int)(npanels - q) : npmax;
            for (int p = 0; p < np; p++) Cq[p] = C + i * ldc + col0[q + p];
            const FR_T *P = panels + q * pstride;
#define FR_CASE(MR, NP)                                                                     \
    case MR * 8 + NP:                                                                       \
        FR_NAME(block)(MR, NP, K, Ai, lda, P, pstride, Cq, width + q, ldc, accumulate);     \
        break;
            switch (mr * 8 + np) {
                FR_CASE(4, 1)
                FR_CASE(3, 2) FR_CASE(3, 1)
                FR_CASE(2, 3) FR_CASE(2, 2) FR_CASE(2, 1)
                FR_CASE(1, 4) FR_CASE(1, 3) FR_CASE(1, 2) FR_CASE(1, 1)
                default: break;
            }
#undef FR_CASE
            q += np;
        }
        i += mr;
    }
}

#endif  /* !FR_AVX512 */

#undef FR_MR_MAX
#undef FR_NP_MAX
