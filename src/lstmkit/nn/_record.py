"""Gate introspection: record i, f, g, o, c and h of every layer and direction over time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from torch import Tensor, nn


@dataclass
class GateTrace:
    """The gates and states of one layer and direction over a forward pass.

    Each tensor is laid out like the module's output: ``(T, B, H)``, ``(B, T, H)`` with
    ``batch_first`` or ``(T, H)`` for unbatched input (``h`` has ``P`` features with a
    projection). Packed input gives ``(T, B, H)`` padded with zeros, in the caller's batch order.
    ``c`` and ``h`` are the states after each step (after zoneout). All are detached.
    """

    module: str
    layer: int
    direction: int
    i: Tensor
    f: Tensor
    g: Tensor
    o: Tensor
    c: Tensor
    h: Tensor

    def as_dict(self) -> dict[str, Tensor]:
        return {k: getattr(self, k) for k in ("i", "f", "g", "o", "c", "h")}


class GateRecorder:
    """Collects :class:`GateTrace` objects; index it by ``(layer, direction)``.

    ``recorder[layer, direction]`` (or ``recorder[module_name, layer, direction]`` when a model
    holds several LSTMs) gives the latest trace; ``recorder.traces`` keeps them all in call order.
    """

    def __init__(self) -> None:
        self.traces: list[GateTrace] = []

    def add(self, trace: GateTrace) -> None:
        self.traces.append(trace)

    def __getitem__(self, key: tuple) -> GateTrace:
        if len(key) == 2:
            match = [t for t in self.traces if (t.layer, t.direction) == tuple(key)]
        elif len(key) == 3:
            match = [t for t in self.traces if (t.module, t.layer, t.direction) == tuple(key)]
        else:
            raise KeyError(f"use (layer, direction) or (module, layer, direction), got {key!r}")
        if not match:
            have = sorted({(t.module, t.layer, t.direction) for t in self.traces})
            raise KeyError(f"no gates recorded for {key!r}; recorded: {have}")
        return match[-1]

    def __len__(self) -> int:
        return len(self.traces)

    def as_dict(self) -> dict[tuple[int, int], GateTrace]:
        """``{(layer, direction): trace}`` of the latest call."""
        return {(t.layer, t.direction): t for t in self.traces}


@contextmanager
def record_gates(model: nn.Module) -> Iterator[GateRecorder]:
    """Record the gates of every :class:`lstmkit.LSTM` inside ``model`` during the block.

    >>> with record_gates(model) as gates:
    ...     model(x)
    >>> gates[0, 0].f  # forget gate of layer 0, forward direction

    Works in train and eval mode and with or without autograd; outside the block nothing is
    recorded and nothing is paid.
    """
    recorder = GateRecorder()
    tagged: list[nn.Module] = []
    for name, mod in model.named_modules():
        if hasattr(mod, "_gate_recorder"):
            mod._gate_recorder = (recorder, name)
            tagged.append(mod)
    if not tagged:
        raise ValueError(f"record_gates: {type(model).__name__} contains no lstmkit.LSTM")
    try:
        yield recorder
    finally:
        for mod in tagged:
            mod._gate_recorder = None
