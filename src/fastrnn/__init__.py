"""fastrnn: fast CPU recurrent neural networks for NumPy.

    from fastrnn import functional as F
    y, hT, cT, cache = F.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    g = F.lstm_backward(dy, None, None, cache)

See fastrnn.functional for the conventions (PyTorch weight layout, time-major x).
"""
from fastrnn.engine import cpu as _cpu

_cpu.choose_blas_core()          # before anything loads SciPy's BLAS

from fastrnn import clip, data, functional, init, layers, losses, optim  # noqa: E402
from fastrnn._io import ModelFileError, load, save  # noqa: E402
from fastrnn.models import Model, Sequential  # noqa: E402
from fastrnn.convert import from_keras, from_torch  # noqa: E402
from fastrnn._config import config, show_config  # noqa: E402
from fastrnn.engine.threads import get_num_threads, set_num_threads  # noqa: E402

from fastrnn._version import __version__  # noqa: E402
__all__ = ["functional", "layers", "losses", "init", "optim", "clip", "data", "Model", "Sequential", "save", "load",
           "ModelFileError", "from_keras", "from_torch", "get_num_threads", "set_num_threads", "config", "show_config",
           "__version__"]
