"""Fused softmax cross-entropy over rows of logits (the output layer of a language model):
one compiled pass per row (max, exponentials with their sum, loss, scaled gradient), rows
spread over OpenMP threads, GIL released.  Each row is computed by one thread in a fixed
order, so results do not depend on the thread count.  Validation lives in fastrnn.losses."""
import numpy as np
cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memset

from cython.parallel cimport prange
from fastrnn.engine.simd cimport xent_f32, xent_f64

cnp.import_array()


def softmax_cross_entropy(z, targets, weights, double eps, double scale, int nthreads=1):
    """Per-row losses times `weights` (N,) and the gradient d (N, C) = weights * scale *
    (softmax(z) - q), q = (1 - eps) onehot(targets) + eps / C, for logits z (N, C) (C-contiguous
    float32/float64), targets (N,) int64 in [0, C), weights (N,) of z's dtype.  Rows with
    weight 0 give exactly 0 (their logits are not read)."""
    if z.dtype == np.float32:
        return _xent(<float*>cnp.PyArray_DATA(z), z, targets, weights, eps, scale, nthreads)
    return _xent(<double*>cnp.PyArray_DATA(z), z, targets, weights, eps, scale, nthreads)


cdef _xent(const floating* zp, z, targets, weights, double eps, double scale, int nthreads):
    cdef Py_ssize_t N = z.shape[0], C = z.shape[1], i
    per = np.empty(N, z.dtype)
    d = np.empty((N, C), z.dtype)
    cdef const int64_t* t = <int64_t*>cnp.PyArray_DATA(targets)
    cdef const floating* w = <floating*>cnp.PyArray_DATA(weights)
    cdef floating* per_p = <floating*>cnp.PyArray_DATA(per)
    cdef floating* d_p = <floating*>cnp.PyArray_DATA(d)
    with nogil:
        for i in prange(N, num_threads=max(1, nthreads), schedule="static"):
            if w[i] == 0:
                per_p[i] = 0
                memset(d_p + i * C, 0, C * sizeof(floating))
                continue
            if floating is float:
                per_p[i] = w[i] * xent_f32(zp + i * C, C, t[i], <float>eps,
                                           <float>(scale * w[i]), d_p + i * C)
            else:
                per_p[i] = w[i] * xent_f64(zp + i * C, C, t[i], eps, scale * w[i],
                                           d_p + i * C)
    return per, d
