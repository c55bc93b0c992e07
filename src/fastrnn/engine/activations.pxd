# Activations for the elementwise passes, float or double.  Derivatives are written from
# saved outputs in the kernels: sigmoid' = s*(1-s), tanh' = 1-t*t, relu' = (y>0).
from cython cimport floating


cdef inline floating relu(floating v) noexcept nogil:
    return 0 if v <= 0 else v        # NaN propagates (NaN <= 0 is false)


# Array versions (vectorized, runtime CPU dispatch): y[:n] = act(x[:n]); x may equal y.
from fastrnn.engine.simd cimport sigmoid_f32, sigmoid_f64, tanh_f32, tanh_f64


cdef inline void sigmoid_v(const floating* x, floating* y, Py_ssize_t n) noexcept nogil:
    if floating is float:
        sigmoid_f32(x, y, n)
    else:
        sigmoid_f64(x, y, n)


cdef inline void tanh_v(const floating* x, floating* y, Py_ssize_t n) noexcept nogil:
    if floating is float:
        tanh_f32(x, y, n)
    else:
        tanh_f64(x, y, n)
