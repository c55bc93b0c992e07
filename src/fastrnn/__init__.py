"""fastrnn: fast CPU recurrent neural networks for NumPy.

    from fastrnn import functional as F
    y, hT, cT, cache = F.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    g = F.lstm_backward(dy, None, None, cache)

See fastrnn.functional for the conventions (PyTorch weight layout, time-major x).
"""
from fastrnn import functional
from fastrnn._threads import get_num_threads, set_num_threads

__version__ = "0.1.0"
__all__ = ["functional", "get_num_threads", "set_num_threads", "__version__"]
