"""k-fold cross-validation: one training run per fold, then the mean and spread of the folds.

``lstmkit train TASK --cv K`` (for tasks whose config has ``cv`` and ``fold``) trains K models
into ``OUT/fold-0`` .. ``OUT/fold-{K-1}``, each testing on its own fold, and writes
``OUT/cv.json`` with every fold's test metrics, their mean and sample standard deviation, and
the wall time. A killed cross-validation resumes with ``--resume``: finished folds are kept, the
interrupted one continues from its checkpoint.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import replace
from pathlib import Path

from lstmkit.train.config import TrainConfig
from lstmkit.train.trainer import train
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


def cross_validate(task_cls, cfg, model_cfg, train_cfg: TrainConfig, *, on_fold=None) -> dict:
    """Train one model per fold of ``cfg.cv``; returns (and writes) the summary."""
    k = cfg.cv
    if train_cfg.nproc > 1:
        raise UserError("--cv runs its folds one after another; use --nproc 1")
    out = Path(train_cfg.out or f"runs/{task_cls.name}-cv{k}")
    started = time.perf_counter()
    folds, runs = [], []
    for fold in range(k):
        fold_out = out / f"fold-{fold}"
        done = fold_out / "results.json"
        if train_cfg.resume and done.exists():
            results = json.loads(done.read_text(encoding="utf-8"))
        else:
            resume = train_cfg.resume and (fold_out / "last").exists()
            task = task_cls(replace(cfg, fold=fold), model_cfg)
            fold_cfg = replace(train_cfg, out=str(fold_out), resume=resume)
            result = train(task, fold_cfg, label=f"fold {fold + 1}/{k}")
            results = {"test": result.test, "valid": result.valid, "elapsed": result.state.elapsed}
        folds.append(results["test"])
        runs.append({"fold": fold, "out": str(fold_out), **results})
        if on_fold:
            on_fold(fold, results)
    summary = {
        "task": task_cls.name,
        "folds": k,
        "test": summarise(folds),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "train_time_s": round(sum(r.get("elapsed", 0.0) for r in runs), 1),
        "runs": runs,
    }
    atomic_write_json(out / "cv.json", summary)
    return summary


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
    )
    return "\n".join(lines)
