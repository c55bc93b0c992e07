"""Forward ("infer", no cache) and forward+backward ("train", including dx) per cell and shape:
fastrnn vs the NumPy reference (same algorithm, one GEMM per step) vs torch.nn and, for
inference, ONNX Runtime's operators (each if installed).

    pytest bench/ --benchmark-only --benchmark-json=bench.json
    python bench/table.py bench.json      # markdown table with the ratios
"""
import numpy as np
import pytest

from conftest import SHAPES, make_problem

from fastrnn import functional as F
from fastrnn import reference as R

CELLS = ["rnn", "lstm", "gru"]


def _args(cell, p):
    if cell == "lstm":
        return (p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    return (p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])


def _run(module, cell, p, train):
    forward = getattr(module, f"{cell}_forward")
    backward = getattr(module, f"{cell}_backward")
    kwargs = {} if module is R else {"training": train}
    if not train:
        return lambda: forward(*_args(cell, p), **kwargs)
    if cell == "lstm":
        return lambda: backward(p["dy"], None, None, forward(*_args(cell, p), **kwargs)[-1])
    return lambda: backward(p["dy"], None, forward(*_args(cell, p), **kwargs)[-1])


def _torch_run(torch, cell, p, train):
    B, H = p["h0"].shape
    I = p["x"].shape[2]
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    module = cls(I, H)
    with torch.no_grad():
        for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
            full = {"w": "weight", "b": "bias"}[name[0]] + name[1:] + "_l0"
            getattr(module, full).copy_(torch.from_numpy(p[name]))
    x = torch.from_numpy(p["x"]).requires_grad_(train)
    h0 = torch.from_numpy(p["h0"])[None]
    state = (h0, torch.from_numpy(p["c0"])[None]) if cell == "lstm" else h0
    dy = torch.from_numpy(p["dy"])
    params = list(module.parameters())
    if not train:
        def infer():
            with torch.inference_mode():
                return module(x, state)
        return infer

    def step():
        y, _ = module(x, state)
        return torch.autograd.grad(y, [x] + params, dy)
    return step


@pytest.mark.parametrize("train", [False, True], ids=["infer", "train"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B%d-T%d-I%d-H%d" % s)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("impl", ["fastrnn", "numpy", "torch", "onnxruntime"])
def test_cell(benchmark, impl, cell, shape, train, request):
    B, T, I, H = shape
    p = make_problem(cell, B, T, I, H)
    benchmark.group = f"{cell} {'train' if train else 'infer'} B={B} T={T} I={I} H={H}"
    benchmark.extra_info.update(impl=impl, cell=cell, B=B, T=T, I=I, H=H,
                                mode="train" if train else "infer")
    if impl == "torch":
        fn = _torch_run(request.getfixturevalue("torch_mod"), cell, p, train)
    elif impl == "onnxruntime":
        if train:
            pytest.skip("ONNX Runtime's operators are for inference")
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
        import fastrnn
        from fastrnn.bench import onnx_runner
        fn = onnx_runner(cell, p, fastrnn.get_num_threads())
    else:
        fn = _run(F if impl == "fastrnn" else R, cell, p, train)
    fn()                                   # warm-up (allocations, BLAS threads)
    benchmark(fn)
