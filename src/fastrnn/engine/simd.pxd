# C helpers (csrc/: vectorized activations with runtime CPU dispatch, packed-panel GEMM),
# exported to the kernel modules.  For the activations x and y may be the same array.
cdef extern from "fr_simd.h":
    enum:
        FR_NR_F32
        FR_NR_F64

cdef void sigmoid_f32(const float* x, float* y, Py_ssize_t n) noexcept nogil
cdef void sigmoid_f64(const double* x, double* y, Py_ssize_t n) noexcept nogil
cdef void tanh_f32(const float* x, float* y, Py_ssize_t n) noexcept nogil
cdef void tanh_f64(const double* x, double* y, Py_ssize_t n) noexcept nogil
cdef void lstm_fwd_f32(Py_ssize_t n, float* g, Py_ssize_t H, const float* c_prev, float* c_cur,
                       float* h_cur, float* tc, const float* p) noexcept nogil
cdef void lstm_fwd_f64(Py_ssize_t n, double* g, Py_ssize_t H, const double* c_prev,
                       double* c_cur, double* h_cur, double* tc, const double* p) noexcept nogil
cdef void pack_panels_f32(const float* w, Py_ssize_t ldw, bint trans, Py_ssize_t K,
                          Py_ssize_t npanels, const Py_ssize_t* col0, const int* width,
                          float* panels) noexcept nogil
cdef void pack_panels_f64(const double* w, Py_ssize_t ldw, bint trans, Py_ssize_t K,
                          Py_ssize_t npanels, const Py_ssize_t* col0, const int* width,
                          double* panels) noexcept nogil
cdef void gemm_panels_f32(Py_ssize_t M, Py_ssize_t K, const float* A, Py_ssize_t lda,
                          const float* panels, Py_ssize_t npanels, const Py_ssize_t* col0,
                          const int* width, float* C, Py_ssize_t ldc, bint accumulate) noexcept nogil
cdef void gemm_panels_f64(Py_ssize_t M, Py_ssize_t K, const double* A, Py_ssize_t lda,
                          const double* panels, Py_ssize_t npanels, const Py_ssize_t* col0,
                          const int* width, double* C, Py_ssize_t ldc, bint accumulate) noexcept nogil
cdef void lstm_bwd_f32(Py_ssize_t n, float* g, Py_ssize_t H, const float* c_prev,
                       const float* tc, const float* dh, const float* dy, float* dc,
                       const float* p) noexcept nogil
cdef void lstm_bwd_f64(Py_ssize_t n, double* g, Py_ssize_t H, const double* c_prev,
                       const double* tc, const double* dh, const double* dy,
                       double* dc, const double* p) noexcept nogil
cdef void gru_bwd_f32(Py_ssize_t n, float* g, Py_ssize_t H, const float* h_prev,
                      const float* dh, const float* dy, float* dh_next, float* aux,
                      float* w) noexcept nogil
cdef void gru_bwd_f64(Py_ssize_t n, double* g, Py_ssize_t H, const double* h_prev,
                      const double* dh, const double* dy, double* dh_next, double* aux,
                      double* w) noexcept nogil
cdef void gru_fwd_f32(Py_ssize_t n, float* g, const float* hh, Py_ssize_t H, const float* b_hn,
                      const float* h_prev, float* hn, float* h_cur) noexcept nogil
cdef void gru_fwd_f64(Py_ssize_t n, double* g, const double* hh, Py_ssize_t H,
                      const double* b_hn, const double* h_prev, double* hn,
                      double* h_cur) noexcept nogil
cdef float xent_f32(const float* z, Py_ssize_t C, Py_ssize_t target, float eps, float scale,
                    float* d) noexcept nogil
cdef double xent_f64(const double* z, Py_ssize_t C, Py_ssize_t target, double eps,
                     double scale, double* d) noexcept nogil
# LayerNorm rows and the regularized recurrences' passes (csrc/fr_norm.c; see fr_simd.h)
cdef void ln_stats_rows_f32(const float* v, Py_ssize_t ld, Py_ssize_t rows, Py_ssize_t n,
        double eps, float* mean, float* rstd) noexcept nogil
cdef void ln_apply_f32(const float* v, float* out, Py_ssize_t n, float mean,
        float r) noexcept nogil
cdef void ln_means_rows_f32(const float* d, Py_ssize_t ldd, const float* gain, const float* xhat,
        Py_ssize_t ldx, Py_ssize_t rows, Py_ssize_t n, float* m1, float* m2) noexcept nogil
cdef void ln_back_apply_f32(const float* d, const float* gain, const float* xhat, float* out,
        Py_ssize_t n, float r, float m1, float m2, float* acc_g, float* acc_b) noexcept nogil
cdef void ln_gates_f32(Py_ssize_t n, float* g, const float* xh, const float* hh,
        const float* ln, Py_ssize_t ld, const float* bias, float* hh_out) noexcept nogil
cdef void lstm_cand_f32(Py_ssize_t n, float* g, Py_ssize_t H, const float* c_prev,
        float* ctil) noexcept nogil
cdef void lstm_ln_out_f32(Py_ssize_t n, const float* o, const float* cn, const float* gc,
        const float* bc, float* tc, float* h_cur) noexcept nogil
cdef void lstm_ln_back1_f32(Py_ssize_t n, float* g, Py_ssize_t H, float* tc,
        const float* dt) noexcept nogil
cdef void lstm_ln_back2_f32(Py_ssize_t n, float* g, Py_ssize_t H, const float* c_prev,
        const float* dcl, float* dc) noexcept nogil
cdef void zone_f32(float* cur, const float* prev, const unsigned char* keep, double k,
        Py_ssize_t n) noexcept nogil
cdef void zone_back_f32(float* dt, float* dd, const unsigned char* keep, double k,
        Py_ssize_t n) noexcept nogil
cdef void mul_f32(float* dst, const float* a, const float* m, Py_ssize_t n,
        int add) noexcept nogil
cdef void ln_stats_rows_f64(const double* v, Py_ssize_t ld, Py_ssize_t rows, Py_ssize_t n,
        double eps, double* mean, double* rstd) noexcept nogil
cdef void ln_apply_f64(const double* v, double* out, Py_ssize_t n, double mean,
        double r) noexcept nogil
cdef void ln_means_rows_f64(const double* d, Py_ssize_t ldd, const double* gain, const double* xhat,
        Py_ssize_t ldx, Py_ssize_t rows, Py_ssize_t n, double* m1, double* m2) noexcept nogil
cdef void ln_back_apply_f64(const double* d, const double* gain, const double* xhat,
        double* out, Py_ssize_t n, double r, double m1, double m2, double* acc_g,
        double* acc_b) noexcept nogil
cdef void ln_gates_f64(Py_ssize_t n, double* g, const double* xh, const double* hh,
        const double* ln, Py_ssize_t ld, const double* bias, double* hh_out) noexcept nogil
cdef void lstm_cand_f64(Py_ssize_t n, double* g, Py_ssize_t H, const double* c_prev,
        double* ctil) noexcept nogil
cdef void lstm_ln_out_f64(Py_ssize_t n, const double* o, const double* cn, const double* gc,
        const double* bc, double* tc, double* h_cur) noexcept nogil
cdef void lstm_ln_back1_f64(Py_ssize_t n, double* g, Py_ssize_t H, double* tc,
        const double* dt) noexcept nogil
cdef void lstm_ln_back2_f64(Py_ssize_t n, double* g, Py_ssize_t H, const double* c_prev,
        const double* dcl, double* dc) noexcept nogil
cdef void zone_f64(double* cur, const double* prev, const unsigned char* keep, double k,
        Py_ssize_t n) noexcept nogil
cdef void zone_back_f64(double* dt, double* dd, const unsigned char* keep, double k,
        Py_ssize_t n) noexcept nogil
cdef void mul_f64(double* dst, const double* a, const double* m, Py_ssize_t n,
        int add) noexcept nogil
