r"""``QuantizedLSTM`` and ``quantize``: an LSTM whose weight matrices are stored as int8 or bf16.

The math is the eval form of :class:`lstmkit.LSTM` (every variant: layer norm, peepholes,
coupled gates, no forget gate, projection, zoneout as its expectation, recurrent dropout and
weight drop as the identity), with ``W_ih``, ``W_hh`` and ``W_hr`` replaced by

- ``int8``: :math:`W_{jk} \approx s_j q_{jk}`, :math:`s_j = \max_k |W_{jk}| / 127`,
  :math:`q_{jk} = \mathrm{round}(W_{jk}/s_j)` (symmetric, one scale per output row, as
  :func:`torch.ao.quantization.quantize_dynamic`); or
- ``bf16``: :math:`W` rounded to bfloat16.

What multiplies the int8 matrices is the ``activations`` option (int8 mode only):

- ``"int8"`` (the default of the int8 mode; torch's dynamic quantization semantics): each
  vector multiplied by an int8 matrix (:math:`x_t`, :math:`h_{t-1}`, :math:`m_t` before
  ``W_hr``; per step and batch row) is quantized on the fly to int8 from its max-abs,
  :math:`s_a = \max_k |a_k| / 127`, :math:`q_k = \mathrm{round}(a_k / s_a)`; the product is an
  exact integer dot product (VNNI where the CPU has it) rescaled by :math:`s_a s_j`. The input
  projection of every step is then done by the kernel (each :math:`x_t` quantized on its own),
  so a T-step call equals T one-step calls exactly.
- ``"float"`` (weight-only; the bf16 mode always): the activations stay float32 and multiply
  the dequantized weights; the result is the float LSTM with the rounded weights up to float
  rounding. The input projection of all steps is one GEMM with the dequantized ``W_ih`` before
  the scan, except for a single step (T = 1, a streaming call), where the kernel folds it into
  the step.

Biases, peepholes, layer-norm parameters and states stay float32. The recurrence runs on the
fused quantized kernel (:func:`lstmkit.kernels.cpu.quant.quant_recurrence`). Inference only:
no gradients, no gate recording. The option is part of :meth:`QuantizedLSTM.config` and of a
quantized checkpoint's model.json (``"quantized": {"activations": ...}``); a checkpoint written
before the option existed has no such field and loads as ``"float"``, the math it was made with.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from lstmkit.kernels.cpu import quant
from lstmkit.reference.options import VariantOptions

__all__ = ["ACTIVATIONS", "MODES", "QuantizedLSTM", "dequantized", "quantize", "quantized_like"]

MODES = quant.MODES
ACTIVATIONS = quant.ACTIVATIONS
# The variant options that change the eval-form math (weight_drop, recurrent_dropout and
# forget_bias do not: the identity in eval, an initial value).
_EVAL_OPTIONS = (
    "layer_norm",
    "peephole",
    "coupled",
    "forget_gate",
    "zoneout_h",
    "zoneout_c",
    "layer_norm_eps",
)


def _check_mode(mode: object) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode  # type: ignore[return-value]


def _check_activations(mode: str, activations: object) -> str:
    """``activations`` checked against ``mode``; None is the mode's default (int8: "int8",
    bf16: "float", the only one it has)."""
    if activations is None:
        return "int8" if mode == "int8" else "float"
    if activations not in ACTIVATIONS:
        raise ValueError(
            f"activations must be one of {', '.join(ACTIVATIONS)}, got {activations!r}"
        )
    if mode == "bf16" and activations != "float":
        raise ValueError(
            "activations='int8' needs int8 weights; the bf16 mode keeps float activations"
        )
    return activations  # type: ignore[return-value]


class QuantizedLSTM(nn.Module):
    """An eval-form LSTM with int8 (per-row scales) or bf16 weight matrices; see the module doc.

    Build it from a float LSTM with :meth:`from_float` (an :class:`lstmkit.LSTM` or a
    :class:`torch.nn.LSTM` in eval mode), or empty with the same arguments and load a state dict
    (``weight_ih_l0`` int8 or bf16, ``scale_ih_l0`` float32, ...). ``forward(input, hx=None,
    lengths=None)`` takes what :class:`torch.nn.LSTM` takes (batched or unbatched, batch_first,
    PackedSequence) and returns ``output, (h_n, c_n)``; ``lengths (B,)`` is the number of valid
    steps of each row of a padded batch (the rest output zeros and leave the state alone).
    ``activations`` (``"int8"`` or ``"float"``, None: the mode's default, ``"int8"`` for int8
    weights) says what multiplies the int8 weights (module doc).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        mode: str = "int8",
        activations: str | None = None,
        layer_norm: bool = False,
        peephole: bool = False,
        coupled: bool = False,
        forget_gate: bool = True,
        zoneout_h: float = 0.0,
        zoneout_c: float = 0.0,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.mode = _check_mode(mode)
        self.activations = _check_activations(mode, activations)
        # pack_int8 of each int8 weight for the int8-activation kernel, keyed by the weight's
        # storage and version (load_state_dict and in-place edits bump it): (key, Int8Pack)
        self._packs: dict[str, tuple[tuple[int, int], quant.Int8Pack]] = {}
        opts = VariantOptions(
            layer_norm=layer_norm,
            peephole=peephole,
            coupled=coupled,
            forget_gate=forget_gate,
            zoneout_h=zoneout_h,
            zoneout_c=zoneout_c,
            layer_norm_eps=layer_norm_eps,
        )
        self.variant_options = opts
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.bidirectional = bias, batch_first, bidirectional
        self.proj_size = proj_size
        H, P = hidden_size, proj_size or hidden_size
        D = 2 if bidirectional else 1
        wdtype = torch.int8 if mode == "int8" else torch.bfloat16
        for k in range(num_layers):
            for d in range(D):
                sfx = self._sfx(k, d)
                in_size = input_size if k == 0 else P * D
                mats = [("ih", 4 * H, in_size), ("hh", 4 * H, P)]
                if proj_size:
                    mats.append(("hr", P, H))
                for name, n, m in mats:
                    self.register_buffer(f"weight_{name}{sfx}", torch.zeros(n, m, dtype=wdtype))
                    if mode == "int8":
                        self.register_buffer(f"scale_{name}{sfx}", torch.ones(n))
                vectors = []
                if bias:
                    vectors += [("bias_ih", 4 * H), ("bias_hh", 4 * H)]
                if peephole:
                    vectors += [("weight_ci", H), ("weight_cf", H), ("weight_co", H)]
                if layer_norm:
                    vectors += [("ln_weight_ih", 4 * H), ("ln_weight_hh", 4 * H)]
                    vectors += [("ln_weight_c", H), ("ln_bias_c", H)]
                for name, n in vectors:
                    self.register_buffer(name + sfx, torch.zeros(n))
        self.eval()

    @staticmethod
    def _sfx(k: int, d: int) -> str:
        return f"_l{k}" + ("_reverse" if d else "")

    def __getattr__(self, name: str):
        if name in _EVAL_OPTIONS:
            return getattr(self.__dict__["variant_options"], name)
        return super().__getattr__(name)

    @property
    def output_size(self) -> int:
        return (self.proj_size or self.hidden_size) * (2 if self.bidirectional else 1)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, mode={self.mode}"
        s += f", activations={self.activations}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.batch_first:
            s += ", batch_first=True"
        default = VariantOptions()
        for name in _EVAL_OPTIONS:
            if getattr(self.variant_options, name) != getattr(default, name):
                s += f", {name}={getattr(self.variant_options, name)!r}"
        return s

    def config(self) -> dict[str, object]:
        """The constructor's arguments (what a checkpoint stores to rebuild it empty)."""
        return {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bias": self.bias,
            "batch_first": self.batch_first,
            "bidirectional": self.bidirectional,
            "proj_size": self.proj_size,
            "mode": self.mode,
            "activations": self.activations,
            **{name: getattr(self.variant_options, name) for name in _EVAL_OPTIONS},
        }

    @classmethod
    def like(
        cls, lstm: nn.LSTM, mode: str = "int8", activations: str | None = None
    ) -> QuantizedLSTM:
        """An empty QuantizedLSTM of ``lstm``'s configuration (zero weights, unit scales), for
        a state dict to load into; built on the current default device (meta included)."""
        opts = getattr(lstm, "variant_options", VariantOptions())
        return cls(
            lstm.input_size,
            lstm.hidden_size,
            lstm.num_layers,
            lstm.bias,
            lstm.batch_first,
            lstm.bidirectional,
            lstm.proj_size,
            mode=mode,
            activations=activations,
            **{name: getattr(opts, name) for name in _EVAL_OPTIONS},
        )

    @classmethod
    def from_float(
        cls, lstm: nn.LSTM, mode: str = "int8", activations: str | None = None
    ) -> QuantizedLSTM:
        """Quantize an :class:`lstmkit.LSTM` or :class:`torch.nn.LSTM` (in eval mode)."""
        _check_activations(_check_mode(mode), activations)
        if not isinstance(lstm, nn.LSTM):
            raise TypeError(f"from_float takes an lstmkit.LSTM or torch.nn.LSTM, got {type(lstm)}")
        if lstm.training:
            raise ValueError(
                "quantize needs the model in eval mode (call model.eval() first): a quantized "
                "LSTM computes the eval form (zoneout as its expectation, no dropout)"
            )
        w0 = lstm.weight_ih_l0
        if w0.device.type != "cpu":
            raise ValueError(f"quantize runs on the CPU; the LSTM is on {w0.device}")
        q = cls.like(lstm, mode, activations)
        with torch.no_grad():
            for name, buf in q.named_buffers():
                if name.startswith("scale_"):
                    continue
                src = getattr(lstm, name).detach().to(torch.float32)
                if name.startswith(("weight_ih", "weight_hh", "weight_hr")):
                    wq, scale = quant.quantize_weight(src, mode)
                    buf.copy_(wq)
                    if scale is not None:
                        getattr(q, "scale_" + name[len("weight_") :]).copy_(scale)
                else:
                    buf.copy_(src)
        return q

    def to_float(self) -> nn.LSTM:
        """An :class:`lstmkit.LSTM` (eval mode) holding the dequantized weights: the same math
        as this module up to float rounding, with what the float LSTM has and this one lacks
        (gate recording for ``lstmkit inspect``, autograd)."""
        from lstmkit.nn._lstm import LSTM

        f = LSTM(
            self.input_size,
            self.hidden_size,
            self.num_layers,
            self.bias,
            self.batch_first,
            0.0,
            self.bidirectional,
            self.proj_size,
            device=self.weight_hh_l0.device,
            **{name: getattr(self.variant_options, name) for name in _EVAL_OPTIONS},
        )
        with torch.no_grad():
            for name, p in f.named_parameters():
                if name.startswith(("weight_ih", "weight_hh", "weight_hr")):
                    scale = getattr(self, "scale_" + name[len("weight_") :], None)
                    p.copy_(quant.dequantize_weight(getattr(self, name), scale))
                else:
                    p.copy_(getattr(self, name))
        return f.eval()

    def train(self, mode: bool = True):
        if mode:
            raise ValueError(
                "a QuantizedLSTM is for inference only; it cannot be put in train mode"
            )
        return super().train(False)

    # -- forward ------------------------------------------------------------------------------

    def _w(self, name: str, sfx: str) -> tuple[Tensor | None, Tensor | None]:
        w = getattr(self, f"weight_{name}{sfx}", None)
        return w, getattr(self, f"scale_{name}{sfx}", None)

    def _pack(self, name: str, sfx: str) -> quant.Int8Pack | None:
        """The cached :func:`~lstmkit.kernels.cpu.quant.pack_int8` of ``weight_{name}{sfx}``."""
        w = getattr(self, f"weight_{name}{sfx}", None)
        if w is None:
            return None
        key = (w.untyped_storage().data_ptr(), w._version)
        hit = self._packs.get(name + sfx)
        if hit is None or hit[0] != key:
            hit = (key, quant.pack_int8(w))
            self._packs[name + sfx] = hit
        return hit[1]

    # -- the streaming step: one time step without the general path's per-call Python ---------

    def _step_args(self) -> list[tuple]:
        """Per layer and direction, the kernel's arguments that do not change between calls:
        ``(before, after, packs, checked)``, where ``before`` goes before ``h0, c0`` (the input
        projection's weights), ``after`` after them, ``packs`` at the end, and ``checked`` the
        int8 weights whose version the packs were made at. Cached in ``_step_cache``; dropped by
        ``load_state_dict``, ``_apply`` and attribute assignment."""
        cached = self.__dict__.get("_step_cache")
        if cached is not None and all(t._version == v for t, v in cached[1]):
            return cached[0]
        opts = self.variant_options
        D = 2 if self.bidirectional else 1
        args, checked = [], []

        def g(name: str):
            t = getattr(self, name, None)
            return None if t is None else t.contiguous()

        for k in range(self.num_layers):
            for d in range(D):
                sfx = self._sfx(k, d)
                before = (g("weight_ih" + sfx), g("scale_ih" + sfx), g("bias_ih" + sfx))
                before += (g("ln_weight_ih" + sfx),)
                after = tuple(
                    g(n + sfx)
                    for n in (
                        "weight_hh", "scale_hh", "bias_hh", "weight_hr", "scale_hr", "weight_ci",
                        "weight_cf", "weight_co", "ln_weight_hh", "ln_weight_c", "ln_bias_c",
                    )
                )  # fmt: skip
                after += (float(opts.zoneout_h), float(opts.zoneout_c))
                packs: tuple = (None,) * 6
                if self.activations == "int8":
                    packs = ()
                    for name in ("ih", "hh", "hr"):
                        pk = self._pack(name, sfx)
                        packs += (None, None) if pk is None else (pk.packed, pk.rowsum)
                        w = getattr(self, f"weight_{name}{sfx}", None)
                        if w is not None:
                            checked.append((w, w._version))
                args.append((before, after, packs))
        self.__dict__["_step_cache"] = (args, checked)
        return args

    def _drop_step(self) -> None:
        self.__dict__.pop("_step_cache", None)

    def __setattr__(self, name, value):
        self.__dict__.pop("_step_cache", None)
        super().__setattr__(name, value)

    def _apply(self, fn, *args, **kwargs):
        self._drop_step()
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs):
        self._drop_step()
        return super()._load_from_state_dict(*args, **kwargs)

    def _step(self, x: Tensor, hx):
        """``forward`` for one time step of float32 tensors, or None for anything else (the
        general path then runs, with its checks and errors). The same kernel call per layer as
        the general path, without rebuilding its arguments."""
        I, H = self.input_size, self.hidden_size
        P = self.proj_size or H
        if x.dim() == 3:
            if x.shape[1 if self.batch_first else 0] != 1 or x.shape[2] != I:
                return None
            B, batched = x.shape[0 if self.batch_first else 1], True
        elif x.dim() == 2 and x.shape[0] == 1 and x.shape[1] == I:
            B, batched = 1, False
        else:
            return None
        if B == 0:
            return None
        D = 2 if self.bidirectional else 1
        LD = self.num_layers * D
        if hx is None:
            h0, c0 = x.new_zeros(LD, B, P), x.new_zeros(LD, B, H)
        else:
            if type(hx) not in (tuple, list) or len(hx) != 2:
                return None
            h0, c0 = hx
            if type(h0) is not Tensor or type(c0) is not Tensor:
                return None
            if h0.dtype != torch.float32 or c0.dtype != torch.float32:
                return None
            want_h, want_c = ((LD, B, P), (LD, B, H)) if batched else ((LD, P), (LD, H))
            if h0.shape != want_h or c0.shape != want_c:
                return None
            h0, c0 = h0.reshape(LD, B, P).contiguous(), c0.reshape(LD, B, H).contiguous()
        ext = quant.load_extension()
        opts = self.variant_options
        tail = (
            None,
            False,
            opts.coupled,
            opts.forget_gate,
            float(opts.layer_norm_eps),
            quant._resolve_isa(None),
            self.activations == "int8",
        )
        layer_in = x.reshape(1, B, I).contiguous()
        h_n, c_n = [], []
        args = self._step_args()
        for k in range(self.num_layers):
            outs = []
            for d in range(D):
                idx = k * D + d
                before, after, packs = args[idx]
                out, h, c = ext.forward(layer_in, *before, h0[idx], c0[idx], *after, *tail, *packs)
                outs.append(out)
                h_n.append(h)
                c_n.append(c)
            layer_in = outs[0] if D == 1 else torch.cat(outs, -1)
        h_n, c_n = torch.stack(h_n), torch.stack(c_n)
        if not batched:
            return layer_in[0], (h_n[:, 0], c_n[:, 0])
        return (layer_in.transpose(0, 1) if self.batch_first else layer_in), (h_n, c_n)

    @torch.no_grad()
    def forward(self, input, hx=None, lengths: Tensor | None = None):  # noqa: A002
        if lengths is None and type(input) is Tensor and input.dtype == torch.float32:
            result = self._step(input, hx)
            if result is not None:
                return result
        packed = isinstance(input, PackedSequence)
        sorted_idx = unsorted_idx = None
        if packed:
            if lengths is not None:
                raise ValueError("lengths is for padded input; a PackedSequence has its own")
            sorted_idx, unsorted_idx = input.sorted_indices, input.unsorted_indices
            x, lengths = pad_packed_sequence(input)  # (T, B, I) in the caller's row order
            is_batched = True
        else:
            x = input
            if not isinstance(x, Tensor) or x.dim() not in (2, 3):
                raise ValueError(
                    "input must be a 3-D (T, B, I) tensor ((B, T, I) with batch_first), 2-D "
                    f"(T, I) unbatched, or a PackedSequence; got {getattr(x, 'shape', type(x))}"
                )
            is_batched = x.dim() == 3
            if not is_batched:
                x = x.unsqueeze(1)
            elif self.batch_first:
                x = x.transpose(0, 1)
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"input must have input_size={self.input_size} features, got shape {tuple(x.shape)}"
            )
        if x.shape[0] == 0:
            raise ValueError("input has 0 time steps; an LSTM needs at least one")
        x = x.to(torch.float32)
        T, B = x.shape[0], x.shape[1]
        D = 2 if self.bidirectional else 1
        H, P = self.hidden_size, self.proj_size or self.hidden_size
        if lengths is not None:
            lengths = torch.as_tensor(lengths).to("cpu", torch.int64).reshape(-1)
            if lengths.numel() != B or (
                lengths.numel() and (lengths.min() < 1 or lengths.max() > T)
            ):
                raise ValueError(
                    f"lengths must be {B} values in [1, T = {T}], got {lengths.tolist()}"
                )
        if hx is None:
            h0 = x.new_zeros(self.num_layers * D, B, P)
            c0 = x.new_zeros(self.num_layers * D, B, H)
        else:
            h0, c0 = (t.to(torch.float32) for t in hx)
            if not is_batched:
                h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)
            if tuple(h0.shape) != (self.num_layers * D, B, P) or tuple(c0.shape) != (
                self.num_layers * D,
                B,
                H,
            ):
                raise ValueError(
                    f"hx must be (h_0 {(self.num_layers * D, B, P)}, c_0 "
                    f"{(self.num_layers * D, B, H)}), got {tuple(h0.shape)}, {tuple(c0.shape)}"
                )
        opts = self.variant_options
        layer_in = x
        h_n, c_n = [], []
        for k in range(self.num_layers):
            outs = []
            for d in range(D):
                sfx = self._sfx(k, d)
                inputs = self._layer_inputs(layer_in, sfx, h0[k * D + d], c0[k * D + d])
                out, h, c = quant.quant_recurrence(
                    inputs,
                    lengths,
                    reverse=d == 1,
                    coupled=opts.coupled,
                    forget_gate=opts.forget_gate,
                    layer_norm_eps=opts.layer_norm_eps,
                    activations=self.activations,
                )
                outs.append(out)
                h_n.append(h)
                c_n.append(c)
            layer_in = outs[0] if D == 1 else torch.cat(outs, -1)
        out = layer_in
        h_n, c_n = torch.stack(h_n), torch.stack(c_n)
        if packed:
            # Rows were in the caller's order throughout (the kernel takes lengths in any
            # order); the output packs them back in the input's sorted order.
            if sorted_idx is not None:
                out, lengths = out.index_select(1, sorted_idx), lengths[sorted_idx.cpu()]
            data = pack_padded_sequence(out, lengths).data
            return PackedSequence(data, input.batch_sizes, sorted_idx, unsorted_idx), (h_n, c_n)
        if not is_batched:
            return out.squeeze(1), (h_n.squeeze(1), c_n.squeeze(1))
        if self.batch_first:
            out = out.transpose(0, 1)
        return out, (h_n, c_n)

    def _layer_inputs(self, x: Tensor, sfx: str, h0: Tensor, c0: Tensor):
        opts = self.variant_options
        w_ih, s_ih = self._w("ih", sfx)
        w_hh, s_hh = self._w("hh", sfx)
        w_hr, s_hr = self._w("hr", sfx)
        b_ih = getattr(self, "bias_ih" + sfx, None)
        ln_ih = getattr(self, "ln_weight_ih" + sfx, None)
        g = lambda name: getattr(self, name + sfx, None)  # noqa: E731
        common = dict(
            h0=h0,
            c0=c0,
            weight_hh=w_hh,
            scale_hh=s_hh,
            bias_hh=g("bias_hh"),
            weight_hr=w_hr,
            scale_hr=s_hr,
            weight_ci=g("weight_ci"),
            weight_cf=g("weight_cf"),
            weight_co=g("weight_co"),
            ln_weight_hh=g("ln_weight_hh"),
            ln_weight_c=g("ln_weight_c"),
            ln_bias_c=g("ln_bias_c"),
            zoneout_h=opts.zoneout_h,
            zoneout_c=opts.zoneout_c,
        )
        if self.activations == "int8":
            # The kernel quantizes each x_t and does x W_ih^T itself, for every step.
            return quant.QuantRecurrenceInputs(
                inp=x,
                weight_ih=w_ih,
                scale_ih=s_ih,
                bias_ih=b_ih,
                ln_weight_ih=ln_ih,
                pack_ih=self._pack("ih", sfx),
                pack_hh=self._pack("hh", sfx),
                pack_hr=self._pack("hr", sfx),
                **common,
            )
        if x.shape[0] == 1:
            # One step (a streaming call): the kernel does x W_ih^T as one more GEMV, reading
            # the int8 weights, instead of dequantizing all of W_ih for one product.
            return quant.QuantRecurrenceInputs(
                inp=x, weight_ih=w_ih, scale_ih=s_ih, bias_ih=b_ih, ln_weight_ih=ln_ih, **common
            )
        w = quant.dequantize_weight(w_ih, s_ih)
        if ln_ih is not None:
            xg = F.layer_norm(
                F.linear(x, w), (4 * self.hidden_size,), ln_ih, b_ih, opts.layer_norm_eps
            )
        else:
            xg = F.linear(x, w, b_ih)
        return quant.QuantRecurrenceInputs(inp=xg, **common)


def quantize(model: nn.Module, mode: str = "int8", activations: str | None = None) -> nn.Module:
    """A copy of ``model`` with every :class:`lstmkit.LSTM` / :class:`torch.nn.LSTM` in it (the
    model itself included) replaced by a :class:`QuantizedLSTM` of that ``mode`` (``"int8"`` or
    ``"bf16"``); ``model`` is left as it is. The model must be in eval mode.

    ``activations``: ``"int8"`` (the default with int8 weights: dynamic quantization of what
    multiplies them, as :func:`torch.ao.quantization.quantize_dynamic`; integer dot products)
    or ``"float"`` (weight-only: float activations times the dequantized weights, the only
    choice for bf16); see the module doc."""
    activations = _check_activations(_check_mode(mode), activations)
    if not isinstance(model, nn.Module):
        raise TypeError(f"quantize takes a torch.nn.Module, got {type(model).__name__}")
    training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    if training:
        raise ValueError(
            f"quantize needs the model in eval mode (call model.eval() first); in train mode: "
            f"{', '.join(training[:3])}{' ...' if len(training) > 3 else ''}"
        )
    if isinstance(model, nn.LSTM):
        return QuantizedLSTM.from_float(model, mode, activations)
    out = copy.deepcopy(model)
    found = [(name, m) for name, m in out.named_modules() if isinstance(m, nn.LSTM)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no LSTM to quantize")
    for name, m in found:
        parent_name, _, attr = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        setattr(parent, attr, QuantizedLSTM.from_float(m, mode, activations))
    return out


def quantized_like(model: nn.Module, mode: str, activations: str | None = None) -> nn.Module:
    """``model`` with every LSTM replaced, in place, by an empty :class:`QuantizedLSTM` of its
    configuration (:meth:`QuantizedLSTM.like`): the structure a quantized checkpoint's weights
    load into (:func:`lstmkit.infer.load.load_trained`, which passes ``activations="float"``
    for a checkpoint that does not name them)."""
    activations = _check_activations(_check_mode(mode), activations)
    if isinstance(model, nn.LSTM):
        return QuantizedLSTM.like(model, mode, activations)
    for name, m in list(model.named_modules()):
        if isinstance(m, nn.LSTM):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, QuantizedLSTM.like(m, mode, activations))
    return model


def dequantized(model: nn.Module) -> nn.Module:
    """``model`` itself when it holds no :class:`QuantizedLSTM`, else a copy with each replaced
    by :meth:`QuantizedLSTM.to_float` (what ``lstmkit inspect`` records the gates of)."""
    if isinstance(model, QuantizedLSTM):
        return model.to_float()
    found = [name for name, m in model.named_modules() if isinstance(m, QuantizedLSTM)]
    if not found:
        return model
    out = copy.deepcopy(model)
    for name in found:
        parent_name, _, attr = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        setattr(parent, attr, getattr(parent, attr).to_float())
    return out
