"""The package layout: no import circle among fastrnn's modules (counting imports made inside
functions too), and the compiled engine in one subpackage."""
import ast
import pathlib

import fastrnn

SRC = pathlib.Path(fastrnn.__file__).parent


def _module_name(path):
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules():
    mods = {}
    for path in SRC.rglob("*.py"):
        mods[_module_name(path)] = path
    for path in SRC.rglob("*.pyx"):
        mods[_module_name(path)] = path
    return mods


def _imports(path, known):
    """fastrnn modules that `path` imports anywhere (module level or inside functions);
    the root package itself (which gathers the public API) is left out."""
    text = path.read_text()
    if path.suffix == ".pyx":        # Python-level imports only, one per line
        tree = ast.parse("\n".join(line.strip() for line in text.splitlines()
                                   if line.strip().startswith(("import fastrnn",
                                                               "from fastrnn"))
                                   and " cimport " not in line))
    else:
        tree = ast.parse(text)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name in known and name != "fastrnn":
                out.add(name)
    return out


def test_no_import_circle():
    mods = _modules()
    graph = {name: _imports(path, mods) - {name} for name, path in mods.items()}
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_engine_holds_the_kernels():
    engine = SRC / "engine"
    for name in ("rnn.pyx", "lstm.pyx", "gru.pyx", "common.pxd", "blas.pyx", "simd.pyx",
                 "loss.pyx", "optim.pyx", "cpu.py", "threads.py", "workspace.py"):
        assert (engine / name).exists(), name
    assert not list(SRC.glob("*.pyx")) and not list(SRC.glob("*.pxd"))


def test_import_needs_no_optional_extra():
    """`import fastrnn` (and its submodules that users import) loads none of the optional
    extras: torch, onnx, onnxruntime, matplotlib, mpi4py."""
    import subprocess
    import sys
    code = ("import sys, fastrnn, fastrnn.functional, fastrnn.layers, fastrnn.plot, "
            "fastrnn.bench, fastrnn.tasks\n"
            "bad = [m for m in ('torch', 'onnx', 'onnxruntime', 'matplotlib', 'mpi4py') "
            "if m in sys.modules]\n"
            "assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
