"""Rebuild a trained model from a checkpoint, for evaluate, predict and inspect."""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lstmkit.tasks.base import Task, get_task
from lstmkit.train.checkpoint import Checkpoint, load_checkpoint, load_weights
from lstmkit.train.config import DEVICES
from lstmkit.utils.errors import UserError
from lstmkit.utils.io import atomic_write_text
from lstmkit.utils.meta import help_meta as _help


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
        return rebuilt[-1].build_model()

    ckpt = load_checkpoint(path, build=build, allow_nonfinite=allow_nonfinite)
    task = rebuilt[-1]
    model = task.build_model()
    load_weights(model, ckpt.weights, ckpt.path)
    return task, model.to(device).eval(), ckpt


@dataclass(frozen=True)
class EvaluateConfig:
    """Options of ``lstmkit evaluate``."""

    checkpoint: str = field(
        metadata=_help("a run folder, or its best/ or last/ checkpoint", argument=True)
    )
    split: str = field(
        default="test",
        metadata=_help("which evaluation set", choices=("valid", "test", "both")),
    )
    json: bool = field(default=False, metadata=_help("print the metrics as one JSON object"))
    plots: str = field(
        default="",
        metadata=_help("write the task's evaluation plots (e.g. a confusion matrix) here"),
    )
    device: str = field(default="auto", metadata=_help("where to run", choices=DEVICES))
    allow_nonfinite: bool = field(
        default=False,
        metadata=_help("load NaN or infinite weights anyway (for debugging a diverged run)"),
    )


@dataclass(frozen=True)
class PredictConfig:
    """Options of ``lstmkit predict``."""

    checkpoint: str = field(
        metadata=_help("a run folder, or its best/ or last/ checkpoint", argument=True)
    )
    inputs: tuple[str, ...] = field(
        default=(), metadata=_help("inputs in the task's text format", argument=True)
    )
    input: str = field(default="", metadata=_help("read inputs from this file, one per line"))
    output: str = field(
        default="", metadata=_help("write the JSON lines to this file instead of the screen")
    )
    device: str = field(default="auto", metadata=_help("where to run", choices=DEVICES))
    allow_nonfinite: bool = field(
        default=False,
        metadata=_help("load NaN or infinite weights anyway (for debugging a diverged run)"),
    )


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


def _load(checkpoint: str, device: str, allow_nonfinite: bool = False):
    from lstmkit.train.trainer import resolve_device

    dev = resolve_device(device)
    task, model, ckpt = load_trained(checkpoint, dev, allow_nonfinite=allow_nonfinite)
    return task, model, ckpt, dev


MAX_INPUT_BYTES = 1 << 30  # an --input file larger than this is refused, not read
MAX_INPUT_CHARS = 100_000  # one input longer than this is cut (predict), counted on stderr
MAX_INSPECT_CHARS = 5_000  # the gate plots of one input: steps beyond this are not drawn
PREDICT_BATCH = 64  # inputs per forward pass: memory stays bounded whatever the count


def read_inputs(
    inputs: tuple[str, ...], input_file: str, *, max_chars: int = MAX_INPUT_CHARS
) -> list[str]:
    """Command-line inputs, then the non-empty lines of ``input_file``.

    An empty input is an error (it would get a label without a word), as is an ``--input`` file
    with no input in it. An input longer than ``max_chars`` characters is cut there, and the
    number cut is said on stderr: memory is bounded by this limit, not by the input."""
    items = list(inputs)
    for k, item in enumerate(items, 1):
        if not item.strip():
            raise UserError(f"input {k} is empty; give a text")
    if input_file:
        items += _read_input_file(Path(input_file))
    cut = sum(len(x) > max_chars for x in items)
    if cut:
        print(
            f"lstmkit: warning: {cut} input(s) longer than {max_chars:,} characters were cut "
            f"to their first {max_chars:,}",
            file=sys.stderr,
        )
        items = [x[:max_chars] for x in items]
    return items


def _read_input_file(path: Path) -> list[str]:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UserError(f"--input: file not found: {path}") from None
    except OSError as e:
        raise UserError(f"--input: cannot read {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"--input: {path} is not a regular file")
    if st.st_size > MAX_INPUT_BYTES:
        raise UserError(
            f"--input: {path} is {st.st_size:,} bytes; at most {MAX_INPUT_BYTES:,} are read "
            "(split it into smaller files)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"--input: {path} is not UTF-8 (byte {e.start})") from None
    except OSError as e:
        raise UserError(f"--input: cannot read {path}: {e.strerror}") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise UserError(f"--input: {path} holds no input (it is empty or blank)")
    return lines


def check_output_path(output: str, option: str = "--output") -> None:
    """Refuse an output file whose folder does not exist (rather than creating a tree), or
    that is a folder, before any work is done."""
    if not output:
        return
    path = Path(output)
    if path.is_dir():
        raise UserError(f"{option}: {path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise UserError(f"{option}: folder {path.parent} does not exist")


def evaluate(cfg: EvaluateConfig) -> tuple[Task, Checkpoint, dict[str, dict[str, float]]]:
    """Metrics of a checkpoint on the validation and/or test set."""
    task, model, ckpt, dev = _load(cfg.checkpoint, cfg.device, cfg.allow_nonfinite)
    splits = ["valid", "test"] if cfg.split == "both" else [cfg.split]
    with torch.no_grad():
        metrics = {s: task.evaluate(model, s, dev) for s in splits}
        if cfg.plots:
            for s in splits:
                for path in task.evaluation_plots(model, s, Path(cfg.plots), dev):
                    print(f"wrote {path}", file=sys.stderr)
    return task, ckpt, metrics


def predict(cfg: PredictConfig) -> list[dict]:
    """One result per input (a few test examples when there are none); written atomically to
    ``cfg.output`` as JSON lines when given."""
    check_output_path(cfg.output)
    items = read_inputs(cfg.inputs, cfg.input)  # bad input is refused before the model loads
    task, model, _, dev = _load(cfg.checkpoint, cfg.device, cfg.allow_nonfinite)
    items = items or task.examples()
    results: list[dict] = []
    with torch.no_grad():
        for k in range(0, len(items), PREDICT_BATCH):
            results += task.predict(model, items[k : k + PREDICT_BATCH], dev)
    if cfg.output:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
        atomic_write_text(cfg.output, text)
    return results


def inspect(cfg: InspectConfig) -> list[Path]:
    """Gate PNGs for the inputs (one test example when there are none)."""
    items = read_inputs(cfg.inputs, cfg.input, max_chars=MAX_INSPECT_CHARS)
    task, model, _, dev = _load(cfg.checkpoint, cfg.device, cfg.allow_nonfinite)
    return task.inspect(model, items, Path(cfg.out), dev)
