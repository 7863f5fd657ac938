"""Training curves of one or several runs, drawn from their ``train.jsonl`` events.

One panel per metric and run: the training value of each logged step (solid), the validation
value of each evaluation (dashed, with markers), the test value of the best checkpoint (a star
at its step), the task's baseline where the log has one (``baseline_mse``: predicting the mean;
``baseline_loss``: the memoryless strategy), and a dotted line where a session resumed. Panels
of one metric share their y axis among runs of one group (the command line groups runs by task),
so that runs drawn side by side compare at a glance and one task's scale never flattens another's
curve.

The events are plain dicts (``{"event": "train"|"valid"|"test"|"resume", "step": ..., ...}``),
so this module knows nothing of tasks or trainers. matplotlib is imported when a plot is drawn.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from lstmkit.utils.io import atomic_path

NOT_METRICS = frozenset({"event", "time", "step", "sequences", "elapsed", "world", "solved"})
"""Numbers in the log that are counters or flags, not metrics to draw."""

BASELINE_LABELS = {
    "baseline_mse": "predict the mean",
    "baseline_loss": "memoryless baseline",
}
_DPI = 110


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def metric_names(events: Sequence[Mapping]) -> list[str]:
    """The metrics a log holds (numbers of its train, valid and test events), in log order."""
    names: dict[str, None] = {}
    for e in events:
        if e.get("event") in ("train", "valid", "test"):
            for k, v in e.items():
                if k not in NOT_METRICS and not k.startswith("baseline_") and _number(v):
                    names[k] = None
    return list(names)


def _series(events: Sequence[Mapping], event: str, metric: str) -> tuple[list, list]:
    pts = [
        (e["step"], e[metric])
        for e in events
        if e.get("event") == event and _number(e.get("step")) and _number(e.get(metric))
    ]
    return [p[0] for p in pts], [p[1] for p in pts]


def baseline_of(events: Sequence[Mapping], metric: str) -> tuple[str, float] | None:
    """The baseline the log gives for ``metric``: ``baseline_<metric>`` of the last evaluation;
    for ``loss``, also ``baseline_mse`` when the task's loss is its MSE (equal in every
    evaluation, as in the adding and multiplication problems)."""
    valid = [e for e in events if e.get("event") in ("valid", "test")]
    for e in reversed(valid):
        if _number(e.get(f"baseline_{metric}")):
            return f"baseline_{metric}", float(e[f"baseline_{metric}"])
    if metric == "loss" and valid:
        with_mse = [e for e in valid if _number(e.get("mse")) and _number(e.get("loss"))]
        if with_mse and all(e["mse"] == e["loss"] for e in with_mse):
            last = next((e for e in reversed(with_mse) if _number(e.get("baseline_mse"))), None)
            if last is not None:
                return "baseline_mse", float(last["baseline_mse"])
    return None


def _log_axis(values: list[float]) -> bool:
    """A log y axis for positive values over more than a decade (losses early in training)."""
    return bool(values) and min(values) > 0 and max(values) / min(values) > 10


def plot_training_curves(
    runs: Mapping[str, Sequence[Mapping]],
    path: str | os.PathLike,
    *,
    metrics: Sequence[str],
    title: str | None = None,
    groups: Mapping[str, str] | None = None,
    dpi: int = _DPI,
) -> Path:
    """Draw ``metrics`` of each run (``{label: events}``) and write a PNG; returns ``path``.

    One run: one panel per metric, side by side. Several runs: one column per run, one row per
    metric; the panels of a row share their y range (and log scale) among the runs of one group
    (``groups``: ``{label: group}``, e.g. the task; default: all runs one group), since one
    task's loss is no scale for another's. A metric that a run never logged leaves its panel
    with a note saying so. Raises
    ValueError when ``runs`` or ``metrics`` is empty, or no run logged any of ``metrics``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not runs:
        raise ValueError("no runs to plot")
    metrics = list(dict.fromkeys(metrics))
    if not metrics:
        raise ValueError("no metrics to plot")
    if not any(
        _series(ev, kind, m)[0]
        for ev in runs.values()
        for m in metrics
        for kind in ("train", "valid", "test")
    ):
        raise ValueError(f"no run logged {', '.join(metrics)}")
    labels = list(runs)
    single = len(labels) == 1
    n_rows, n_cols = (1, len(metrics)) if single else (len(metrics), len(labels))
    fig = Figure(figsize=(0.4 + 4.6 * n_cols, 0.6 + 3.3 * n_rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    group_of = {label: (groups or {}).get(label, "") for label in labels}
    for m_index, metric in enumerate(metrics):
        shared: dict[str, tuple[list, list[float]]] = {}  # group: its axes, their values
        for r_index, label in enumerate(labels):
            ax = axes[0][m_index] if single else axes[m_index][r_index]
            row_axes, values = shared.setdefault(group_of[label], ([], []))
            row_axes.append(ax)
            values += _draw_panel(ax, runs[label], metric)
            ax.set_title(metric if single else f"{label}: {metric}", fontsize=10)
            ax.set_xlabel("step")
        for row_axes, values in shared.values():
            _share_y(row_axes, values, limits=not single)
    if not single:  # one step range for all: the runs compare at equal steps
        right = max(
            (e["step"] for ev in runs.values() for e in ev if _number(e.get("step"))), default=1
        )
        for ax in axes.flat:
            ax.set_xlim(0, right * 1.03)
    if title:
        fig.suptitle(title, fontsize=11)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)  # format explicit: the temporary's name varies
    return path


def _share_y(row_axes: list, values: list[float], *, limits: bool) -> None:
    """One y scale for ``row_axes`` (log where ``values`` span a decade), and with ``limits``
    one y range holding ``values``: the runs of a group compare directly."""
    logy = _log_axis(values)
    for ax in row_axes:
        if logy:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    if values and limits:
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 0.05
        for ax in row_axes:
            ax.set_ylim(*((lo / 1.3, hi * 1.3) if logy else (lo - pad, hi + pad)))


def _draw_panel(ax, events: Sequence[Mapping], metric: str) -> list[float]:
    """One run's ``metric`` on ``ax``; returns the values drawn (for the shared y range)."""
    drawn: list[float] = []
    x, y = _series(events, "train", metric)
    if x:
        ax.plot(x, y, color="C0", lw=1.2, label="training")
        drawn += y
    x, y = _series(events, "valid", metric)
    if x:
        ax.plot(x, y, color="C1", ls="--", marker="o", ms=3, lw=1.0, label="validation")
        drawn += y
    x, y = _series(events, "test", metric)
    if x:
        ax.plot(
            x[-1:],
            y[-1:],
            color="C3",
            ls="",
            marker="*",
            ms=11,
            label=f"test of best checkpoint ({y[-1]:.4g})",
        )
        drawn += y[-1:]
    base = baseline_of(events, metric)
    if base is not None and drawn:
        name, value = base
        ax.axhline(
            value,
            color="0.4",
            ls=":",
            lw=1.2,
            label=f"{BASELINE_LABELS.get(name, name)} ({value:.3g})",
        )
        drawn.append(value)
    resumed = [e["step"] for e in events if e.get("event") == "resume" and e.get("step")]
    for k, step in enumerate(resumed):
        ax.axvline(step, color="0.6", lw=0.8, ls="-.", label="resumed" if k == 0 else None)
    if drawn:
        ax.legend(fontsize=7, framealpha=0.85)
    else:
        ax.text(
            0.5,
            0.5,
            f"no {metric} in this log",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="0.4",
        )
    return drawn
