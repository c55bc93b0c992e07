"""The compiled engine: the recurrences and their helpers, below the public API.

Kernels (Cython, GIL released, OpenMP threads; forward and backward through time in each):
    rnn.pyx     Elman RNN (tanh / relu)
    lstm.pyx    LSTM
    gru.pyx     GRU (both reset variants)
    lstmp.pyx   projection LSTM
    variants.pyx  LayerNorm LSTM / GRU, recurrent dropout and zoneout: one recurrence for
                the three cells, forward and backward
    common.pxd  what the three share: state slots, lengths, the parallel schemes, the
                packed-panel products, the input-side products
    loss.pyx    fused softmax cross-entropy over rows of logits
    optim.pyx   optimizer updates and gradient norms over flat parameter buffers
Helpers:
    blas.pyx/.pxd   the one place BLAS is called (SciPy's), thread-count-independent splits
    simd.pyx/.pxd   vectorized activations and packed-panel micro-kernels (csrc/), chosen
                    at run time for the CPU (generic, AVX2, AVX-512)
    cpu.py          CPU features, cache size, the BLAS core choice
    threads.py      how many threads a call uses (adaptive to other programs' load)
    workspace.py    a pool of large work buffers reused across calls

Nothing here is public API: fastrnn.functional validates arguments and calls these modules.
"""
