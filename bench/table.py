"""Turn `pytest bench/ --benchmark-json=FILE` output into the README's markdown table:
median times per implementation and the ratios time_other / time_fastrnn.

    python bench/table.py FILE
"""
import json
import sys
from collections import defaultdict


def main(path):
    with open(path) as f:
        data = json.load(f)
    rows = defaultdict(dict)
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        key = (info["cell"], (info["B"], info["T"], info["I"], info["H"]), info["mode"])
        rows[key][info["impl"]] = bench["stats"]["median"]
    impls = ("numpy", "torch", "onnxruntime")
    print("| cell | (B, T, I, H) | mode | fastrnn ms | NumPy ms | torch ms | ONNX Runtime ms | "
          "NumPy/fastrnn | torch/fastrnn | ONNX Runtime/fastrnn | best peer/fastrnn |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (cell, shape, mode), t in sorted(rows.items()):
        fast = t.get("fastrnn")
        cols = [f"{t[k] * 1e3:.2f}" if k in t else "-" for k in ("fastrnn",) + impls]
        ratios = [f"{t[k] / fast:.2f}x" if k in t and fast else "-" for k in impls]
        peers = [t[k] for k in ("torch", "onnxruntime") if k in t]
        best = f"{min(peers) / fast:.2f}x" if peers and fast else "-"
        print(f"| {cell} | {shape} | {mode} | " + " | ".join(cols + ratios + [best]) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
