"""In-place optimizer updates and gradient clipping: one pass over each (flattened, contiguous)
array, GIL released.  The update formulas follow PyTorch's single-tensor implementations
(torch.optim.SGD/Adam/AdamW/RMSprop/Adagrad), operation for operation, so results agree to
rounding.  Validation lives in fastrnn.optim / fastrnn.clip."""
from cython cimport floating
from libc.math cimport sqrt, fabs, isfinite


def sgd(floating[::1] p, const floating[::1] g, floating[::1] buf, double lr, double momentum,
        double dampening, double weight_decay, bint nesterov, bint first):
    """p -= lr * d, d = g + wd*p, through the momentum buffer when momentum != 0."""
    cdef Py_ssize_t i, n = p.shape[0]
    cdef floating d, b
    with nogil:
        for i in range(n):
            d = g[i] + <floating>weight_decay * p[i] if weight_decay != 0 else g[i]
            if momentum != 0:
                if first:
                    b = d
                else:
                    b = buf[i] * <floating>momentum + <floating>(1 - dampening) * d
                buf[i] = b
                d = d + <floating>momentum * b if nesterov else b
            p[i] = p[i] - <floating>lr * d


def adam(floating[::1] p, const floating[::1] g, floating[::1] m, floating[::1] v,
         floating[::1] vmax, double lr, double beta1, double beta2, double eps,
         double weight_decay, bint decoupled, bint amsgrad, long long step):
    """Adam (L2 weight decay added to the gradient) or AdamW (decoupled: p *= 1 - lr*wd)."""
    cdef Py_ssize_t i, n = p.shape[0]
    cdef double bc1 = 1.0 - beta1 ** step
    cdef double bc2_sqrt = sqrt(1.0 - beta2 ** step)
    cdef floating step_size = <floating>(lr / bc1)
    cdef floating d, mi, vi, denom
    cdef floating decay = <floating>(1.0 - lr * weight_decay)
    with nogil:
        for i in range(n):
            d = g[i]
            if weight_decay != 0:
                if decoupled:
                    p[i] = p[i] * decay
                else:
                    d = d + <floating>weight_decay * p[i]
            mi = m[i] + <floating>(1.0 - beta1) * (d - m[i])      # lerp
            vi = v[i] * <floating>beta2 + <floating>(1.0 - beta2) * d * d
            m[i] = mi
            v[i] = vi
            if amsgrad:
                if vi > vmax[i]:
                    vmax[i] = vi
                vi = vmax[i]
            denom = <floating>(sqrt(vi) / bc2_sqrt) + <floating>eps
            p[i] = p[i] - step_size * (mi / denom)


def rmsprop(floating[::1] p, const floating[::1] g, floating[::1] sq, floating[::1] gavg,
            floating[::1] buf, double lr, double alpha, double eps, double weight_decay,
            double momentum, bint centered):
    cdef Py_ssize_t i, n = p.shape[0]
    cdef floating d, s, a, avg
    with nogil:
        for i in range(n):
            d = g[i] + <floating>weight_decay * p[i] if weight_decay != 0 else g[i]
            s = sq[i] * <floating>alpha + <floating>(1.0 - alpha) * d * d
            sq[i] = s
            if centered:
                a = gavg[i] + <floating>(1.0 - alpha) * (d - gavg[i])
                gavg[i] = a
                avg = <floating>sqrt(s - a * a) + <floating>eps
            else:
                avg = <floating>sqrt(s) + <floating>eps
            if momentum > 0:
                buf[i] = buf[i] * <floating>momentum + d / avg
                p[i] = p[i] - <floating>lr * buf[i]
            else:
                p[i] = p[i] - <floating>lr * (d / avg)


def adagrad(floating[::1] p, const floating[::1] g, floating[::1] acc, double clr, double eps,
            double weight_decay):
    cdef Py_ssize_t i, n = p.shape[0]
    cdef floating d, s
    with nogil:
        for i in range(n):
            d = g[i] + <floating>weight_decay * p[i] if weight_decay != 0 else g[i]
            s = acc[i] + d * d
            acc[i] = s
            p[i] = p[i] - <floating>clr * (d / (<floating>sqrt(s) + <floating>eps))


def sum_squares(const floating[::1] g):
    """sum(g**2), accumulated in double."""
    cdef Py_ssize_t i, n = g.shape[0]
    cdef double s = 0.0
    with nogil:
        for i in range(n):
            s += <double>g[i] * <double>g[i]
    return s


def max_abs(const floating[::1] g):
    """max |g| (NaN if any element is NaN)."""
    cdef Py_ssize_t i, n = g.shape[0]
    cdef double m = 0.0, a
    cdef bint nan = False
    with nogil:
        for i in range(n):
            a = fabs(<double>g[i])
            if a != a:
                nan = True
            elif a > m:
                m = a
    return float("nan") if nan else m


def sum_abs_pow(const floating[::1] g, double q):
    """sum |g|**q, accumulated in double."""
    cdef Py_ssize_t i, n = g.shape[0]
    cdef double s = 0.0
    with nogil:
        for i in range(n):
            s += fabs(<double>g[i]) ** q
    return s


def scale(floating[::1] g, double c):
    cdef Py_ssize_t i, n = g.shape[0]
    cdef floating cf = <floating>c
    with nogil:
        for i in range(n):
            g[i] = g[i] * cf


def clamp(floating[::1] g, double lo, double hi):
    """g = min(max(g, lo), hi) in place; NaN stays NaN (as torch.clamp)."""
    cdef Py_ssize_t i, n = g.shape[0]
    cdef floating a, flo = <floating>lo, fhi = <floating>hi
    with nogil:
        for i in range(n):
            a = g[i]
            if a < flo:
                g[i] = flo
            elif a > fhi:
                g[i] = fhi


def all_finite(const floating[::1] g):
    cdef Py_ssize_t i, n = g.shape[0]
    cdef bint ok = True
    with nogil:
        for i in range(n):
            if not isfinite(g[i]):
                ok = False
                break
    return ok
