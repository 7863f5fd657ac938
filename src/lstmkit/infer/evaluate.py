"""``lstmkit evaluate``: a trained run's metrics on its validation and/or test set, or on a
labelled file of the user's."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lstmkit.infer.inputs import (
    allow_nonfinite_field,
    check_input_path,
    checkpoint_field,
    device_field,
    read_field,
    read_options,
)
from lstmkit.infer.load import load_for
from lstmkit.tasks.base import Task
from lstmkit.train.checkpoint import Checkpoint
from lstmkit.utils.errors import UserError
from lstmkit.utils.meta import help_meta as _help


@dataclass(frozen=True)
class EvaluateConfig:
    """Options of ``lstmkit evaluate``."""

    checkpoint: str = checkpoint_field()
    split: str = field(
        default="test",
        metadata=_help("which evaluation set", choices=("valid", "test", "both")),
    )
    data: str = field(
        default="",
        metadata=_help(
            "evaluate on this file instead (a labelled file, or text for lm: the formats the "
            "task trains from, read with the run's column options unless given)"
        ),
    )
    json: bool = field(default=False, metadata=_help("print the metrics as one JSON object"))
    plots: str = field(
        default="",
        metadata=_help("write the task's evaluation plots (e.g. a confusion matrix) here"),
    )
    device: str = device_field()
    allow_nonfinite: bool = allow_nonfinite_field()
    format: str = read_field("format")
    text_column: str = read_field("text_column")
    label_column: str = read_field("label_column")
    header: bool | None = read_field("header")
    quoting: str = read_field("quoting")
    encoding: str = read_field("encoding")


DATA_FILE = {"lm": "a text file"}
"""What ``--data FILE`` is for a task, where it is not a labelled file."""


def _no_split(task: Task, split: str, checkpoint: str) -> str:
    what = DATA_FILE.get(task.name, "a labelled file")
    return (
        f"{checkpoint}: this {task.name} run has no {split} set to evaluate (it was trained "
        f"without {task.split_options}); score {what} with `lstmkit evaluate "
        f"{checkpoint} --data FILE`" + ("" if split == "valid" else ", or use --split valid")
    )


def evaluate_data(
    task: Task, model: nn.Module, path: str | os.PathLike, device: torch.device, **options: Any
) -> dict[str, float]:
    """Metrics of ``model`` on the labelled file ``path``, read as the task reads its training
    data (CSV/TSV/JSONL, folders, line files for sentiment; a manifest or a folder per label
    for speech; text files for lm; ``SRC,TGT`` or a ``PREFIX`` of PREFIX.LANG files for
    translation) with the run's options, or those given in ``options`` (``text_column=...``,
    :data:`lstmkit.tasks.base.READ_OPTIONS`). The file becomes the task's split ``"data"``
    (for :meth:`Task.evaluation_plots`). A file with nothing to score is a :class:`UserError`.
    """
    check_data_paths(str(path))
    split = task.use_data(str(path), **options)
    with torch.no_grad():
        metrics = task.evaluate(model, split, device)
    if not metrics:
        raise UserError(f"--data: {path}: nothing to evaluate")
    return metrics


def check_data_paths(data: str) -> None:
    """Each existing file of ``--data`` (comma-separated where the task takes several) must be
    a regular file or a folder: a FIFO or a device would block the reader or fill memory. A
    missing one may be a ``PREFIX`` of the task's files: its reader names it."""
    for part in data.split(",") if data else ():
        if Path(part).exists():
            check_input_path(Path(part), "--data")


def evaluate_split(
    task: Task, model: nn.Module, split: str, device: torch.device, checkpoint: str
) -> dict[str, float]:
    """Metrics of ``model`` on the run's own ``split`` (``valid`` or ``test``); a run without
    that split is a :class:`UserError` saying what to evaluate instead (``lstmkit evaluate``
    and ``Run.evaluate`` of the Python API share this)."""
    if not task.split_source(split):
        raise UserError(_no_split(task, split, checkpoint))
    with torch.no_grad():
        metrics = task.evaluate(model, split, device)
    if not metrics:
        raise UserError(_no_split(task, split, checkpoint))
    return metrics


def evaluate(cfg: EvaluateConfig) -> tuple[Task, Checkpoint, dict[str, dict[str, float]]]:
    """Metrics of a checkpoint on the validation and/or test set, or on ``cfg.data``."""
    options = read_options(cfg)
    if options and not cfg.data:
        given = ", ".join(f"--{k.replace('_', '-')}" for k in options)
        raise UserError(f"{given}: say how to read --data FILE; give --data")
    check_data_paths(cfg.data)  # before the model loads
    task, model, ckpt, dev = load_for("evaluate", cfg.checkpoint, cfg.device, cfg.allow_nonfinite)
    if cfg.data:
        metrics = {"data": evaluate_data(task, model, cfg.data, dev, **options)}
    else:
        splits = ["valid", "test"] if cfg.split == "both" else [cfg.split]
        metrics = {s: evaluate_split(task, model, s, dev, cfg.checkpoint) for s in splits}
    if cfg.plots:
        with torch.no_grad():
            paths = [
                p for s in metrics for p in task.evaluation_plots(model, s, Path(cfg.plots), dev)
            ]
        for path in paths:
            print(f"wrote {path}", file=sys.stderr)
        if not paths:
            print(
                f"lstmkit: warning: --plots: task {task.name!r} has no evaluation plots "
                "(confusion matrices are drawn for the classification tasks); nothing written",
                file=sys.stderr,
            )
    return task, ckpt, metrics
