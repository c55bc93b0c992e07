"""Data-parallel training over MPI (mpi4py), the way Horovod does it for the big frameworks.

Start one process per share of the machine(s) with ``mpiexec``; each runs the same script::

    mpiexec -n 2 python -m mpi4py train.py        # python -m mpi4py: a rank that raises
                                                   # aborts the whole job (no hang)

and in the script, ``model.fit(..., distributed=True)``.  Then:

- rank 0's initial parameters and optimizer state are broadcast to every rank;
- each global batch (``batch_size`` samples per rank, so ``batch_size * size`` in all) comes
  from the same shuffle on every rank, and each rank takes its contiguous slice of it (a
  stateful model: its slice of the streams, the same streams every step);
- after each backward, one in-place allreduce of one flat buffer (every gradient, plus the
  step's loss, weight and stop flags: Horovod's tensor fusion) averages the gradients,
  weighted by each rank's share of the loss's denominator, so the step equals the
  single-process step on the global batch; clipping then uses the global norm;
- every rank applies the same update to the same numbers, so every rank ends every step with
  the same parameters; loss, metrics, validation, Ctrl-C, non-finite losses and callback
  stops are decided from reduced values, the same on every rank;
- only rank 0 prints progress and runs the callbacks that write files (``CSVLogger``,
  ``ModelCheckpoint``).

fastrnn imports mpi4py only when distributed training is asked for.  Install the extra with
``pip install "fastrnn[mpi]"`` (mpi4py and MPICH from the package index, no compiler).
"""
import contextlib
import ctypes
import os

import numpy as np

__all__ = ["Context", "init", "broadcast_parameters", "broadcast_optimizer_state",
           "GradientReducer", "INSTALL_HINT"]

INSTALL_HINT = ('pip install "fastrnn[mpi]"  (mpi4py and an MPI library, MPICH, from the '
                'package index)')

_context = None


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"distributed training needs mpi4py and an MPI library: "
                          f"{INSTALL_HINT}") from exc
    return MPI


class Context:
    """One process's place in the job: ``rank`` and ``size`` in the communicator,
    ``local_rank`` and ``local_size`` among the ranks on its host (MPI's shared-memory
    split), and the collectives fastrnn uses."""

    def __init__(self, comm=None):
        MPI = _mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        try:
            mine = frozenset(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            mine = frozenset(range(os.cpu_count() or 1))
        everyone = local.allgather(mine)       # the CPUs each rank on this host may use
        local.Free()
        if sum(map(len, everyone)) == len(frozenset().union(*everyone)):
            self._share = len(mine)            # bound to disjoint CPUs: its own are its share
        else:
            self._share = max(1, len(frozenset().union(*everyone)) // self.local_size)

    def __repr__(self):
        return (f"<fastrnn.distributed.Context rank {self.rank}/{self.size}, local "
                f"{self.local_rank}/{self.local_size}>")

    def threads_per_rank(self):
        """This rank's share of its host's CPUs (at least 1): ranks on one host split the
        CPUs they may all use, since engine threads beyond the cores run several times
        slower; a rank that mpiexec bound to CPUs of its own gets those."""
        return self._share

    def allreduce_(self, buf):
        """Sum `buf` (a contiguous ndarray) over the ranks, in place."""
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        return buf

    def bcast_(self, buf, root=0):
        self.comm.Bcast(buf, root=root)
        return buf

    def bcast_object(self, obj, root=0):
        return self.comm.bcast(obj, root=root)

    def sum(self, values):
        """Sums over the ranks of a list of numbers (float64), one allreduce."""
        buf = np.asarray(values, dtype=np.float64).copy()
        return self.allreduce_(buf)

    def abort(self, code=1):
        """End every rank of the job (after an error on this one)."""
        self.comm.Abort(code)


def init(comm=None):
    """The Context of this process (created on first use; MPI starts then)."""
    global _context
    if _context is None or (comm is not None and comm is not _context.comm):
        _context = Context(comm)
    return _context


def as_context(distributed):
    """fit's ``distributed`` argument as a Context, or None (False / None)."""
    if distributed is None or distributed is False:
        return None
    if distributed is True:
        return init()
    if isinstance(distributed, Context):
        return distributed
    raise TypeError(f"distributed must be True, False or a fastrnn.distributed.Context, got "
                    f"{type(distributed).__name__}")


def _flat(arrays, ctx, root):
    """Broadcast a list of arrays from `root` in one call per dtype, in place."""
    by_dtype = {}
    for a in arrays:
        by_dtype.setdefault(a.dtype.str, []).append(a)
    for group in by_dtype.values():
        buf = np.concatenate([a.reshape(-1) for a in group])
        ctx.bcast_(buf, root)
        off = 0
        for a in group:
            a.reshape(-1)[...] = buf[off:off + a.size]
            off += a.size


def broadcast_parameters(model, root=0, ctx=None):
    """Every rank's parameters (and buffers) become rank `root`'s, in place."""
    ctx = ctx or init()
    params = list(model.parameters().values())
    if params:
        _flat(params, ctx, root)
        model._weights_changed()


def broadcast_optimizer_state(opt, root=0, ctx=None):
    """Every rank's optimizer state (step count, buffers, hyperparameters) becomes rank
    `root`'s."""
    ctx = ctx or init()
    sd = ctx.bcast_object(opt.state_dict() if ctx.rank == root else None, root)
    if ctx.rank != root:
        opt.load_state_dict(sd)


def decorrelate_masks(model, ctx):
    """Give each rank its own dropout masks: the layers' mask generators (seeded alike on
    every rank) are re-seeded from their own next draw and the rank, so the job is
    reproducible for a given number of ranks without two ranks dropping the same units of
    their different samples.  Nothing changes with one rank."""
    if ctx.size == 1:
        return
    for _, layer in model.named_layers():
        rng = getattr(layer, "_rng", None)
        if isinstance(rng, np.random.Generator):
            layer._rng = np.random.default_rng([int(rng.integers(2**62)), ctx.rank])
        key = getattr(layer, "_mask_key", 0)
        if key:
            layer._mask_key = int(np.random.default_rng([key, ctx.rank]).integers(2**63))


_BLAS_CALLS = [("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
               ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
               ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
               ("openblas_set_num_threads", "openblas_get_num_threads")]


def _openblas_controls():
    """(set, get) of every OpenBLAS this process has loaded (NumPy's and SciPy's are
    separate copies)."""
    from fastrnn.engine.blas import loaded_openblas
    paths = loaded_openblas()
    out = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _BLAS_CALLS:
            setter, getter = getattr(lib, set_name, None), getattr(lib, get_name, None)
            if setter is not None and getter is not None:
                setter.argtypes, setter.restype = [ctypes.c_int], None
                getter.restype = ctypes.c_int
                out.append((setter, getter))
                break
    return out


@contextlib.contextmanager
def limit_blas_threads(n):
    """Every loaded OpenBLAS at `n` threads for the block: ranks sharing a host would
    otherwise each start a BLAS thread per core for NumPy's products (measured here: 2 ranks
    of the adding task ran at half speed until NumPy's BLAS was held to one thread)."""
    controls = _openblas_controls()
    saved = [get() for _, get in controls]
    for setter, _ in controls:
        setter(n)
    try:
        yield
    finally:
        for (setter, _), value in zip(controls, saved):
            setter(value)


class GradientReducer:
    """The step's one allreduce: every gradient, scaled by this rank's weight, and a few
    scalars, packed in one flat buffer of the gradients' dtype (float64 when they mix).

    ``reduce(grads, weight, scalars)`` sums over the ranks; the gradients come back as
    sum(weight_r * g_r) / sum(weight_r) (or the plain sum when ``average`` is False) in
    place, and the summed scalars (weight first) are returned as float64."""

    def __init__(self, ctx, grads, n_scalars):
        self.ctx = ctx
        self.grads = list(grads)
        dtypes = {g.dtype for g in self.grads}
        self.dtype = dtypes.pop() if len(dtypes) == 1 else np.dtype(np.float64)
        sizes = [g.size for g in self.grads]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.n = int(self.offsets[-1])
        self.buf = np.empty(self.n + 1 + n_scalars, self.dtype)

    def reduce(self, weight, scalars, average=True):
        buf, off = self.buf, self.offsets
        for g, a, b in zip(self.grads, off[:-1], off[1:]):
            np.multiply(g.reshape(-1), weight, out=buf[a:b], casting="unsafe")
        buf[self.n] = weight
        buf[self.n + 1:] = scalars
        self.ctx.allreduce_(buf)
        total = float(buf[self.n])
        scale = (1.0 / total if total > 0 else 0.0) if average else 1.0
        for g, a, b in zip(self.grads, off[:-1], off[1:]):
            np.multiply(buf[a:b], scale, out=g.reshape(-1), casting="unsafe")
        return buf[self.n:].astype(np.float64)
