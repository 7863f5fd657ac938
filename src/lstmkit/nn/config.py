"""Typed, frozen configuration of an :class:`lstmkit.LSTM`; CLI flags are generated from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from lstmkit.nn import _checks
from lstmkit.reference.options import VariantOptions
from lstmkit.utils.meta import help_meta as _help


@dataclass(frozen=True)
class LSTMConfig:
    """Every constructor argument of :class:`lstmkit.LSTM`, with its meaning."""

    input_size: int = field(metadata=_help("features of each input step (I)"))
    hidden_size: int = field(metadata=_help("units of the cell state c (H)"))
    num_layers: int = field(default=1, metadata=_help("stacked LSTM layers (L)"))
    bias: bool = field(default=True, metadata=_help("use the biases b_ih and b_hh"))
    batch_first: bool = field(default=False, metadata=_help("input and output are (B, T, *)"))
    dropout: float = field(
        default=0.0, metadata=_help("dropout on the outputs of every layer but the last")
    )
    bidirectional: bool = field(default=False, metadata=_help("run a reverse direction too (D=2)"))
    proj_size: int = field(
        default=0, metadata=_help("project h to this size (LSTMP); 0 means no projection")
    )
    layer_norm: bool = field(
        default=False, metadata=_help("layer-normalise input and recurrent pre-activations and c")
    )
    peephole: bool = field(default=False, metadata=_help("diagonal peepholes from c to the gates"))
    coupled: bool = field(default=False, metadata=_help("coupled input-forget gate, f = 1 - i"))
    forget_gate: bool = field(
        default=True, metadata=_help("False gives the 1997 LSTM without forget gate (f = 1)")
    )
    zoneout_h: float = field(default=0.0, metadata=_help("zoneout rate of h, in [0, 1)"))
    zoneout_c: float = field(default=0.0, metadata=_help("zoneout rate of c, in [0, 1)"))
    recurrent_dropout: float = field(
        default=0.0, metadata=_help("variational dropout on h before W_hh, one mask per sequence")
    )
    weight_drop: float = field(
        default=0.0,
        metadata=_help(
            "DropConnect on W_hh (AWD-LSTM weight drop): one mask per forward call in training"
        ),
    )
    forget_bias: float = field(
        default=0.0, metadata=_help("initial forget-gate bias (Jozefowicz et al. 2015 use 1.0)")
    )
    layer_norm_eps: float = field(default=1e-5, metadata=_help("epsilon of the layer norms"))
    backend: str = field(
        default="auto",
        metadata=_help("auto, torch (vanilla only), cpu, triton (CUDA), python or reference"),
    )

    def __post_init__(self) -> None:
        # The numbers no later check would catch: nan passes every comparison-free path.
        _checks.check_rate("dropout", self.dropout)
        self.variant_options  # noqa: B018 - builds VariantOptions, which checks the variants

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def variant_options(self) -> VariantOptions:
        """The variant options of this config, checked."""
        return VariantOptions.from_object(self)

    @property
    def is_vanilla(self) -> bool:
        """True when the math is exactly torch.nn.LSTM's."""
        return self.variant_options.is_vanilla
