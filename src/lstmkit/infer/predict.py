"""``lstmkit predict``: a trained run's prediction for each input, as JSON lines or CSV."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lstmkit.infer.inputs import (
    MAX_INPUT_CHARS,
    PREDICT_BATCH,
    allow_nonfinite_field,
    arguments_field,
    check_input_path,
    check_output_path,
    checkpoint_field,
    cut_inputs,
    device_field,
    format_results,
    read_field,
    read_input_lines,
    read_inputs,
    read_options,
)
from lstmkit.infer.load import load_for
from lstmkit.infer.onnx_predict import is_onnx_path, predict_file, predict_table, takes_table
from lstmkit.tasks.base import InputRecords, Task
from lstmkit.utils.errors import UserError
from lstmkit.utils.io import atomic_write_text
from lstmkit.utils.meta import help_meta as _help


@dataclass(frozen=True)
class PredictConfig:
    """Options of ``lstmkit predict``."""

    checkpoint: str = checkpoint_field(
        "a run folder or its ONNX export (model.onnx, run by ONNX Runtime)"
    )
    inputs: tuple[str, ...] = arguments_field("inputs in the task's text format")
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
    device: str = device_field()
    allow_nonfinite: bool = allow_nonfinite_field()
    format: str = read_field("format")
    text_column: str = read_field("text_column")
    label_column: str = read_field("label_column")
    header: bool | None = read_field("header")
    quoting: str = read_field("quoting")
    encoding: str = read_field("encoding")


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


TABLES = (".csv", ".tsv", ".jsonl", ".json", ".csv.gz", ".tsv.gz", ".jsonl.gz")


def predict_onnx(cfg: PredictConfig) -> list[dict]:
    """``lstmkit predict model.onnx``: the export run by ONNX Runtime
    (:func:`lstmkit.infer.onnx_predict.predict_file`) on the inputs, then the lines of
    ``--input`` (one input per line), written to ``--output`` as :func:`predict` writes."""
    options = read_options(cfg)
    if options:
        given = ", ".join(f"--{k.replace('_', '-')}" for k in options)
        raise UserError(f"{given}: an .onnx model reads --input as one input per line")
    if cfg.device not in ("auto", "cpu"):
        raise UserError(f"--device {cfg.device}: an .onnx model runs on ONNX Runtime's CPU")
    items = read_inputs(cfg.inputs, "")
    if cfg.input:
        path = Path(cfg.input)
        check_input_path(path)
        if not items and not path.is_dir() and takes_table(cfg.checkpoint):
            # a forecast export: --input is its table of recent rows
            results = predict_table(cfg.checkpoint, cfg.input)
            if cfg.output:
                atomic_write_text(cfg.output, format_results(results, cfg.output))
            return results
        if path.is_dir() or path.name.lower().endswith(TABLES):
            raise UserError(
                f"--input: {path}: an .onnx model reads a file of one input per line (.txt); "
                "tables, manifests and folders are read by `lstmkit predict RUN`"
            )
        items = cut_inputs(items + read_input_lines(path), MAX_INPUT_CHARS)
    results = predict_file(cfg.checkpoint, items)
    if cfg.output:
        atomic_write_text(cfg.output, format_results(results, cfg.output))
    return results


def predict(cfg: PredictConfig) -> list[dict]:
    """One result per input (a few test examples when there are none), written atomically to
    ``cfg.output`` when given: CSV for a ``.csv`` name, else JSON lines (UTF-8). ``--input``
    is read in the formats the task trains from (a CSV with the run's columns...) by
    :meth:`Task.read_input_file`, and each result keeps the input's own columns; other files
    hold one input per line."""
    check_output_path(cfg.output)
    if is_onnx_path(cfg.checkpoint):
        return predict_onnx(cfg)
    options = read_options(cfg)
    if options and not cfg.input:
        given = ", ".join(f"--{k.replace('_', '-')}" for k in options)
        raise UserError(f"{given}: say how to read --input FILE; give --input")
    items = read_inputs(cfg.inputs, "")  # bad input is refused before the model loads
    if cfg.input:
        check_input_path(Path(cfg.input))
    task, model, _, dev = load_for("predict", cfg.checkpoint, cfg.device, cfg.allow_nonfinite)
    columns: list[dict | None] = [None] * len(items)
    if cfg.input:
        records: InputRecords | None = task.read_input_file(cfg.input, **options)
        if records is None:
            lines = read_input_lines(Path(cfg.input))
            items, columns = items + lines, columns + [None] * len(lines)
        else:
            if records.summary:
                print(f"lstmkit: read {records.summary}", file=sys.stderr)
            items, columns = items + records.inputs, columns + list(records.columns)
        items = cut_inputs(items, MAX_INPUT_CHARS)
    if not items:
        items = task.examples()
        columns = [None] * len(items)
    if not items:  # the speech tasks: nothing to fall back on, so say so rather than print nothing
        raise UserError(
            f"predict: a {task.name} run has no built-in examples; give the inputs to label "
            "(as arguments, or --input FILE)"
        )
    results = predict_items(task, model, items, dev, columns)
    if cfg.output:
        atomic_write_text(cfg.output, format_results(results, cfg.output))
    return results
