"""``lstmkit inspect``: PNG plots of the gates and the cell state over time for some inputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lstmkit.infer.inputs import MAX_INSPECT_CHARS, read_inputs
from lstmkit.infer.load import load_for
from lstmkit.utils.device import DEVICES
from lstmkit.utils.meta import help_meta as _help


@dataclass(frozen=True)
class InspectConfig:
    """Options of ``lstmkit inspect``."""

    checkpoint: str = field(
        metadata=_help("a run folder, or its best/ or last/ checkpoint", argument=True)
    )
    inputs: tuple[str, ...] = field(
        default=(), metadata=_help("inputs in the task's text format", argument=True)
    )
    input: str = field(default="", metadata=_help("read inputs from this file, one per line"))
    out: str = field(default="inspect", metadata=_help("folder for the PNG files"))
    device: str = field(default="auto", metadata=_help("where to run", choices=DEVICES))
    allow_nonfinite: bool = field(
        default=False,
        metadata=_help("load NaN or infinite weights anyway (for debugging a diverged run)"),
    )


def inspect(cfg: InspectConfig) -> list[Path]:
    """Gate PNGs for the inputs (one test example when there are none)."""
    items = read_inputs(cfg.inputs, cfg.input, max_chars=MAX_INSPECT_CHARS)
    task, model, _, dev = load_for("inspect", cfg.checkpoint, cfg.device, cfg.allow_nonfinite)
    return task.inspect(model, items, Path(cfg.out), dev)
