"""A forecast drawn as a PNG: the lookback history, the forecast with its interval, the actual
values where known, and the encoder's mean input, forget and output gates over the lookback."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def plot_forecast(
    path: str | os.PathLike,
    history_t: np.ndarray,
    history: np.ndarray,
    future_t: np.ndarray,
    forecast: np.ndarray,
    *,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    interval: str = "",
    actual: np.ndarray | None = None,
    gates: dict[str, np.ndarray] | None = None,
    title: str = "",
    ylabel: str = "",
) -> Path:
    """``gates`` maps ``i``/``f``/``o`` to ``(L, H)`` arrays over the lookback (drawn as the
    mean over units, and the 10-90% band of units), or, with ``rows`` (the lookback rows the
    steps end at: a segment encoder's one step per segment), to ``(len(rows), H)`` arrays."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = 2 if gates else 1
    fig, axes = plt.subplots(
        rows,
        1,
        figsize=(10, 4.5 if rows == 1 else 7),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [3, 2][:rows]},
    )
    ax = axes[0, 0]
    ax.plot(history_t, history, color="0.3", lw=1, label="history (lookback)")
    if lower is not None and upper is not None:
        ax.fill_between(future_t, lower, upper, color="tab:blue", alpha=0.25, label=interval)
    ax.plot(future_t, forecast, color="tab:blue", lw=1.5, label="forecast")
    if actual is not None:
        ax.plot(future_t, actual, color="tab:orange", lw=1, label="actual")
    ax.axvline(future_t[0], color="0.6", ls=":", lw=1)
    ax.set_ylabel(ylabel)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title, fontsize=9)
    if gates:
        g = axes[1, 0]
        rows = gates.get("rows")
        gate_t = history_t if rows is None else np.asarray(history_t)[rows]
        marker = None if rows is None else "o"
        for name, color in (("i", "tab:green"), ("f", "tab:red"), ("o", "tab:purple")):
            v = gates[name]
            g.plot(gate_t, v.mean(1), color=color, lw=1.2, marker=marker, ms=3,
                   label=f"{name} (mean of units)")  # fmt: skip
            lo, hi = np.percentile(v, [10, 90], axis=1)
            g.fill_between(gate_t, lo, hi, color=color, alpha=0.12)
        g.set_ylim(0, 1)
        g.set_ylabel("encoder gates")
        g.legend(loc="upper left", fontsize=8, ncol=3)
        where = "over the lookback" if rows is None else "one step per segment of the lookback"
        g.set_title(f"top encoder layer, {where} (bands: 10-90% of units)", fontsize=9)
    fig.autofmt_xdate()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
