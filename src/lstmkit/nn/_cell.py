"""``lstmkit.LSTMCell``: a drop-in for :class:`torch.nn.LSTMCell` with variants."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmkit.kernels import dispatch
from lstmkit.nn import _checks
from lstmkit.nn._variants import VariantModule
from lstmkit.reference.lstm import RecurrenceInputs
from lstmkit.reference.variants import variational_dropout_mask, zoneout_mask


class LSTMCell(VariantModule, nn.LSTMCell):
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

    ``backend``: ``"auto"`` runs torch's cell for the vanilla math and the eager reference step
    (:func:`lstmkit.reference.lstm.lstm_recurrence` over one step) with variants; ``"torch"``
    runs torch's cell and is vanilla only; ``"cpu"``, ``"triton"``, ``"python"`` and
    ``"reference"`` run that backend's recurrence for one step (see
    :func:`lstmkit.kernels.dispatch.plan`).
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
        opts = self._check_variants(
            backend,
            cell=True,
            layer_norm=layer_norm,
            peephole=peephole,
            coupled=coupled,
            forget_gate=forget_gate,
            zoneout_h=zoneout_h,
            zoneout_c=zoneout_c,
            recurrent_dropout=recurrent_dropout,
            weight_drop=weight_drop,
            forget_bias=forget_bias,
            layer_norm_eps=layer_norm_eps,
        )
        self._variant_ready = False
        super().__init__(input_size, hidden_size, bias, device, dtype)
        self._init_variants(opts, backend)
        self._register_variant_parameters([""], {"device": device, "dtype": dtype})
        self._variant_ready = True
        self._reset_variant_parameters([""])

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if getattr(self, "_variant_ready", False):
            self._reset_variant_parameters([""])

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
        plan = dispatch.plan(self.variant_options, self.backend, x.device, x.dtype, step=True)
        if plan.uses_torch:
            if w_hh is self.weight_hh:
                return super().forward(x, hx)
            return self._torch_step(x, hx, w_hh, is_batched)
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
        shape = (1, Bn, self.hidden_size)  # one time step
        zh = zoneout_mask(shape, self.zoneout_h, self.training, x) if self.zoneout_h else None
        zc = zoneout_mask(shape, self.zoneout_c, self.training, x) if self.zoneout_c else None
        dm = dropout_mask if self.training else None
        if dm is not None and dm.dim() == 1:
            dm = dm.unsqueeze(0)
        inputs = RecurrenceInputs(
            xg=self._input_projection(x, "").unsqueeze(0),
            h0=h_prev.contiguous(),
            c0=c_prev.contiguous(),
            weight_hh=w_hh,
            bias_hh=self.bias_hh if self.bias else None,
            weight_ci=getattr(self, "weight_ci", None),
            weight_cf=getattr(self, "weight_cf", None),
            weight_co=getattr(self, "weight_co", None),
            ln_weight_hh=getattr(self, "ln_weight_hh", None),
            ln_weight_c=getattr(self, "ln_weight_c", None),
            ln_bias_c=getattr(self, "ln_bias_c", None),
            zoneout_h=zh,
            zoneout_c=zc,
            dropout_h=dm,
        )
        _, h, c = plan.recurrence(inputs, None, False, self.variant_options.cell_options)
        if not is_batched:
            h, c = h.squeeze(0), c.squeeze(0)
        return h, c

    def _torch_step(self, x: Tensor, hx, w_hh: Tensor, is_batched: bool):
        """torch's fused cell with this call's DropConnect ``W_hh``."""
        if not is_batched:
            x = x.unsqueeze(0)
        if hx is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            hx = (zeros, zeros)
        elif not is_batched:
            hx = (hx[0].unsqueeze(0), hx[1].unsqueeze(0))
        b_ih, b_hh = (self.bias_ih, self.bias_hh) if self.bias else (None, None)
        h, c = torch.lstm_cell(x, hx, self.weight_ih, w_hh, b_ih, b_hh)
        if not is_batched:
            h, c = h.squeeze(0), c.squeeze(0)
        return h, c
