"""Recurrent layers: RNN, LSTM, GRU — multi-layer, bidirectional, stateful, variable length.

Each (layer, direction) is one call of the functional kernels; this module only stacks them,
merges directions, applies dropout between layers, and routes gradients back.
"""
import numpy as np

from fastrnn import functional as F
from fastrnn import init as _init
from fastrnn.functional import _as_array, _c_array, _clip_arg, _prepare_lengths
from fastrnn.layers._base import (Layer, check_bool, check_dtype, check_int, check_prob,
                                  float_input, no_cache_error, refuse_sequence_list)

__all__ = ["RNN", "LSTM", "GRU", "lengths_from_mask", "sequence_mask"]

_MERGE_MODES = ("concat", "sum", "mul", "ave")


def lengths_from_mask(mask, T, B, batch_first=False):
    """(B,) lengths from a boolean / 0-1 mask shaped like x's first two axes ((T, B), or
    (B, T) with batch_first; the other orientation is accepted when T != B).  Each row must
    be a valid prefix (ones then zeros) of length >= 1."""
    m = _as_array("mask", mask)
    if m.dtype.kind not in "biuf":
        raise TypeError(f"mask must be boolean or 0/1 numbers, got dtype {m.dtype}")
    layout = (B, T) if batch_first else (T, B)
    other = (T, B) if batch_first else (B, T)
    if m.shape == layout:
        rows = m if batch_first else m.T
    elif m.shape == other and T != B:
        rows = m.T if batch_first else m
    else:
        raise ValueError(f"mask must have shape {'(B, T)' if batch_first else '(T, B)'} = "
                         f"{layout}, got {m.shape}")
    if m.dtype.kind != "b" and not np.all((rows == 0) | (rows == 1)):
        raise ValueError("mask must hold only 0/1 (or True/False) values")
    rows = rows.astype(bool)                   # (B, T)
    lengths = rows.sum(axis=1)
    prefix = np.arange(T)[None, :] < lengths[:, None]
    if not np.array_equal(prefix, rows):
        bad = int(np.nonzero((prefix != rows).any(axis=1))[0][0])
        raise ValueError(f"mask row {bad} is not a valid prefix (ones followed by zeros): "
                         f"recurrent layers need left-aligned sequences")
    if B and lengths.min() < 1:
        raise ValueError(f"mask row {int(np.argmin(lengths))} has no valid step; every "
                         f"sequence needs at least one")
    return lengths.astype(np.int64)


def sequence_mask(lengths, T, batch_first=False, dtype=bool):
    """Mask of valid steps for `lengths`: (T, B), or (B, T) with batch_first."""
    lengths = np.asarray(lengths)
    m = np.arange(T)[:, None] < lengths[None, :]
    return (m.T if batch_first else m).astype(dtype)


def _flip_prefix(a, lengths):
    """Reverse each row's valid prefix along time (axis 0); padding stays at the end."""
    if lengths is None:
        return a[::-1]
    T = a.shape[0]
    t = np.arange(T)[:, None]
    src = np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)
    return np.take_along_axis(a, src[:, :, None], axis=0)


class _Recurrent(Layer):
    """Shared machinery of RNN / LSTM / GRU (see their docstrings)."""

    _G = None            # gate blocks
    _state_names = ("h",)
    _kind = None

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, *, merge_mode="concat",
                 return_sequences=True, return_state=True, go_backwards=False, stateful=False,
                 kernel_initializer="pytorch", recurrent_initializer="pytorch",
                 bias_initializer="pytorch", unit_forget_bias=False, clip_hidden_grad=None,
                 seed=None, layer_norm=False, layer_norm_eps=1e-5, input_dropout=0.0,
                 recurrent_dropout=0.0, weight_drop=0.0, zoneout=0.0,
                 zero_output_for_mask=True, go_backwards_order="valid"):
        super().__init__()
        self.input_size = check_int("input_size", input_size)
        self.hidden_size = check_int("hidden_size", hidden_size)
        self.num_layers = check_int("num_layers", num_layers)
        self.bias = check_bool("bias", bias)
        self.batch_first = check_bool("batch_first", batch_first)
        self.dropout = check_prob("dropout", dropout)
        self.bidirectional = check_bool("bidirectional", bidirectional)
        self.dtype = check_dtype(dtype)
        if merge_mode not in _MERGE_MODES:
            raise ValueError(f"merge_mode must be one of {_MERGE_MODES}, got {merge_mode!r}")
        self.merge_mode = merge_mode
        self.return_sequences = check_bool("return_sequences", return_sequences)
        self.return_state = check_bool("return_state", return_state)
        self.go_backwards = check_bool("go_backwards", go_backwards)
        if self.go_backwards and self.bidirectional:
            raise ValueError("go_backwards=True is for one-directional layers; a "
                             "bidirectional layer already runs both directions")
        self.stateful = check_bool("stateful", stateful)
        self.zero_output_for_mask = check_bool("zero_output_for_mask", zero_output_for_mask)
        if not self.zero_output_for_mask and self.bidirectional:
            raise ValueError("zero_output_for_mask=False is for one-directional layers (Keras's "
                             "Bidirectional also writes zeros at padded steps)")
        if go_backwards_order not in ("valid", "full"):
            raise ValueError(f"go_backwards_order must be 'valid' or 'full', got "
                             f"{go_backwards_order!r}")
        if go_backwards_order == "full" and not self.go_backwards:
            raise ValueError("go_backwards_order='full' is for go_backwards=True layers")
        self.go_backwards_order = go_backwards_order
        self.unit_forget_bias = check_bool("unit_forget_bias", unit_forget_bias)
        _clip_arg(clip_hidden_grad)
        self.clip_hidden_grad = None if clip_hidden_grad is None else float(clip_hidden_grad)
        if self.unit_forget_bias and self._kind != "lstm":
            raise ValueError("unit_forget_bias is for LSTM layers only")
        self._init_regularizers(layer_norm, layer_norm_eps, input_dropout, recurrent_dropout,
                                weight_drop, zoneout)
        self._initializers = {
            "kernel_initializer": kernel_initializer,
            "recurrent_initializer": recurrent_initializer,
            "bias_initializer": bias_initializer}
        for argname, value in self._initializers.items():
            _init.get(value, argname)
        rng = _init.as_generator(seed)
        self._rng = rng                       # dropout masks draw from the same generator
        self._states = None                   # stateful: the carried state
        self._cache = None
        self._step_weights = None
        self.state_grad = None
        H, G, O = self.hidden_size, self._G, self._out_width
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else O * self.num_directions
            for direction in range(self.num_directions):
                sfx = self._suffix(layer, direction)
                self.add_parameter("weight_ih" + sfx, (G * H, in_size), self.dtype)
                self.add_parameter("weight_hh" + sfx, (G * H, O), self.dtype)
                if self.bias:
                    self.add_parameter("bias_ih" + sfx, (G * H,), self.dtype)
                    self.add_parameter("bias_hh" + sfx, (G * H,), self.dtype)
                for name, shape in self._cell_parameters():
                    self.add_parameter(name + sfx, shape, self.dtype)
        self.reset_parameters(rng)
        # the regularizers' masks: a counter-based generator keyed once per layer, one
        # counter value per training call (reproducible, independent of the threads)
        self._mask_key = int(rng.integers(2**63)) if self._draws_masks else 0
        self._mask_calls = 0

    def _init_regularizers(self, layer_norm, eps, input_dropout, recurrent_dropout,
                           weight_drop, zoneout):
        cls = type(self).__name__
        self.layer_norm = check_bool("layer_norm", layer_norm)
        self.layer_norm_eps = F._check_eps(eps, "layer_norm_eps")
        self.input_dropout = check_prob("input_dropout", input_dropout)
        self.recurrent_dropout = check_prob("recurrent_dropout", recurrent_dropout)
        self.weight_drop = check_prob("weight_drop", weight_drop)
        if isinstance(zoneout, (tuple, list)):
            if self._kind != "lstm":
                raise ValueError(f"zoneout=(z_h, z_c) is for the LSTM's two states; {cls} "
                                 f"takes one probability, got {zoneout!r}")
            if len(zoneout) != 2:
                raise ValueError(f"zoneout must be a probability or a pair (z_h, z_c), got "
                                 f"{zoneout!r}")
            self.zoneout_h = check_prob("zoneout[0] (z_h)", zoneout[0])
            self.zoneout_c = check_prob("zoneout[1] (z_c)", zoneout[1])
        else:
            self.zoneout_h = check_prob("zoneout", zoneout)
            self.zoneout_c = self.zoneout_h if self._kind == "lstm" else 0.0
        fused = {"layer_norm": self.layer_norm, "recurrent_dropout": self.recurrent_dropout,
                 "zoneout": self.zoneout_h or self.zoneout_c}
        asked = [name for name, on in fused.items() if on]
        if self.layer_norm and self._kind == "rnn":
            raise ValueError("layer_norm=True is for LSTM and GRU layers (the LayerNorm "
                             "variants fastrnn has); RNN has none")
        refuse = None
        if getattr(self, "peephole", False):
            refuse = "peephole=True"
        elif getattr(self, "proj_size", 0):
            refuse = "proj_size"
        elif not getattr(self, "reset_after", True):
            refuse = "reset_after=False"
        if asked and refuse:
            raise ValueError(f"{', '.join(asked)} cannot be combined with {refuse}: the fused "
                             f"kernels have these options for the plain cells (and the GRU "
                             f"with reset_after=True) only")

    @property
    def _draws_masks(self):
        return bool(self.input_dropout or self.recurrent_dropout or self.weight_drop
                    or self.zoneout_h or self.zoneout_c)

    def _regularizers(self, gen, T, B, in_size):
        """Masks for one layer and direction: dict(in_mask (B, in_size), w_mask (G*H, O),
        recurrent_mask (B, O), zoneout_h (T, B, O) and zoneout_c (T, B, H) booleans), each None
        when off; with gen None (evaluation), only the zoneout probabilities."""
        O, H, dt = self._out_width, self.hidden_size, self.dtype
        zc = self.zoneout_c if self._kind == "lstm" else 0.0
        if gen is None:
            return dict(in_mask=None, w_mask=None, recurrent_mask=None,
                        zoneout_h=self.zoneout_h or None, zoneout_c=zc or None)

        def drop(p, shape):
            if not p:
                return None
            m = (gen.random(shape, dtype=dt) >= p).astype(dt)
            m *= dt.type(1.0 / (1.0 - p))
            return m

        def zone(z, shape):          # 1 (True): the unit keeps its previous value
            return gen.random(shape, dtype=dt) < z if z else None
        return dict(in_mask=drop(self.input_dropout, (B, in_size)),
                    w_mask=drop(self.weight_drop, (self._G * H, O)),
                    recurrent_mask=drop(self.recurrent_dropout, (B, O)),
                    zoneout_h=zone(self.zoneout_h, (T, B, O)), zoneout_c=zone(zc, (T, B, H)))

    def _mask_generator(self):
        """A Philox generator at this layer's key and the next call's counter."""
        self._mask_calls += 1
        return np.random.Generator(np.random.Philox(key=self._mask_key,
                                                    counter=self._mask_calls << 64))

    def _steps_as_sequence(self):
        """Streaming steps run as one-step sequence calls (cells with no step kernel)."""
        return bool(self.layer_norm or self.zoneout_h or self.zoneout_c)

    # -- structure -------------------------------------------------------------------------
    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def _out_width(self):
        """Width of h and of each direction's output: hidden_size (proj_size for a projection
        LSTM)."""
        return self.hidden_size

    def _state_widths(self):
        return (self._out_width,) if len(self._state_names) == 1 else (self._out_width,
                                                                       self.hidden_size)

    @property
    def output_size(self):
        if self.bidirectional and self.merge_mode == "concat":
            return 2 * self._out_width
        return self._out_width

    @staticmethod
    def _suffix(layer, direction):
        return f"_l{layer}" + ("_reverse" if direction else "")

    def _weights(self, layer, direction):
        sfx = self._suffix(layer, direction)
        p = self._params
        return (p["weight_ih" + sfx], p["weight_hh" + sfx], p.get("bias_ih" + sfx),
                p.get("bias_hh" + sfx))

    def _cell_parameters(self):
        """(name, shape) of the cell's parameters beyond the weights and biases, per layer
        and direction (the suffix is added)."""
        if not self.layer_norm:
            return ()
        GH, H = self._G * self.hidden_size, self.hidden_size
        out = (("ln_ih_weight", (GH,)), ("ln_ih_bias", (GH,)), ("ln_hh_weight", (GH,)),
               ("ln_hh_bias", (GH,)))
        return out + ((("ln_c_weight", (H,)), ("ln_c_bias", (H,))) if self._kind == "lstm"
                      else ())

    def _cell_weights(self, layer, direction):
        """What _cell_forward and _prepare_step take: the weights and biases, then the
        cell's own parameters."""
        sfx = self._suffix(layer, direction)
        return self._weights(layer, direction) + tuple(
            self._params[name + sfx] for name, _ in self._cell_parameters())

    def reset_parameters(self, seed=None):
        """Draw new weights with the layer's initializers (``seed``: int or Generator)."""
        rng = _init.as_generator(seed)
        H = self.hidden_size
        inits = {k: _init.get(v, k) for k, v in self._initializers.items()}
        for name, arr in self._params.items():
            if name.startswith("ln_"):        # LayerNorm starts as the identity
                arr[...] = 1 if "_weight" in name else 0
            elif name.startswith("weight_hr"):
                arr[...] = inits["recurrent_initializer"](arr.shape, rng, self.dtype, fan=H,
                                                          blocks=1)
            elif name.startswith("weight_peep"):
                arr[...] = 0          # a peephole LSTM starts as the plain LSTM (ONNX's default P)
            elif name.startswith("weight_ih"):
                arr[...] = inits["kernel_initializer"](arr.shape, rng, self.dtype, fan=H,
                                                       blocks=self._G)
            elif name.startswith("weight_hh"):
                arr[...] = inits["recurrent_initializer"](arr.shape, rng, self.dtype, fan=H,
                                                          blocks=self._G)
            else:
                arr[...] = inits["bias_initializer"](arr.shape, rng, self.dtype, fan=H)
                if self.unit_forget_bias:
                    # forget gate (block 1 of i|f|g|o) starts at 1 in total
                    arr[H:2 * H] = 1.0 if name.startswith("bias_ih") else 0.0
        self._weights_changed()

    def _on_weights_changed(self):
        self._step_weights = None

    def reset_states(self, states=None):
        """Forget the carried state of a stateful layer (or set it: same form as forward's
        ``state``)."""
        self._states = None if states is None else self._check_state(
            states, None if states is None else self._state_batch(states))

    def get_config(self):
        cfg = dict(input_size=self.input_size, hidden_size=self.hidden_size,
                   num_layers=self.num_layers, bias=self.bias, batch_first=self.batch_first,
                   dropout=self.dropout, bidirectional=self.bidirectional,
                   dtype=self.dtype.name, merge_mode=self.merge_mode,
                   return_sequences=self.return_sequences, return_state=self.return_state,
                   go_backwards=self.go_backwards, stateful=self.stateful)
        if not self.zero_output_for_mask:
            cfg["zero_output_for_mask"] = False
        if self.go_backwards_order != "valid":
            cfg["go_backwards_order"] = self.go_backwards_order
        cfg.update({k: v for k, v in self._initializers.items() if isinstance(v, str)})
        if self.unit_forget_bias:
            cfg["unit_forget_bias"] = True
        if self.clip_hidden_grad is not None:
            cfg["clip_hidden_grad"] = self.clip_hidden_grad
        if self.layer_norm:
            cfg.update(layer_norm=True, layer_norm_eps=self.layer_norm_eps)
        for name in ("input_dropout", "recurrent_dropout", "weight_drop"):
            if getattr(self, name):
                cfg[name] = getattr(self, name)
        if self.zoneout_h or self.zoneout_c:
            cfg["zoneout"] = ((self.zoneout_h, self.zoneout_c) if self._kind == "lstm"
                              else self.zoneout_h)
        cfg.update(self._cell_config())
        return cfg

    def _cell_config(self):
        return {}

    def _shape_hint(self, name, expected, got):
        G, H, cls = self._G, self.hidden_size, type(self).__name__
        if name.startswith("ln_") or len(got) != len(expected) or not got or not got[0]:
            return None
        if name.startswith("weight_hh") and len(got) == 2 and got[0] % got[1] == 0 \
                and got[0] // got[1] != G:
            return (f"{got[0] // got[1]} gate blocks of {got[1]} units where {cls} has {G}: "
                    f"weights of another cell type?")
        if got[0] % G:
            return f"{got[0]} rows are not {G} gate blocks: weights of another cell type?"
        if got[0] != expected[0]:
            return f"hidden_size: the layer has {H}, the state dict {got[0] // G}"
        if len(got) == 2 and got[1] != expected[1]:
            if name.startswith("weight_hh"):
                return f"hidden_size: the layer has {H}, the state dict {got[1]}"
            if name.endswith(("_l0", "_l0_reverse")):
                return f"input_size: the layer has {expected[1]}, the state dict {got[1]}"
            return (f"this layer's input is {expected[1]} wide (hidden_size x directions "
                    f"below), the state dict's {got[1]}: bidirectional mismatch?")
        return None

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{type(self).__name__} needs a 3-D input, got {input_shape}")
        lead = input_shape[:2]
        if not self.return_sequences:
            B = input_shape[0] if self.batch_first else input_shape[1]
            return (B, self.output_size)
        return (*lead, self.output_size)

    # -- states ----------------------------------------------------------------------------
    def _state_batch(self, state):
        first = state[0] if len(self._state_names) == 2 and isinstance(state, (tuple, list)) \
            else state
        arr = np.asarray(first)
        return arr.shape[1] if arr.ndim == 3 else None

    def _check_state(self, state, B, allow_none=False, argname="state"):
        """List of (L*D, B, width) arrays (h, and c for LSTM) from the public form; with
        `allow_none`, a None part means zeros."""
        LD = self.num_layers * self.num_directions
        names = self._state_names
        if len(names) == 2:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise TypeError(f"{argname} must be a tuple (h, c) for {type(self).__name__}, got "
                                f"{type(state).__name__}")
            parts = list(state)
        else:
            parts = [state]
        out = []
        for name, s, H in zip(names, parts, self._state_widths()):
            label = argname if len(names) == 1 else f"{argname}[{names.index(name)}] ({name})"
            if s is None and allow_none:
                out.append(np.zeros((LD, B, H), self.dtype))
                continue
            arr = float_input(label, s, self.dtype)
            if arr.shape != (LD, B, H):
                raise ValueError(f"{label} must have shape (num_layers * num_directions, B, H) "
                                 f"= ({LD}, {'B' if B is None else B}, {H}), got {arr.shape}")
            out.append(_c_array(arr))
        return out

    def _public_state(self, parts):
        return tuple(parts) if len(parts) == 2 else parts[0]

    # -- kernels ---------------------------------------------------------------------------
    def _cell_forward(self, x, states, weights, lengths, reverse, training, reg):
        """y, [final states], cache for one layer and direction; reg: the kernel's
        regularizer arguments (recurrent_mask, zoneout_h[, zoneout_c])."""
        raise NotImplementedError

    def _cell_backward(self, dy, d_finals, cache):
        """dx, [d initial states], dw_ih, dw_hh, db_ih, db_hh."""
        raise NotImplementedError

    # -- forward ---------------------------------------------------------------------------
    def _resolve_lengths(self, lengths, mask, T, B):
        if mask is not None:
            if lengths is not None:
                raise ValueError("give lengths or mask, not both")
            lengths = lengths_from_mask(mask, T, B, self.batch_first)
        return _prepare_lengths(lengths, T, B)

    def forward(self, x, state=None, lengths=None, mask=None, *, training=None):
        """Run the layer over a sequence.

        x: (T, B, input_size), or (B, T, input_size) with batch_first.  state: initial
        state(s), (num_layers * num_directions, B, H) each — ``h`` for RNN/GRU, ``(h, c)`` for
        LSTM — or None (zeros; for a stateful layer, the carried state).  lengths (B,) or a
        prefix mask give each row's valid steps.

        Returns ``(y, state)`` (just ``y`` with ``return_state=False``); ``y`` is
        (T, B, output_size) / (B, T, output_size), or (B, output_size) with
        ``return_sequences=False`` (each direction's final output, merged).
        """
        training = self._is_training(training)
        refuse_sequence_list(x, self.batch_first)
        x = float_input("x", x, self.dtype, ndim=3, what="3-D ((B, T, I) with batch_first)"
                        if self.batch_first else "3-D (T, B, I)")
        if x.shape[2] != self.input_size:
            raise ValueError(f"x must have input_size = {self.input_size} features in its "
                             f"last axis, got shape {x.shape}")
        if self.batch_first:
            x = x.transpose(1, 0, 2)
        T, B, _ = x.shape
        lengths = self._resolve_lengths(lengths, mask, T, B)
        if state is not None:
            init_states = self._check_state(state, B)
        elif self.stateful and self._states is not None:
            if self._states[0].shape[1] != B:
                raise ValueError(f"stateful {type(self).__name__} holds a state for batch size "
                                 f"{self._states[0].shape[1]} but x has batch size {B}; call "
                                 f"reset_states() first")
            init_states = self._states
        else:
            init_states = None

        L, D = self.num_layers, self.num_directions
        inp = x
        caches, masks, regs = [], [], []
        finals = [[None] * (L * D) for _ in self._state_names]
        gen = self._mask_generator() if training and self._draws_masks else None
        for layer in range(L):
            drop = None
            if layer and training and self.dropout:
                drop = (self._rng.random(inp.shape) >= self.dropout).astype(self.dtype)
                drop *= 1.0 / (1.0 - self.dropout)
                inp = inp * drop
            masks.append(drop)
            outs, layer_caches, layer_regs = [], [], []
            for direction in range(D):
                k = layer * D + direction
                states = ([s[k] for s in init_states] if init_states is not None
                          else [None] * len(self._state_names))
                reverse = bool(direction) != self.go_backwards
                reg = self._regularizers(gen, T, B, inp.shape[2])
                x_in = inp if reg["in_mask"] is None else inp * reg["in_mask"]
                weights = self._cell_weights(layer, direction)
                if reg["w_mask"] is not None:       # DropConnect on W_hh, this call
                    weights = (weights[0], weights[1] * reg["w_mask"]) + weights[2:]
                kernel_reg = {k: reg[k] for k in ("recurrent_mask", "zoneout_h", "zoneout_c")}
                y, fin, cache = self._cell_forward(x_in, states, weights, lengths, reverse,
                                                   training, kernel_reg)
                outs.append(y)
                layer_caches.append(cache)
                layer_regs.append(reg)
                for i, f in enumerate(fin):
                    finals[i][k] = f
            caches.append(layer_caches)
            regs.append(layer_regs)
            inp = outs[0] if D == 1 else np.concatenate(outs, axis=2)
        final_states = [np.stack(f) if B else np.zeros((L * D, 0, w), self.dtype)
                        for f, w in zip(finals, self._state_widths())]
        if self.stateful:
            self._states = [f.copy() for f in final_states]

        if self.return_sequences:
            tops = outs
        else:
            tops = [final_states[0][(L - 1) * D + d] for d in range(D)]
        y = self._merge(tops, inp if self.return_sequences else None)
        if self.return_sequences:
            y = self._arrange(y, lengths)
            if self.batch_first:
                y = y.transpose(1, 0, 2)
        self._cache = None
        if training:
            self._cache = dict(caches=caches, masks=masks, regs=regs, tops=tops,
                               lengths=lengths, T=T,
                               B=B, return_sequences=self.return_sequences,
                               batch_first=self.batch_first, n_layers=L)
        if self.return_state:
            return y, self._public_state(final_states)
        return y

    def _padding_repeats(self, lengths):
        """Padded steps repeat the output before them (zero_output_for_mask=False), and the
        padding is at the end of the output (not at its start, as with go_backwards_order
        'full')."""
        return (not self.zero_output_for_mask and lengths is not None
                and not (self.go_backwards and self.go_backwards_order == "full"))

    def _arrange(self, y, lengths):
        """The merged time-aligned output sequence (T, B, F) in the layer's output order:
        go_backwards reverses each row's valid steps ('valid') or the whole padded axis
        ('full', as Keras); zero_output_for_mask=False repeats each row's last output over
        its padded steps (as Keras)."""
        if self.go_backwards:
            y = (np.ascontiguousarray(y[::-1]) if self.go_backwards_order == "full"
                 else _flip_prefix(y, lengths))
        if self._padding_repeats(lengths):
            t = np.arange(y.shape[0])[:, None]
            src = np.minimum(t, lengths[None, :] - 1)
            y = np.take_along_axis(y, src[:, :, None], axis=0)
        return y

    def _arrange_grad(self, dy, lengths):
        """The adjoint of ``_arrange``: dy in output order -> time-aligned."""
        if self._padding_repeats(lengths):
            pad = (np.arange(dy.shape[0])[:, None] >= lengths[None, :])[:, :, None]
            folded = np.where(pad, dy, 0).sum(axis=0)
            dy = np.where(pad, 0, dy).astype(dy.dtype, copy=False)
            dy[lengths - 1, np.arange(dy.shape[1])] += folded
        if self.go_backwards:
            dy = (np.ascontiguousarray(dy[::-1]) if self.go_backwards_order == "full"
                  else _flip_prefix(dy, lengths))
        return dy

    def _merge(self, tops, concat):
        if len(tops) == 1:
            return tops[0]
        mode = self.merge_mode
        if mode == "concat":
            return concat if concat is not None else np.concatenate(tops, axis=-1)
        if mode == "sum":
            return tops[0] + tops[1]
        if mode == "ave":
            return (tops[0] + tops[1]) * 0.5
        return tops[0] * tops[1]

    def _unmerge(self, dy, tops):
        if len(tops) == 1:
            return [dy]
        mode, H = self.merge_mode, self._out_width
        if mode == "concat":
            return [dy[..., :H], dy[..., H:]]
        if mode == "sum":
            return [dy, dy]
        if mode == "ave":
            half = dy * 0.5
            return [half, half]
        return [dy * tops[1], dy * tops[0]]

    # -- backward --------------------------------------------------------------------------
    def backward(self, dy, dstate=None):
        """Gradient w.r.t. x of the last training-mode forward (consumes its cache).

        dy: gradient w.r.t. y (None: zeros).  dstate: gradient w.r.t. the returned final
        state (None: zeros).  Adds the parameter gradients into ``self.grads``; the gradient
        w.r.t. the initial state is left in ``self.state_grad`` (same form as ``state``).
        """
        c = self._cache
        if c is None:
            raise no_cache_error(self)
        self._cache = None
        L, D, H = c["n_layers"], self.num_directions, self._out_width
        T, B, lengths = c["T"], c["B"], c["lengths"]
        out_shape = ((T, B) if c["return_sequences"] else (B,)) + (self.output_size,)
        if c["return_sequences"] and c["batch_first"]:
            out_shape = (B, T, self.output_size)
        if dy is None:
            dy = np.zeros(out_shape, self.dtype)
        else:
            dy = float_input("dy", dy, self.dtype)
            if dy.shape != out_shape:
                raise ValueError(f"dy must have the shape of y, {out_shape}, got {dy.shape}")
        d_finals = [np.zeros((L * D, B, w), self.dtype) for w in self._state_widths()]
        if dstate is not None:
            d_finals = [a.copy() for a in self._check_state(dstate, B, allow_none=True,
                                                            argname="dstate")]
        if c["return_sequences"]:
            if c["batch_first"]:
                dy = dy.transpose(1, 0, 2)
            dy = self._arrange_grad(dy, lengths)
            d_tops = self._unmerge(dy, c["tops"])
            d_seq = d_tops
        else:
            d_tops = self._unmerge(dy, c["tops"])
            for d in range(D):
                d_finals[0][(L - 1) * D + d] += d_tops[d]
            d_seq = [None] * D
        d_init = [np.zeros((L * D, B, w), self.dtype) for w in self._state_widths()]
        grads = self._grads
        for layer in reversed(range(L)):
            d_inp = None
            for direction in range(D):
                k = layer * D + direction
                dx, d0, dw_ih, dw_hh, db_ih, db_hh, *extra = self._cell_backward(
                    d_seq[direction], [f[k] for f in d_finals], c["caches"][layer][direction])
                reg = c["regs"][layer][direction]
                if reg["w_mask"] is not None:
                    dw_hh = dw_hh * reg["w_mask"]
                if reg["in_mask"] is not None:
                    dx = dx * reg["in_mask"]
                sfx = self._suffix(layer, direction)
                for (name, _), g in zip(self._cell_parameters(), extra):
                    grads[name + sfx] += g
                grads["weight_ih" + sfx] += dw_ih
                grads["weight_hh" + sfx] += dw_hh
                if self.bias:
                    grads["bias_ih" + sfx] += db_ih
                    grads["bias_hh" + sfx] += db_hh
                for i, g in enumerate(d0):
                    d_init[i][k] = g
                d_inp = dx if d_inp is None else d_inp + dx
            if c["masks"][layer] is not None:
                d_inp *= c["masks"][layer]
            if layer:
                d_seq = [d_inp] if D == 1 else [d_inp[..., :H], d_inp[..., H:]]
        self.state_grad = self._public_state(d_init)
        return d_inp.transpose(1, 0, 2) if self.batch_first else d_inp

    # -- Sequential protocol ---------------------------------------------------------------
    uses_lengths = True

    def chain_forward(self, x, lengths):
        out = self.forward(x, lengths=lengths)
        return out[0] if self.return_state else out

    def chain_backward(self, dy):
        return self.backward(dy)

    # -- streaming -------------------------------------------------------------------------
    def step(self, x_t, state=None):
        """Advance one time step (streaming inference on packed weights; no dropout, no
        gradients).  x_t (B, input_size) or (input_size,); state (num_layers, B, H) each (or
        (num_layers, H) for a 1-D x_t) or None (zeros).  Returns ``(y_t, state)``.

        Packed weights are cached while the layer is in eval mode; after changing parameters
        by hand, call ``eval()`` again to repack."""
        if self.bidirectional:
            raise ValueError("step() cannot run a bidirectional layer: its reverse direction "
                             "needs the whole sequence")
        x = float_input("x_t", x_t, self.dtype, ndim=(1, 2),
                        what="(B, input_size) or (input_size,)")
        single = x.ndim == 1
        if x.shape[-1] != self.input_size:
            raise ValueError(f"x_t must have input_size = {self.input_size} features, got "
                             f"shape {x.shape}")
        xb = x[None] if single else x
        B = xb.shape[0]
        L = self.num_layers
        if state is None:
            parts = [np.zeros((L, B, w), self.dtype) for w in self._state_widths()]
        else:
            if single:                       # (num_layers, H) parts -> (num_layers, 1, H)
                def one(name, s, H):
                    if s is None:
                        return None
                    arr = float_input(name, s, self.dtype)
                    if arr.shape != (L, H):
                        raise ValueError(f"{name} must have shape (num_layers, H) = ({L}, {H}) "
                                         f"for a 1-D x_t, got {arr.shape}")
                    return arr[:, None]
                if len(self._state_names) == 2:
                    if not isinstance(state, (tuple, list)) or len(state) != 2:
                        raise TypeError(f"state must be a tuple (h, c) for "
                                        f"{type(self).__name__}, got {type(state).__name__}")
                    state = tuple(one(f"state[{i}] ({n})", s, w)
                                  for i, (n, s, w) in enumerate(zip(self._state_names, state,
                                                                    self._state_widths())))
                else:
                    state = one("state", state, self._out_width)
            parts = self._check_state(state, B, allow_none=True)
        sws = self._step_weights
        if sws is None:
            sws = [self._cell_weights(layer, 0) if self._steps_as_sequence()
                   else self._prepare_step(*self._cell_weights(layer, 0))
                   for layer in range(self.num_layers)]
            if not self.training:
                self._step_weights = sws
        inp = xb
        new = [np.empty_like(p) for p in parts]
        for layer in range(self.num_layers):
            states = [p[layer] for p in parts]
            if self._steps_as_sequence():
                reg = self._regularizers(None, 1, B, 0)
                reg = {k: reg[k] for k in ("recurrent_mask", "zoneout_h", "zoneout_c")}
                _, out, _ = self._cell_forward(inp[None], states, sws[layer], None, False,
                                               False, reg)
                out = [o for o in out]
            else:
                out = self._cell_step(inp, states, sws[layer])
            for i, o in enumerate(out):
                new[i][layer] = o
            inp = out[0]
        if single:
            return inp[0], self._public_state([n[:, 0] for n in new])
        return inp, self._public_state(new)

    # -- Keras weights ---------------------------------------------------------------------
    def _refuse_keras(self):
        extra = [name for name, _ in self._cell_parameters()]
        if extra:
            raise ValueError(f"Keras's {type(self).__name__} has no {', '.join(extra)}: this "
                             f"layer's weights have no Keras layout")
        if self.num_layers > 1 and self.go_backwards:
            raise ValueError("this layer runs all its num_layers={} layers backwards, but "
                             "stacked Keras go_backwards layers alternate (the second one's "
                             "input is already reversed): use one fastrnn layer per Keras "
                             "layer, as fastrnn.from_keras does".format(self.num_layers))
        if self.num_layers > 1 and self.bidirectional and self.merge_mode != "concat":
            raise ValueError(f"stacked Keras Bidirectional layers merge (merge_mode="
                             f"{self.merge_mode!r}) inside every layer, but this layer "
                             f"concatenates the directions between its layers and merges only "
                             f"at the top: use one bidirectional fastrnn layer per Keras "
                             f"layer, as fastrnn.from_keras does")

    def to_keras_weights(self):
        """The layer's weights as Keras 3 ``get_weights()`` lists, concatenated over layers
        (and, per layer, forward then backward as in ``keras.layers.Bidirectional``)."""
        self._refuse_keras()
        out = []
        for layer in range(self.num_layers):
            for direction in range(self.num_directions):
                out.extend(self._to_keras(*self._weights(layer, direction)))
        return out

    def from_keras_weights(self, weights):
        """Load weights in Keras 3 ``get_weights()`` layout (the inverse of
        ``to_keras_weights``).  Keras keeps one bias where PyTorch keeps two; the Keras bias
        goes to ``bias_ih`` and ``bias_hh`` is set to zero (same outputs)."""
        self._refuse_keras()
        if not isinstance(weights, (list, tuple)):
            raise TypeError(f"weights must be a list of arrays (Keras get_weights()), got "
                            f"{type(weights).__name__}")
        per = 3 if self.bias else 2
        n = self.num_layers * self.num_directions
        if len(weights) != per * n:
            raise ValueError(f"weights must hold {per * n} arrays ({per} per layer and "
                             f"direction), got {len(weights)}")
        new = {}
        for layer in range(self.num_layers):
            for direction in range(self.num_directions):
                k = (layer * self.num_directions + direction) * per
                w_ih, w_hh, b_ih, b_hh = self._weights(layer, direction)
                arrays = [_as_array(f"weights[{k + i}]", weights[k + i]) for i in range(per)]
                sfx = self._suffix(layer, direction)
                vals = self._from_keras(arrays, k, w_ih.shape[1])
                new["weight_ih" + sfx], new["weight_hh" + sfx] = vals[0], vals[1]
                if self.bias:
                    new["bias_ih" + sfx], new["bias_hh" + sfx] = vals[2], vals[3]
        self.load_state_dict(new)

    def _keras_bias_shape(self):
        return (self._G * self.hidden_size,)

    def _to_keras(self, w_ih, w_hh, b_ih, b_hh):
        out = [self._to_keras_gates(w_ih.T), self._to_keras_gates(w_hh.T)]
        if self.bias:
            out.append(self._keras_bias(b_ih, b_hh))
        return [np.ascontiguousarray(a) for a in out]

    def _keras_bias(self, b_ih, b_hh):
        return self._to_keras_gates(b_ih + b_hh)

    def _torch_biases(self, bias):
        return [self._from_keras_gates(bias), np.zeros(bias.shape[-1])]

    def _from_keras(self, arrays, k, in_size):
        H, G = self.hidden_size, self._G
        expect = [(in_size, G * H), (H, G * H), self._keras_bias_shape()]
        for i, a in enumerate(arrays):
            if a.shape != expect[i]:
                hint = ""
                if i == 2 and self._kind == "gru" and a.shape in ((2, G * H), (G * H,)):
                    hint = (f": a bias of Keras's GRU with reset_after={len(a.shape) == 2}, "
                            f"this layer has reset_after={self.reset_after} (fastrnn."
                            f"from_keras reads the option from the Keras layer)")
                raise ValueError(f"weights[{k + i}] must have shape {expect[i]}, got "
                                 f"{a.shape}{hint}")
            if a.dtype.kind not in "fiu":
                raise TypeError(f"weights[{k + i}] must hold numbers, got dtype {a.dtype}")
        out = [self._from_keras_gates(arrays[0]).T, self._from_keras_gates(arrays[1]).T]
        if self.bias:
            out += self._torch_biases(arrays[2])
        return out

    def _to_keras_gates(self, a):
        return a

    def _from_keras_gates(self, a):
        return a


class RNN(_Recurrent):
    """Elman RNN layer(s), ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``, act = tanh or relu.

    Arguments as ``torch.nn.RNN`` (input_size, hidden_size, num_layers, nonlinearity, bias,
    batch_first, dropout, bidirectional) plus dtype and the Keras-style options
    merge_mode, return_sequences, return_state, go_backwards, stateful, initializers
    (kernel_initializer, recurrent_initializer — e.g. "identity" with relu for an IRNN —,
    bias_initializer) and seed.  ``clip_hidden_grad=c`` clamps the gradient carried back
    through time to [-c, c] at every step of backward (see fastrnn.functional.rnn_backward).
    Padded steps (``lengths``) output zeros; Keras's semantics where they differ:
    ``zero_output_for_mask=False`` repeats each row's last valid output over its padded steps,
    and ``go_backwards_order="full"`` returns a go_backwards layer's outputs reversed over the
    whole padded time axis (padding first) instead of over each row's valid steps.
    Parameter names are PyTorch's.
    """
    _G = 1
    _kind = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, dtype=np.float32,
                 **kwargs):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, **kwargs)

    def _cell_config(self):
        return {"nonlinearity": self.nonlinearity}

    def _cell_forward(self, x, states, w, lengths, reverse, training, reg):
        y, hT, cache = F.rnn_forward(x, states[0], *w, nonlinearity=self.nonlinearity,
                                     lengths=lengths, reverse=reverse, training=training,
                                     recurrent_mask=reg["recurrent_mask"],
                                     zoneout_h=reg["zoneout_h"])
        return y, [hT], cache

    def _cell_backward(self, dy, d_finals, cache):
        g = F.rnn_backward(dy, d_finals[0], cache, clip_hidden_grad=self.clip_hidden_grad)
        return g.dx, [g.dh0], g.dw_ih, g.dw_hh, g.db_ih, g.db_hh

    def _prepare_step(self, *w):
        return F.prepare_rnn(*w, nonlinearity=self.nonlinearity, dtype=self.dtype)

    def _cell_step(self, x, states, sw):
        return [F.rnn_step(x, states[0], sw)]


class LSTM(_Recurrent):
    """LSTM layer(s), gates i|f|g|o as in ``torch.nn.LSTM``; state is ``(h, c)``.

    Arguments as ``torch.nn.LSTM`` plus dtype, Keras-style options (see ``RNN``),
    ``unit_forget_bias`` (forget-gate bias starts at 1) and ``peephole=True`` for diagonal
    peephole connections (Gers & Schmidhuber 2000; see
    ``fastrnn.functional.peephole_lstm_forward``): one more parameter per layer and direction,
    ``weight_peep_l{k}[_reverse]`` of shape (3*hidden_size,) = p_i|p_f|p_o, starting at zero.
    """
    _G = 4
    _kind = "lstm"
    _state_names = ("h", "c")

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, proj_size=0, *,
                 peephole=False, **kwargs):
        self.peephole = check_bool("peephole", peephole)
        if isinstance(proj_size, bool) or not isinstance(proj_size, (int, np.integer)) \
                or proj_size < 0:
            raise ValueError(f"proj_size must be an integer >= 0, got {proj_size!r}")
        self.proj_size = int(proj_size)
        if self.proj_size and self.proj_size >= check_int("hidden_size", hidden_size):
            raise ValueError(f"proj_size must be smaller than hidden_size ({hidden_size}), got "
                             f"{self.proj_size}")
        if self.proj_size and self.peephole:
            raise ValueError("peephole=True with proj_size is not supported")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, **kwargs)

    @property
    def _out_width(self):
        return self.proj_size or self.hidden_size

    def _shape_hint(self, name, expected, got):
        if self.proj_size and name.startswith(("weight_hh", "weight_hr")):
            return (f"proj_size {self.proj_size}, hidden_size {self.hidden_size}: expected "
                    f"{tuple(expected)}")
        return super()._shape_hint(name, expected, got)

    def _cell_parameters(self):
        if self.proj_size:
            return (("weight_hr", (self.proj_size, self.hidden_size)),)
        if self.peephole:
            return (("weight_peep", (3 * self.hidden_size,)),)
        return super()._cell_parameters()

    def _steps_as_sequence(self):
        return bool(self.proj_size) or super()._steps_as_sequence()

    def _cell_config(self):
        cfg = {"peephole": True} if self.peephole else {}
        if self.proj_size:
            cfg["proj_size"] = self.proj_size
        return cfg

    def _cell_forward(self, x, states, w, lengths, reverse, training, reg):
        if self.layer_norm:
            y, hT, cT, cache = F.layernorm_lstm_forward(
                x, states[0], states[1], *w, eps=self.layer_norm_eps, lengths=lengths,
                reverse=reverse, training=training, **reg)
        elif self.proj_size:
            y, hT, cT, cache = F.projection_lstm_forward(x, states[0], states[1], *w,
                                                         lengths=lengths, reverse=reverse,
                                                         training=training)
        elif self.peephole:
            y, hT, cT, cache = F.peephole_lstm_forward(x, states[0], states[1], *w,
                                                       lengths=lengths, reverse=reverse,
                                                       training=training)
        else:
            y, hT, cT, cache = F.lstm_forward(x, states[0], states[1], *w, lengths=lengths,
                                              reverse=reverse, training=training, **reg)
        return y, [hT, cT], cache

    def _cell_backward(self, dy, d_finals, cache):
        back = (F.layernorm_lstm_backward if self.layer_norm else
                F.projection_lstm_backward if self.proj_size else
                F.peephole_lstm_backward if self.peephole else F.lstm_backward)
        g = back(dy, d_finals[0], d_finals[1], cache, clip_hidden_grad=self.clip_hidden_grad)
        out = (g.dx, [g.dh0, g.dc0], g.dw_ih, g.dw_hh, g.db_ih, g.db_hh)
        return out + tuple(g[len(out) + 1:])

    def _prepare_step(self, w_ih, w_hh, b_ih, b_hh, extra=None):
        return F.prepare_lstm(w_ih, w_hh, b_ih, b_hh, w_peep=extra, dtype=self.dtype)

    def _cell_step(self, x, states, sw):
        return list(F.lstm_step(x, tuple(states), sw))


class GRU(_Recurrent):
    """GRU layer(s), gates r|z|n as in ``torch.nn.GRU``.

    ``reset_after=True`` (default; PyTorch, Keras 3) applies the reset gate after the
    recurrent product, ``False`` before it (Cho et al. 2014).  Other arguments as ``RNN``.
    """
    _G = 3
    _kind = "gru"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, *, reset_after=True,
                 **kwargs):
        self.reset_after = check_bool("reset_after", reset_after)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, **kwargs)

    def _cell_config(self):
        return {"reset_after": self.reset_after}

    def _cell_forward(self, x, states, w, lengths, reverse, training, reg):
        reg = {k: v for k, v in reg.items() if k != "zoneout_c"}
        if self.layer_norm:
            y, hT, cache = F.layernorm_gru_forward(
                x, states[0], *w, eps=self.layer_norm_eps, lengths=lengths, reverse=reverse,
                training=training, **reg)
        else:
            y, hT, cache = F.gru_forward(x, states[0], *w, reset_after=self.reset_after,
                                         lengths=lengths, reverse=reverse, training=training,
                                         **reg)
        return y, [hT], cache

    def _cell_backward(self, dy, d_finals, cache):
        back = F.layernorm_gru_backward if self.layer_norm else F.gru_backward
        g = back(dy, d_finals[0], cache, clip_hidden_grad=self.clip_hidden_grad)
        return (g.dx, [g.dh0], g.dw_ih, g.dw_hh, g.db_ih, g.db_hh) + tuple(g[6:])

    def _prepare_step(self, *w):
        return F.prepare_gru(*w, reset_after=self.reset_after, dtype=self.dtype)

    def _cell_step(self, x, states, sw):
        return [F.gru_step(x, states[0], sw)]

    # Keras orders the gates z|r|h; PyTorch r|z|n.  Swapping the first two blocks converts
    # either way.
    def _swap(self, a):
        H = self.hidden_size
        a = np.asarray(a)
        return np.concatenate([a[..., H:2 * H], a[..., :H], a[..., 2 * H:]], axis=-1)

    _to_keras_gates = _swap
    _from_keras_gates = _swap

    def _keras_bias_shape(self):
        return (2, 3 * self.hidden_size) if self.reset_after else (3 * self.hidden_size,)

    def _keras_bias(self, b_ih, b_hh):
        if self.reset_after:          # (2, 3H): input bias, recurrent bias
            return np.stack([self._swap(b_ih), self._swap(b_hh)])
        return self._swap(b_ih + b_hh)

    def _torch_biases(self, bias):
        if self.reset_after:
            bias = self._swap(bias)
            return [bias[0], bias[1]]
        return super()._torch_biases(bias)
