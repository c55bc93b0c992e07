# Vectorized activation loops (csrc/fr_simd.c, runtime CPU dispatch), exported to the kernel
# modules.  x and y may be the same array.
cdef void sigmoid_f32(const float* x, float* y, Py_ssize_t n) noexcept nogil
cdef void sigmoid_f64(const double* x, double* y, Py_ssize_t n) noexcept nogil
cdef void tanh_f32(const float* x, float* y, Py_ssize_t n) noexcept nogil
cdef void tanh_f64(const double* x, double* y, Py_ssize_t n) noexcept nogil
