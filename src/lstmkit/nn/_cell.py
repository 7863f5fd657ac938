"""``lstmkit.LSTMCell``: a drop-in for :class:`torch.nn.LSTMCell` with variants."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmkit.nn import _checks
from lstmkit.nn._lstm import set_variant_options
from lstmkit.nn.config import variants_are_vanilla
from lstmkit.reference.lstm import CellOptions, lstm_recurrent_step, unused_weight_cf
from lstmkit.reference.variants import variational_dropout_mask, zoneout_mask


class LSTMCell(nn.LSTMCell):
    r"""One LSTM step, a drop-in for :class:`torch.nn.LSTMCell`, with variants.

    .. math::
        \begin{array}{ll}
        i = \sigma(W_{ii} x + b_{ii} + W_{hi} h + b_{hi}) \\
        f = \sigma(W_{if} x + b_{if} + W_{hf} h + b_{hf}) \\
        g = \tanh(W_{ig} x + b_{ig} + W_{hg} h + b_{hg}) \\
        o = \sigma(W_{io} x + b_{io} + W_{ho} h + b_{ho}) \\
        c' = f \odot c + i \odot g \\
        h' = o \odot \tanh(c')
        \end{array}

    Same constructor, parameters and ``forward(input, hx=None) -> (h', c')`` as torch's cell;
    the vanilla cell runs torch's fused kernel. The variant options are those of
    :class:`lstmkit.LSTM` (``layer_norm``, ``peephole``, ``coupled``, ``forget_gate``,
    ``zoneout_h``, ``zoneout_c``, ``forget_bias``), with parameter names without the ``_l0``
    suffix (``weight_ci``, ``ln_weight_hh``...). A cell sees one step, so variational recurrent
    dropout takes its per-sequence mask as an argument: ``forward(x, hx, dropout_mask=m)``
    with ``m = cell.recurrent_dropout_mask(batch)`` drawn once per sequence. ``weight_drop``
    (DropConnect on ``weight_hh``) draws its mask at every call in training, that is once per
    step; :class:`lstmkit.LSTM` draws it once per sequence.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device=None,
        dtype=None,
        *,
        layer_norm: bool = False,
        peephole: bool = False,
        coupled: bool = False,
        forget_gate: bool = True,
        zoneout_h: float = 0.0,
        zoneout_c: float = 0.0,
        recurrent_dropout: float = 0.0,
        weight_drop: float = 0.0,
        forget_bias: float = 0.0,
        layer_norm_eps: float = 1e-5,
        backend: str = "auto",
    ) -> None:
        _checks.check_int("input_size", input_size, 1)
        _checks.check_int("hidden_size", hidden_size, 1)
        _checks.check_bool("bias", bias)
        _checks.check_factory(device, dtype)
        _checks.check_rate("weight_drop", weight_drop)
        variant_kw = dict(
            layer_norm=layer_norm,
            peephole=peephole,
            coupled=coupled,
            forget_gate=forget_gate,
            zoneout_h=zoneout_h,
            zoneout_c=zoneout_c,
            recurrent_dropout=recurrent_dropout,
            forget_bias=forget_bias,
            layer_norm_eps=layer_norm_eps,
            backend=backend,
        )
        set_variant_options(None, **variant_kw)
        self._variant_ready = False
        super().__init__(input_size, hidden_size, bias, device, dtype)
        set_variant_options(self, **variant_kw)
        self.weight_drop = float(weight_drop)
        factory = {"device": device, "dtype": dtype}
        H = hidden_size
        if peephole:
            for gate in ("ci", "cf", "co"):
                self.register_parameter(f"weight_{gate}", nn.Parameter(torch.empty(H, **factory)))
        if layer_norm:
            for name, size in (("ih", 4 * H), ("hh", 4 * H), ("c", H)):
                self.register_parameter(
                    f"ln_weight_{name}", nn.Parameter(torch.empty(size, **factory))
                )
            self.ln_bias_c = nn.Parameter(torch.empty(H, **factory))
        self._variant_ready = True
        self._reset_variant_parameters()

    @property
    def is_vanilla(self) -> bool:
        return variants_are_vanilla(self)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if getattr(self, "_variant_ready", False):
            self._reset_variant_parameters()

    def _reset_variant_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size)
        H = self.hidden_size
        with torch.no_grad():
            if self.peephole:
                for gate in ("ci", "cf", "co"):
                    getattr(self, f"weight_{gate}").uniform_(-stdv, stdv)
            if self.layer_norm:
                for name in ("ih", "hh", "c"):
                    getattr(self, f"ln_weight_{name}").fill_(1.0)
                self.ln_bias_c.zero_()
            if self.forget_bias and self.bias:
                self.bias_ih[H : 2 * H].fill_(self.forget_bias)
                self.bias_hh[H : 2 * H].zero_()

    def recurrent_dropout_mask(self, batch_size: int) -> Tensor:
        """A fresh per-sequence mask ``(B, H)`` for ``forward(..., dropout_mask=...)``."""
        w = self.weight_hh
        return variational_dropout_mask((batch_size, self.hidden_size), self.recurrent_dropout, w)

    def forward(self, input: Tensor, hx=None, *, dropout_mask: Tensor | None = None):  # noqa: A002
        w = self.weight_ih
        if torch.is_tensor(input):
            _checks.check_device("input", input)
        x = _checks.check_tensor("input", input, w)
        if x.dim() not in (1, 2):
            raise ValueError(
                f"LSTMCell input must be 2-D (B, I) or 1-D (I,) unbatched, got {x.dim()}-D "
                f"with shape {tuple(x.shape)}"
            )
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"input must have input_size={self.input_size} features in its last dimension, "
                f"got shape {tuple(x.shape)}"
            )
        is_batched = x.dim() == 2
        B = x.shape[0] if is_batched else None
        if hx is not None:
            if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise TypeError(f"hx must be a tuple (h, c), got {type(hx).__name__}")
            expected = (B, self.hidden_size) if is_batched else (self.hidden_size,)
            for name, t in (("hx[0] (h)", hx[0]), ("hx[1] (c)", hx[1])):
                _checks.check_tensor(name, t, w)
                _checks.check_shape(name, t, expected)
        if dropout_mask is not None:
            if not self.recurrent_dropout:
                raise ValueError("dropout_mask was given but recurrent_dropout is 0")
            _checks.check_tensor("dropout_mask", dropout_mask, w)
            # Unbatched input takes (H,) or the (1, H) of recurrent_dropout_mask(1).
            if is_batched or tuple(dropout_mask.shape) != (1, self.hidden_size):
                expected = (B, self.hidden_size) if is_batched else (self.hidden_size,)
                _checks.check_shape("dropout_mask", dropout_mask, expected)
        w_hh = self.weight_hh
        if self.weight_drop and self.training:
            w_hh = F.dropout(w_hh, self.weight_drop, True)
        elif self.is_vanilla and self.backend in ("auto", "torch"):
            return super().forward(x, hx)
        if self.backend == "torch" and not self.is_vanilla:
            raise ValueError("backend='torch' runs only the vanilla cell")
        if not is_batched:
            x = x.unsqueeze(0)
        Bn = x.shape[0]
        if hx is None:
            h_prev = x.new_zeros(Bn, self.hidden_size)
            c_prev = x.new_zeros(Bn, self.hidden_size)
        else:
            h_prev, c_prev = hx
            if not is_batched:
                h_prev, c_prev = h_prev.unsqueeze(0), c_prev.unsqueeze(0)
        b_ih = self.bias_ih if self.bias else None
        if self.layer_norm:  # b_ih is the layer norm's shift: LN(x W_ih^T) * gamma + b_ih
            xg = F.layer_norm(
                F.linear(x, self.weight_ih),
                (4 * self.hidden_size,),
                self.ln_weight_ih,
                b_ih,
                self.layer_norm_eps,
            )
        else:
            xg = F.linear(x, self.weight_ih, b_ih)
        shape = (Bn, self.hidden_size)
        zh = zoneout_mask(shape, self.zoneout_h, self.training, x) if self.zoneout_h else None
        zc = zoneout_mask(shape, self.zoneout_c, self.training, x) if self.zoneout_c else None
        dm = dropout_mask if self.training else None
        opts = CellOptions(self.coupled, self.forget_gate, self.layer_norm_eps)
        step = lstm_recurrent_step(
            xg,
            h_prev,
            c_prev,
            w_hh,
            self.bias_hh if self.bias else None,
            None,
            getattr(self, "weight_ci", None),
            getattr(self, "weight_cf", None),
            getattr(self, "weight_co", None),
            getattr(self, "ln_weight_hh", None),
            getattr(self, "ln_weight_c", None),
            getattr(self, "ln_bias_c", None),
            zh,
            zc,
            dm,
            opts,
        )
        h, c = unused_weight_cf(getattr(self, "weight_cf", None), opts, step.h, step.c)
        if not is_batched:
            h, c = h.squeeze(0), c.squeeze(0)
        return h, c
