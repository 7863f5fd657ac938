"""Rebuild a trained model from a checkpoint, for evaluate, predict and inspect."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lstmkit.tasks.base import READ_OPTIONS, InputRecords, Task, get_task
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


_READ_HELP = {
    "format": "data format, as train's --format (csv, tsv, jsonl, folders, lines, label-text, "
    "fasttext); default: from the file's extension (predict: other files hold one input per "
    "line)",
    "text_column": "CSV/TSV/JSONL column of the text; default: the run's",
    "label_column": "CSV/TSV/JSONL column of the label; default: the run's",
    "header": "CSV/TSV: the first line names the columns; default: as the run's",
    "quoting": "CSV/TSV quoting (auto, none, csv); default: the run's",
    "encoding": "text encoding of the file; default: the run's",
}


def _read_field(name: str) -> Any:
    """One of the options that say how to read the user's file (:data:`READ_OPTIONS`): left
    out, it is the run's own, so the file is read as the training data was."""
    return field(default=None if name == "header" else "", metadata=_help(_READ_HELP[name]))


def read_options(cfg: Any) -> dict[str, Any]:
    """The read options given in ``cfg`` (those left out are the run's)."""
    return {
        k: getattr(cfg, k)
        for k in READ_OPTIONS
        if getattr(cfg, k) is not None and getattr(cfg, k) != ""
    }


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
    data: str = field(
        default="",
        metadata=_help(
            "evaluate on this labelled file instead (the formats the task trains from, read "
            "with the run's column options unless given)"
        ),
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
    format: str = _read_field("format")
    text_column: str = _read_field("text_column")
    label_column: str = _read_field("label_column")
    header: bool | None = _read_field("header")
    quoting: str = _read_field("quoting")
    encoding: str = _read_field("encoding")


@dataclass(frozen=True)
class PredictConfig:
    """Options of ``lstmkit predict``."""

    checkpoint: str = field(
        metadata=_help("a run folder, or its best/ or last/ checkpoint", argument=True)
    )
    inputs: tuple[str, ...] = field(
        default=(), metadata=_help("inputs in the task's text format", argument=True)
    )
    input: str = field(
        default="",
        metadata=_help(
            "read inputs from this file: the formats the task trains from (CSV/TSV/JSONL with "
            "the run's columns, a folder, a manifest), or one input per line (.txt)"
        ),
    )
    output: str = field(
        default="",
        metadata=_help(
            "write the predictions here instead of the screen: .csv as CSV, else JSON lines; "
            "with --input FILE each row keeps the file's own columns"
        ),
    )
    device: str = field(default="auto", metadata=_help("where to run", choices=DEVICES))
    allow_nonfinite: bool = field(
        default=False,
        metadata=_help("load NaN or infinite weights anyway (for debugging a diverged run)"),
    )
    format: str = _read_field("format")
    text_column: str = _read_field("text_column")
    label_column: str = _read_field("label_column")
    header: bool | None = _read_field("header")
    quoting: str = _read_field("quoting")
    encoding: str = _read_field("encoding")


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
    return _cut(items, max_chars)


def _cut(items: list[str], max_chars: int) -> list[str]:
    cut = sum(len(x) > max_chars for x in items)
    if cut:
        print(
            f"lstmkit: warning: {cut} input(s) longer than {max_chars:,} characters were cut "
            f"to their first {max_chars:,}",
            file=sys.stderr,
        )
        items = [x[:max_chars] for x in items]
    return items


def _check_input_path(path: Path, option: str = "--input") -> None:
    """A file (regular, at most :data:`MAX_INPUT_BYTES`) or a folder; anything else (a FIFO, a
    device) is refused before it is opened, so that nothing blocks."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UserError(f"{option}: file not found: {path}") from None
    except OSError as e:
        raise UserError(f"{option}: cannot read {path}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        return
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{option}: {path} is not a regular file")
    if st.st_size > MAX_INPUT_BYTES:
        raise UserError(
            f"{option}: {path} is {st.st_size:,} bytes; at most {MAX_INPUT_BYTES:,} are read "
            "(split it into smaller files)"
        )


def _read_input_file(path: Path) -> list[str]:
    _check_input_path(path)
    if path.is_dir():
        raise UserError(f"--input: {path} is a folder; this task reads a file, one input per line")
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


def _no_split(task: Task, split: str, checkpoint: str) -> str:
    return (
        f"{checkpoint}: this {task.name} run has no {split} set to evaluate (it was trained "
        f"without {task.split_options}); score a labelled file with `lstmkit evaluate "
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
    split = task.use_data(str(path), **options)
    with torch.no_grad():
        metrics = task.evaluate(model, split, device)
    if not metrics:
        raise UserError(f"--data: {path}: nothing to evaluate")
    return metrics


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
    for part in cfg.data.split(",") if cfg.data else ():
        if Path(part).exists():  # (a missing one may be a PREFIX: the task's reader says)
            _check_input_path(Path(part), "--data")
    task, model, ckpt, dev = _load(cfg.checkpoint, cfg.device, cfg.allow_nonfinite)
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


def _merge(columns: dict | None, item: str, result: dict) -> dict:
    """The input's own columns, then the prediction's fields; the prediction's echo of the input
    is left out (it is one of the columns), and a field named as a column is ``predicted_``."""
    if columns is None:
        return result
    row = dict(columns)
    kept = set(map(str, row.values()))
    for key, value in result.items():
        if isinstance(value, str) and value == item and item in kept:
            continue
        row[f"predicted_{key}" if key in row else key] = value
    return row


def predict_items(
    task: Task,
    model: nn.Module,
    items: list[str],
    device: torch.device,
    columns: list[dict | None] | None = None,
) -> list[dict]:
    """``task.predict`` on ``items`` in batches of :data:`PREDICT_BATCH` (memory bounded), each
    result after its input's own ``columns`` where given (``lstmkit predict`` and
    ``Run.predict`` of the Python API share this)."""
    columns = columns if columns is not None else [None] * len(items)
    results: list[dict] = []
    with torch.no_grad():
        for k in range(0, len(items), PREDICT_BATCH):
            part = items[k : k + PREDICT_BATCH]
            for item, col, r in zip(
                part, columns[k : k + PREDICT_BATCH], task.predict(model, part, device), strict=True
            ):
                results.append(_merge(col, item, r))
    return results


def predict(cfg: PredictConfig) -> list[dict]:
    """One result per input (a few test examples when there are none), written atomically to
    ``cfg.output`` when given: CSV for a ``.csv`` name, else JSON lines (UTF-8). ``--input``
    is read in the formats the task trains from (a CSV with the run's columns...) by
    :meth:`Task.read_input_file`, and each result keeps the input's own columns; other files
    hold one input per line."""
    check_output_path(cfg.output)
    options = read_options(cfg)
    if options and not cfg.input:
        given = ", ".join(f"--{k.replace('_', '-')}" for k in options)
        raise UserError(f"{given}: say how to read --input FILE; give --input")
    items = read_inputs(cfg.inputs, "")  # bad input is refused before the model loads
    if cfg.input:
        _check_input_path(Path(cfg.input))
    task, model, _, dev = _load(cfg.checkpoint, cfg.device, cfg.allow_nonfinite)
    columns: list[dict | None] = [None] * len(items)
    if cfg.input:
        records: InputRecords | None = task.read_input_file(cfg.input, **options)
        if records is None:
            lines = _read_input_file(Path(cfg.input))
            items, columns = items + lines, columns + [None] * len(lines)
        else:
            if records.summary:
                print(f"lstmkit: read {records.summary}", file=sys.stderr)
            items, columns = items + records.inputs, columns + list(records.columns)
        items = _cut(items, MAX_INPUT_CHARS)
    if not items:
        items = task.examples()
        columns = [None] * len(items)
    results = predict_items(task, model, items, dev, columns)
    if cfg.output:
        atomic_write_text(cfg.output, format_results(results, cfg.output))
    return results


def format_results(results: list[dict], name: str = "") -> str:
    """JSON lines (UTF-8, not ``\\u`` escapes), or CSV when ``name`` ends in ``.csv``: one
    column per field, nested fields as ``probabilities.pos``, lists as JSON."""
    if not name.lower().endswith(".csv"):
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
    rows = [_flat(r) for r in results]
    header = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _flat(row: dict, prefix: str = "") -> dict:
    out: dict = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + "."))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(value, ensure_ascii=False)
        else:
            out[name] = value
    return out


def inspect(cfg: InspectConfig) -> list[Path]:
    """Gate PNGs for the inputs (one test example when there are none)."""
    items = read_inputs(cfg.inputs, cfg.input, max_chars=MAX_INSPECT_CHARS)
    task, model, _, dev = _load(cfg.checkpoint, cfg.device, cfg.allow_nonfinite)
    return task.inspect(model, items, Path(cfg.out), dev)
