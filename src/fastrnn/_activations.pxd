# Inline activations for the fused elementwise passes, float or double.  Derivatives are
# written from saved outputs in the kernels: sigmoid' = s*(1-s), tanh' = 1-t*t, relu' = (y>0).
# Constants are cast to `floating` so float code stays in single precision.
from libc.math cimport exp, expf, tanh, tanhf
from cython cimport floating


cdef inline floating sigmoid(floating v) noexcept nogil:
    # exp(-v) overflows to inf for v << 0, giving exactly 0: no NaN.
    if floating is float:
        return <float>1 / (<float>1 + expf(-v))
    else:
        return 1 / (1 + exp(-v))


cdef inline floating tanh_(floating v) noexcept nogil:
    if floating is float:
        return tanhf(v)
    else:
        return tanh(v)


cdef inline floating relu(floating v) noexcept nogil:
    return 0 if v <= 0 else v        # NaN propagates (NaN <= 0 is false)


# Array versions (vectorized, runtime CPU dispatch): y[:n] = act(x[:n]); x may equal y.
from fastrnn._simd cimport sigmoid_f32, sigmoid_f64, tanh_f32, tanh_f64


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
