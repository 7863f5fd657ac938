"""Rebuild a trained run from its checkpoint, and check that its task has the verb asked for."""

from __future__ import annotations

import os

import torch
from torch import nn

from lstmkit.tasks.base import Task, get_task
from lstmkit.train.checkpoint import Checkpoint, load_checkpoint, load_weights
from lstmkit.utils.device import resolve_device
from lstmkit.utils.errors import UserError

NEEDS = {
    "generate": "it does not generate text; generate needs a language model, task lm",
    "translate": "translate needs a translation model",
    "transcribe": "transcribe needs an asr-ctc model",
}
"""What a verb that only some tasks have needs, for the message of a run without it."""
PREDICT_INSTEAD = ("transcribe",)
"""Verbs whose message points to ``lstmkit predict`` where the run has it: predict gives this
run's outputs, whatever the task (a regression for adding, labels for spoken-words...)."""


class UnsupportedVerb(UserError):
    """A verb that the run's task does not declare (``generate`` on a sentiment run...)."""


def require(task: Task, verb: str, where: str) -> None:
    """Raise :class:`UnsupportedVerb` (one line naming ``where``, the task and the verbs it
    has) unless ``verb`` is one of the task's declared capabilities."""
    if verb not in task.capabilities:
        need = NEEDS.get(verb, "")
        if verb in PREDICT_INSTEAD and "predict" in task.capabilities:
            need += f"; `lstmkit predict` gives this {task.name} model's outputs"
        need = f" ({need})" if need else ""
        raise UnsupportedVerb(
            f"{where}: this run's task, {task.name!r}, has no {verb}{need}; "
            f"it supports {', '.join(task.verbs())}"
        )


def load_trained(
    path: str | os.PathLike, device: torch.device, *, allow_nonfinite: bool = False
) -> tuple[Task, nn.Module, Checkpoint]:
    """The task, the model in eval mode on ``device``, and the checkpoint of ``path``.

    The task is rebuilt from the checkpoint's configuration and its model checked against the
    weight file's header (on the meta device) before any weight is read or allocated.
    ``allow_nonfinite`` loads NaN or infinite weights (for debugging a diverged run)."""
    rebuilt: list[Task] = []

    def build(meta: dict) -> nn.Module:
        name = meta.get("task")
        if not isinstance(name, str):
            raise UserError("names no task")
        with torch.device("cpu"):  # the task's own tensors are real; only the model is meta
            rebuilt.append(get_task(name).from_checkpoint_meta(meta))
        return _as_stored(rebuilt[-1].build_model(), meta)

    ckpt = load_checkpoint(path, build=build, allow_nonfinite=allow_nonfinite)
    task = rebuilt[-1]
    model = _as_stored(task.build_model(), ckpt.meta)
    if ckpt.meta.get("quantized") and device.type != "cpu":
        raise UserError(f"{path}: a quantized model runs on the CPU; use --device cpu")
    load_weights(model, ckpt.weights, ckpt.path)
    return task, model.to(device).eval(), ckpt


def _as_stored(model: nn.Module, meta: dict) -> nn.Module:
    """The model as the checkpoint stores it: with ``"quantized": {"mode": ..., "activations":
    ...}`` in model.json (``lstmkit quantize``), each LSTM is a
    :class:`~lstmkit.nn.quantized.QuantizedLSTM`. A checkpoint without ``activations`` (written
    before the option existed) was made for, and loads with, float activations."""
    q = meta.get("quantized")
    if not q:
        return model
    mode = q.get("mode") if isinstance(q, dict) else None
    if mode not in ("int8", "bf16"):
        raise UserError(f"quantized.mode must be int8 or bf16, got {mode!r}")
    activations = q.get("activations", "float")
    if activations not in ("int8", "float") or (mode == "bf16" and activations != "float"):
        raise UserError(
            f"quantized.activations must be int8 or float (float with bf16), got {activations!r}"
        )
    from lstmkit.nn.quantized import quantized_like

    return quantized_like(model, mode, activations)


def load_for(
    verb: str, checkpoint: str | os.PathLike, device: str, allow_nonfinite: bool = False
) -> tuple[Task, nn.Module, Checkpoint, torch.device]:
    """:func:`load_trained` for the command ``verb``, on the ``--device`` named ``device``; a
    run whose task does not declare ``verb`` is one :class:`UnsupportedVerb` line
    naming the task and the verbs it has."""
    dev = resolve_device(device)
    task, model, ckpt = load_trained(checkpoint, dev, allow_nonfinite=allow_nonfinite)
    require(task, verb, str(checkpoint))
    return task, model, ckpt, dev
