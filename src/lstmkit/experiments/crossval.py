"""k-fold cross-validation: one training run per fold, then the mean and spread of the folds.

``lstmkit train TASK --cv K`` (for tasks whose config has ``cv`` and ``fold``) trains K models
into ``OUT/fold-0`` .. ``OUT/fold-{K-1}``, each testing on its own fold, and writes
``OUT/cv.json`` with every fold's test metrics, their mean and sample standard deviation, and
the times. ``--cv-jobs N`` (a ``cv_jobs`` field) trains N folds at once, each in a fresh
process (spawned, so no state is shared; with ``--threads 0`` each gets ``cores // N``
threads). A killed cross-validation resumes with ``--resume``: finished folds are kept, the
interrupted one continues from its checkpoint.

Times in ``cv.json``: each run's ``wall_time_s`` is its own, read from its ``train.jsonl``
(the sessions from each start or resume to its last event, so a fold collected by
``--resume`` keeps the time it took); ``wall_time_s`` of the whole is the span from the first
fold's start to the last fold's end (2 folds at a time take about half the sum),
``fold_wall_time_s`` the sum over folds, ``train_time_s`` the sum of the training loops' time.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shlex
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

from lstmkit.train.config import TrainConfig
from lstmkit.train.trainer import TrainingInterrupted, read_jsonl, train
from lstmkit.utils.errors import UserError
from lstmkit.utils.io import atomic_write_json


def summarise(folds: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean, sample standard deviation, min and max of each metric over the folds."""
    out = {}
    for name in folds[0]:
        values = [f[name] for f in folds if isinstance(f.get(name), (int, float))]
        if values:
            out[name] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "min": min(values),
                "max": max(values),
            }
    return out


def run_times(log: Path) -> tuple[float, float, float] | None:
    """``(first event, last event, wall seconds)`` of a run's ``train.jsonl``; the seconds add
    up each session (a ``start`` or ``resume`` to the last event before the next), so the time
    between a kill and its resume does not count. None without a log."""
    if not log.exists():
        return None
    times = [(e.get("event"), e["time"]) for e in read_jsonl(log) if "time" in e]
    if not times:
        return None
    wall, begun, last = 0.0, times[0][1], times[0][1]
    for event, t in times[1:]:
        if event in ("start", "resume"):
            wall += last - begun
            begun = t
        last = t
    wall += last - begun
    return times[0][1], last, wall


def _train_fold(task_cls, cfg, model_cfg, fold_cfg: TrainConfig, fold: int, k: int) -> dict:
    # --cv-jobs is how the folds are run, not part of a fold: its saved config says 1
    fold_task_cfg = replace(cfg, fold=fold, **({"cv_jobs": 1} if hasattr(cfg, "cv_jobs") else {}))
    task = task_cls(fold_task_cfg, model_cfg)
    result = train(task, fold_cfg, label=f"fold {fold + 1}/{k}")
    return {"test": result.test, "valid": result.valid, "elapsed": result.state.elapsed}


def _fold_in_process(args) -> dict:
    """One fold in a spawned worker (``fold_cfg.threads`` set: the trainer applies it)."""
    task_cls, cfg, model_cfg, fold_cfg, fold, k = args
    return {**_train_fold(task_cls, cfg, model_cfg, fold_cfg, fold, k), "process": os.getpid()}


def cross_validate(task_cls, cfg, model_cfg, train_cfg: TrainConfig, *, on_fold=None) -> dict:
    """Train one model per fold of ``cfg.cv``; returns (and writes) the summary."""
    k = cfg.cv
    jobs = getattr(cfg, "cv_jobs", 1)
    if train_cfg.nproc > 1:
        raise UserError("--cv trains each fold in one process; use --nproc 1 (and --cv-jobs N)")
    if jobs < 1:
        raise UserError(f"--cv-jobs must be >= 1, got {jobs}")
    out = Path(train_cfg.out or f"runs/{task_cls.name}-cv{k}")
    started = time.perf_counter()
    results: dict[int, dict] = {}
    todo = []
    for fold in range(k):
        fold_out = out / f"fold-{fold}"
        done = fold_out / "results.json"
        if train_cfg.resume and done.exists():
            results[fold] = json.loads(done.read_text(encoding="utf-8"))
            if on_fold:
                on_fold(fold, results[fold])
        else:
            resume = train_cfg.resume and (fold_out / "last").exists()
            todo.append((fold, replace(train_cfg, out=str(fold_out), resume=resume)))
    try:
        _run_folds(task_cls, cfg, model_cfg, train_cfg, todo, results, jobs, k, on_fold)
    except KeyboardInterrupt:
        # a fold's own message names its folder; the whole cross-validation resumes from OUT
        raise TrainingInterrupted(_interrupted_message(task_cls.name, out, k, results)) from None
    runs, spans = [], []
    for fold in range(k):
        fold_out = out / f"fold-{fold}"
        times = run_times(fold_out / "train.jsonl")
        run = {"fold": fold, "out": str(fold_out), **results[fold]}
        if times:
            spans.append(times)
            run["wall_time_s"] = round(times[2], 3)
        runs.append(run)
    session = time.perf_counter() - started
    summary = {
        "task": task_cls.name,
        "folds": k,
        "test": summarise([r["test"] for r in runs]),
        "wall_time_s": round(
            max(session, max(s[1] for s in spans) - min(s[0] for s in spans)) if spans else session,
            1,
        ),
        "fold_wall_time_s": round(sum(r.get("wall_time_s", 0.0) for r in runs), 3),
        "train_time_s": round(sum(r.get("elapsed", 0.0) for r in runs), 3),
        "session_wall_time_s": round(session, 1),
        "cv_jobs": jobs,
        "runs": runs,
    }
    atomic_write_json(out / "cv.json", summary)
    return summary


def _run_folds(task_cls, cfg, model_cfg, train_cfg, todo, results, jobs, k, on_fold) -> None:
    """Train the folds of ``todo`` into ``results``: one after the other, or ``jobs`` at once."""
    if jobs == 1 or len(todo) <= 1:
        for fold, fold_cfg in todo:
            results[fold] = _train_fold(task_cls, cfg, model_cfg, fold_cfg, fold, k)
            if on_fold:
                on_fold(fold, results[fold])
    else:
        jobs = min(jobs, len(todo))
        threads = train_cfg.threads or max(1, (os.cpu_count() or 1) // jobs)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, context, max_tasks_per_child=1) as pool:  # fresh per fold
            futures = {
                pool.submit(
                    _fold_in_process,
                    (
                        task_cls,
                        cfg,
                        model_cfg,
                        replace(fold_cfg, threads=threads, progress=False),
                        fold,
                        k,
                    ),
                ): fold
                for fold, fold_cfg in todo
            }
            for future in as_completed(futures):
                fold = futures[future]
                results[fold] = future.result()
                if on_fold:
                    on_fold(fold, results[fold])


def _interrupted_message(task_name: str, out: Path, k: int, results: dict) -> str:
    """What a Ctrl-C of a cross-validation says: the folds finished and the command that
    continues it (not a fold's own ``--out OUT/fold-N --resume``, which would train that fold
    alone)."""
    done = ", ".join(str(f + 1) for f in sorted(results)) or "none"
    command = f"lstmkit train {task_name} --out {shlex.quote(str(out))} --resume"
    if not results and not any((out / f"fold-{f}" / "last").exists() for f in range(k)):
        return (
            f"cross-validation interrupted before the first checkpoint: nothing to resume; "
            f"start again with `lstmkit train {task_name} --out {shlex.quote(str(out))} "
            "--overwrite ...`"
        )
    return (
        f"cross-validation interrupted (folds finished: {done} of {k}); `{command}` continues "
        "it: finished folds are kept, an interrupted one continues from its last checkpoint (if "
        "it has one)"
    )


def format_summary(summary: dict) -> str:
    lines = [f"{summary['folds']}-fold cross-validation, test metrics (mean ± std [min, max]):"]
    for name, s in summary["test"].items():
        pct = name in ("accuracy", "macro_f1")
        f = (lambda v: f"{100 * v:.2f}%") if pct else (lambda v: f"{v:.4f}")
        std = f"{100 * s['std']:.2f}" if pct else f"{s['std']:.4f}"
        if not math.isnan(s["mean"]):
            lines.append(f"  {name}: {f(s['mean'])} ± {std} [{f(s['min'])}, {f(s['max'])}]")
    lines.append(
        f"  training time of the {summary['folds']} folds: {summary['train_time_s']:.0f} s"
        + (f" (wall time {summary['wall_time_s']:.0f} s)" if "wall_time_s" in summary else "")
    )
    return "\n".join(lines)
