"""What :class:`lstmkit.LSTM` and :class:`lstmkit.LSTMCell` share: their variant options, the
variant parameters, and the input projection before the recurrence."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmkit.kernels import dispatch
from lstmkit.reference.options import VariantOptions


class VariantModule:
    """Mixin of the LSTM layer and cell: the options live in one frozen ``variant_options``.

    The options read as attributes (``module.peephole``, ``module.zoneout_h``...), as in
    torch's own modules; they are set once, by :meth:`_init_variants`.
    """

    variant_options: VariantOptions
    backend: str

    @staticmethod
    def _check_variants(backend: str, cell: bool, **options) -> VariantOptions:
        """The checked options (naming a bad argument); call before ``nn.Module.__init__``."""
        opts = VariantOptions(**options)
        dispatch.check_options(opts, backend, cell=cell)
        return opts

    def _init_variants(self, opts: VariantOptions, backend: str) -> None:
        self.variant_options = opts
        self.backend = backend

    @property
    def is_vanilla(self) -> bool:
        """True when the recurrence's math is exactly torch's (weight drop aside)."""
        return self.variant_options.is_vanilla

    def _register_variant_parameters(self, suffixes: list[str], factory: dict) -> None:
        """Peephole and layer-norm parameters for each layer/direction suffix."""
        opts, H = self.variant_options, self.hidden_size
        for sfx in suffixes:
            if opts.peephole:
                for gate in ("ci", "cf", "co"):
                    self.register_parameter(
                        f"weight_{gate}{sfx}", nn.Parameter(torch.empty(H, **factory))
                    )
            if opts.layer_norm:
                for name, size in (("ih", 4 * H), ("hh", 4 * H), ("c", H)):
                    self.register_parameter(
                        f"ln_weight_{name}{sfx}", nn.Parameter(torch.empty(size, **factory))
                    )
                self.register_parameter(f"ln_bias_c{sfx}", nn.Parameter(torch.empty(H, **factory)))

    def _reset_variant_parameters(self, suffixes: list[str]) -> None:
        opts, H = self.variant_options, self.hidden_size
        stdv = 1.0 / math.sqrt(H)
        with torch.no_grad():
            for sfx in suffixes:
                if opts.peephole:
                    for gate in ("ci", "cf", "co"):
                        getattr(self, f"weight_{gate}{sfx}").uniform_(-stdv, stdv)
                if opts.layer_norm:
                    for name in ("ih", "hh", "c"):
                        getattr(self, f"ln_weight_{name}{sfx}").fill_(1.0)
                    getattr(self, f"ln_bias_c{sfx}").zero_()
                if opts.forget_bias and self.bias:
                    # b_ih + b_hh is what the gate sees: put the whole bias in one of them.
                    getattr(self, f"bias_ih{sfx}")[H : 2 * H].fill_(opts.forget_bias)
                    getattr(self, f"bias_hh{sfx}")[H : 2 * H].zero_()

    def _input_projection(self, x: Tensor, sfx: str) -> Tensor:
        """``xg = x W_ih^T + b_ih`` for all steps at once (``LN(x W_ih^T) gamma + b_ih`` with
        layer norm): one GEMM before the recurrence."""
        opts = self.variant_options
        w = getattr(self, "weight_ih" + sfx)
        b_ih = getattr(self, "bias_ih" + sfx) if self.bias else None
        # The bias rides along in the GEMM (addmm) or in the layer norm's shift, saving a pass
        # over the (T, B, 4H) tensor; F.layer_norm is reference.variants.layer_norm, fused.
        if opts.layer_norm:
            ln = getattr(self, "ln_weight_ih" + sfx)
            return F.layer_norm(
                F.linear(x, w), (4 * self.hidden_size,), ln, b_ih, opts.layer_norm_eps
            )
        return F.linear(x, w, b_ih)


def _option_property(name: str) -> property:
    return property(lambda self: getattr(self.variant_options, name), doc=f"variant option {name}")


for _name in VariantOptions.fields():
    setattr(VariantModule, _name, _option_property(_name))
