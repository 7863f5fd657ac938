"""Training curves of run folders: ``<out>/curves.png`` during training, and ``lstmkit plot``.

The pictures are drawn by :func:`lstmkit.viz.curves.plot_training_curves` from the events of
each run's ``train.jsonl``; this module finds the runs, their tasks' validation metrics and the
file to write.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lstmkit.utils.errors import UserError
from lstmkit.utils.meta import help_meta as _help

CURVES_FILE = "curves.png"


def default_metrics(task_metric: str) -> list[str]:
    """The loss (training and validation) and the task's validation metric, when another."""
    return list(dict.fromkeys(["loss", task_metric]))


def write_run_curves(out: Path, events: Sequence[dict], task_metric: str, task_name: str) -> Path:
    """Draw a run's curves into ``out/curves.png`` (atomically: a reader never sees half)."""
    from lstmkit.viz.curves import plot_training_curves

    return plot_training_curves(
        {str(out): events},
        out / CURVES_FILE,
        metrics=default_metrics(task_metric),
        title=f"{task_name}: {out}",
    )


@dataclass(frozen=True)
class PlotConfig:
    """What ``lstmkit plot`` draws."""

    runs: tuple[str, ...] = field(
        default=(), metadata=_help("run folders, each with its train.jsonl", argument=True)
    )
    out: str = field(
        default="",
        metadata=_help(
            "PNG file to write; default RUN/curves.png for one run, ./curves.png for several"
        ),
    )
    metric: str = field(
        default="",
        metadata=_help(
            "metrics to draw, comma-separated (e.g. loss,accuracy,lr); default: the loss and "
            "each run's validation metric"
        ),
    )


def task_metric(run: Path, events: Sequence[dict]) -> str:
    """The run's validation metric: what its log's start (or resume) event names, else its
    task's from config.json, else ``loss``."""
    for e in reversed(events):
        if e.get("event") in ("start", "resume") and isinstance(e.get("metric"), str):
            return e["metric"]
    from lstmkit.tasks.base import discover

    try:
        name = json.loads((run / "config.json").read_text(encoding="utf-8"))["task"]
    except (OSError, ValueError, KeyError, TypeError):
        return "loss"
    metric = getattr(discover().get(name) if isinstance(name, str) else None, "metric", "loss")
    return metric if isinstance(metric, str) else "loss"


def run_group(run: Path, events: Sequence[dict]) -> str:
    """What ``plot`` shares a y range among: the run's task (config.json's ``task``), else,
    without one, its validation metric (:func:`task_metric`)."""
    try:
        name = json.loads((run / "config.json").read_text(encoding="utf-8"))["task"]
    except (OSError, ValueError, KeyError, TypeError):
        name = None
    return name if isinstance(name, str) else f"metric {task_metric(run, events)}"


def read_run_events(run: str | os.PathLike) -> list[dict]:
    """The events of ``run``'s ``train.jsonl``; a missing or empty log is a UserError naming it."""
    from lstmkit.train.trainer import read_jsonl

    p = Path(run)
    if not p.exists():
        raise UserError(f"plot: run folder not found: {p}")
    log = p / "train.jsonl" if p.is_dir() else p
    if not log.is_file():
        raise UserError(f"plot: {p} is not a run folder (no train.jsonl in it)")
    try:
        events = read_jsonl(log)
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"plot: cannot read {log}: {e}") from None
    events = [e for e in events if isinstance(e, dict)]
    if not any(e.get("event") in ("train", "valid") for e in events):
        raise UserError(f"plot: {log} holds no training or validation events yet")
    return events


def plot_runs(cfg: PlotConfig) -> Path:
    """Draw ``cfg.runs`` side by side; returns the PNG written."""
    from lstmkit.viz.curves import metric_names, plot_training_curves

    if not cfg.runs:
        raise UserError("plot: give one or more run folders (each with its train.jsonl)")
    runs, task_metrics, groups = {}, [], {}
    for run in cfg.runs:
        events = read_run_events(run)
        label = str(run).rstrip("/") or str(run)
        if label in runs:
            raise UserError(f"plot: {run} is given twice")
        runs[label] = events
        folder = Path(run) if Path(run).is_dir() else Path(run).parent
        task_metrics.append(task_metric(folder, events))
        groups[label] = run_group(folder, events)
    if cfg.metric.strip():
        metrics = [m.strip() for m in cfg.metric.split(",") if m.strip()]
        known = list(dict.fromkeys(n for ev in runs.values() for n in metric_names(ev)))
        unknown = [m for m in metrics if m not in known]
        if unknown:
            raise UserError(
                f"plot: --metric {','.join(unknown)}: not in the logs; they hold {', '.join(known)}"
            )
    else:
        metrics = list(dict.fromkeys(m for t in task_metrics for m in default_metrics(t)))
    if cfg.out:
        out = Path(cfg.out)
        if out.suffix.lower() != ".png":
            raise UserError(f"plot: --out {cfg.out}: give a .png file")
        if not out.parent.is_dir():
            raise UserError(f"plot: --out {cfg.out}: folder {out.parent} does not exist")
    elif len(cfg.runs) == 1 and Path(cfg.runs[0]).is_dir():
        out = Path(cfg.runs[0]) / CURVES_FILE
    else:
        out = Path(CURVES_FILE)
    title = None if len(runs) > 1 else next(iter(runs))
    try:
        return plot_training_curves(runs, out, metrics=metrics, title=title, groups=groups)
    except OSError as e:
        raise UserError(f"plot: cannot write {out}: {os.strerror(e.errno or 0)}") from None
