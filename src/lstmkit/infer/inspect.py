"""``lstmkit inspect``: PNG plots of the gates and the cell state over time for some inputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lstmkit.infer.inputs import (
    MAX_INSPECT_CHARS,
    allow_nonfinite_field,
    arguments_field,
    checkpoint_field,
    device_field,
    read_inputs,
)
from lstmkit.infer.load import load_for
from lstmkit.utils.meta import help_meta as _help


@dataclass(frozen=True)
class InspectConfig:
    """Options of ``lstmkit inspect``."""

    checkpoint: str = checkpoint_field()
    inputs: tuple[str, ...] = arguments_field("inputs in the task's text format")
    input: str = field(default="", metadata=_help("read inputs from this file, one per line"))
    out: str = field(default="inspect", metadata=_help("folder for the PNG files"))
    device: str = device_field()
    allow_nonfinite: bool = allow_nonfinite_field()


def inspect(cfg: InspectConfig) -> list[Path]:
    """Gate PNGs for the inputs (one test example when there are none)."""
    items = read_inputs(cfg.inputs, cfg.input, max_chars=MAX_INSPECT_CHARS)
    task, model, _, dev = load_for("inspect", cfg.checkpoint, cfg.device, cfg.allow_nonfinite)
    from lstmkit.nn.quantized import dequantized

    # A quantized run (lstmkit quantize): its kernel records no gates; the float LSTM with the
    # dequantized weights computes the same to float rounding, and does.
    return task.inspect(dequantized(model), items, Path(cfg.out), dev)
