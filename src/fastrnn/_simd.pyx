"""Vectorized sigmoid/tanh with runtime CPU dispatch (csrc/fr_simd.c).

The kernel modules call the cdef functions below; Python sees the dispatch controls
(`supported`, `select`, `level_name`) and array entry points used by the tests.
"""
import numpy as np
cimport numpy as cnp

cnp.import_array()

cdef extern from "fr_simd.h":
    void fr_sigmoid_f32(const float* x, float* y, Py_ssize_t n) nogil
    void fr_sigmoid_f64(const double* x, double* y, Py_ssize_t n) nogil
    void fr_tanh_f32(const float* x, float* y, Py_ssize_t n) nogil
    void fr_tanh_f64(const double* x, double* y, Py_ssize_t n) nogil
    int fr_simd_supported() nogil
    int fr_simd_select(int level) nogil
    int fr_simd_level() nogil
    const char* fr_simd_name(int level) nogil

LEVELS = ("generic", "avx2", "avx512")


cdef void sigmoid_f32(const float* x, float* y, Py_ssize_t n) noexcept nogil:
    fr_sigmoid_f32(x, y, n)


cdef void sigmoid_f64(const double* x, double* y, Py_ssize_t n) noexcept nogil:
    fr_sigmoid_f64(x, y, n)


cdef void tanh_f32(const float* x, float* y, Py_ssize_t n) noexcept nogil:
    fr_tanh_f32(x, y, n)


cdef void tanh_f64(const double* x, double* y, Py_ssize_t n) noexcept nogil:
    fr_tanh_f64(x, y, n)


def supported():
    """Name of the best kernel level this CPU can run: 'avx512', 'avx2' or 'generic'."""
    return LEVELS[fr_simd_supported()]


def current():
    """Name of the kernel level in use."""
    return LEVELS[fr_simd_level()]


def select(name):
    """Use kernel level `name` (or the best supported one below it); returns the level used."""
    if name not in LEVELS:
        raise ValueError(f"SIMD level must be one of {LEVELS}, got {name!r}")
    return LEVELS[fr_simd_select(LEVELS.index(name))]


def _apply(name, x):
    """sigmoid or tanh of a float32/float64 array (a copy), for the tests."""
    cdef cnp.ndarray a = np.array(x, copy=True, order="C")
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"x must be float32 or float64, got {a.dtype}")
    cdef Py_ssize_t n = a.size
    cdef void* p = cnp.PyArray_DATA(a)
    if name == "sigmoid":
        if a.dtype == np.float32:
            fr_sigmoid_f32(<float*>p, <float*>p, n)
        else:
            fr_sigmoid_f64(<double*>p, <double*>p, n)
    elif name == "tanh":
        if a.dtype == np.float32:
            fr_tanh_f32(<float*>p, <float*>p, n)
        else:
            fr_tanh_f64(<double*>p, <double*>p, n)
    else:
        raise ValueError(f"name must be 'sigmoid' or 'tanh', got {name!r}")
    return a
