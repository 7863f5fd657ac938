"""PNG plots of gate activity, loss curves and matrices.

matplotlib is imported inside the functions, so ``import lstmkit.viz`` costs nothing until a
plot is drawn. Every figure is a bare :class:`matplotlib.figure.Figure` on an Agg canvas: no
pyplot, no global figure registry, no GUI backend, safe in threads and on headless machines.
Every PNG is written atomically (:func:`lstmkit.utils.io.atomic_path`): a failed save leaves
the previous file in place.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lstmkit.nn import GateTrace
from lstmkit.utils.io import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

GATE_KEYS = ("i", "f", "g", "o", "c", "h")
DEFAULT_SHOW = ("i", "f", "o", "c")

_GATE_TITLES = {
    "i": "input gate i",
    "f": "forget gate f",
    "g": "cell candidate g",
    "o": "output gate o",
    "c": "cell state c",
    "h": "hidden state h",
}
_MARK_COLOR = "#e6194b"  # a red that stands out on viridis and next to the blue/red of c
_DPI = 120
# colour and dash pattern of the k-th line of a panel: two lines that lie on each other stay
# visible (a dashed line over a solid one of another colour)
_LINE_STYLES = (
    ("C0", "-"),
    ("C1", (0, (5, 2))),
    ("C2", (0, (1, 1.5))),
    ("C3", (0, (6, 2, 1, 2))),
    ("C4", (0, (3, 1, 1, 1, 1, 1))),
    ("C5", (0, (8, 3))),
    ("C6", "-"),
    ("C8", (0, (2, 2))),
)


@dataclass(frozen=True)
class LinePanel:
    """A panel of lines over time that :func:`plot_gates` draws under the inputs.

    ``lines`` maps a legend name to ``T`` values. Each line gets its own colour and dash
    pattern, so lines that coincide stay visible. Names in ``steps`` are drawn as steps (for
    values that change at given steps only); ``emphasize`` names the one line drawn thick and
    black (e.g. the network's output); ``zero_line`` draws a thin grey line at 0.
    """

    title: str
    lines: Mapping[str, Any]
    ylabel: str = ""
    steps: tuple[str, ...] = ()
    emphasize: str | None = None
    zero_line: bool = False


def _draw_lines(ax: Axes, lines: Mapping[str, np.ndarray], *, steps=(), emphasize=None) -> None:
    t = None
    k = 0
    for name, y in lines.items():
        t = np.arange(len(y)) if t is None else t
        if name == emphasize:
            style = {"color": "black", "lw": 2.0, "ls": "-", "zorder": 4}
        else:
            color, ls = _LINE_STYLES[k % len(_LINE_STYLES)]
            style = {"color": color, "ls": ls, "lw": 1.4, "zorder": 3}
            k += 1
        if name in steps:
            ax.step(t, y, where="mid", label=name, **style)
        else:
            ax.plot(t, y, label=name, **style)


# ---------------------------------------------------------------------------------------------
# helpers


def to_numpy(x: Any, name: str = "value") -> np.ndarray:
    """A float64 numpy copy of a torch tensor, numpy array or nested sequence of numbers."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().double().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be numeric (tensor, array or sequence), got {x!r}") from e
    return arr


def _new_figure(width: float, height: float, layout: str | None = None) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike, dpi: int) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        # format is explicit: the temporary name may not end in .png
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def _check_dpi(dpi: int) -> None:
    if not isinstance(dpi, int) or dpi < 10:
        raise ValueError(f"dpi must be an int >= 10, got {dpi!r}")


def _gate_arrays(gates: GateTrace | Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Validated ``{key: (T, width) array}`` for one sequence, in :data:`GATE_KEYS` order."""
    if isinstance(gates, GateTrace):
        gates = gates.as_dict()
    if not isinstance(gates, Mapping):
        raise ValueError(
            f"gates must be a GateTrace or a mapping of {GATE_KEYS}, got {type(gates).__name__}"
        )
    unknown = sorted(set(gates) - set(GATE_KEYS))
    if unknown:
        raise ValueError(f"gates has unknown keys {unknown}; allowed: {list(GATE_KEYS)}")
    out = {k: to_numpy(gates[k], f"gates[{k!r}]") for k in GATE_KEYS if gates.get(k) is not None}
    if not out:
        raise ValueError("gates is empty: give at least one of " + ", ".join(GATE_KEYS))
    first = next(iter(out))
    T = out[first].shape[0] if out[first].ndim else None
    for k, a in out.items():
        if a.ndim != 2:
            hint = (
                " (a batched trace: slice one sequence, e.g. trace.i[:, 0])" if a.ndim == 3 else ""
            )
            raise ValueError(f"gates[{k!r}] must be 2-D (T, H), got shape {a.shape}{hint}")
        if a.shape[0] != T:
            raise ValueError(
                f"gates[{k!r}] has T={a.shape[0]} steps but gates[{first!r}] has T={T}"
            )
        if a.shape[0] == 0 or a.shape[1] == 0:
            raise ValueError(f"gates[{k!r}] is empty, shape {a.shape}")
    return out


def _check_marks(marks: Sequence[int], T: int) -> list[int]:
    out = []
    for m in marks:
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)):
            raise ValueError(f"marks must be int time indices, got {m!r}")
        if not 0 <= m < T:
            raise ValueError(f"mark {m} is out of range for T={T} (need 0 <= mark < {T})")
        out.append(int(m))
    return sorted(set(out))


def select_units(
    gates: GateTrace | Mapping[str, Any], *, max_units: int = 16, marks: Sequence[int] = ()
) -> list[int]:
    """Indices (ascending) of up to ``max_units`` units worth looking at.

    Units are ranked by the variance over time of ``c`` (of ``h``, or of the first gate given,
    when ``c`` is absent): a unit whose memory moves is doing something. With ``marks``, a
    quarter of the slots (at least one) first goes to the units whose input gate differs most
    between the marked steps and the others, the units that store what the marks point at,
    even when their cell state varies less than that of a busy unit.
    """
    arrays = _gate_arrays(gates)
    if isinstance(max_units, bool) or not isinstance(max_units, int) or max_units < 1:
        raise ValueError(f"max_units must be an int >= 1, got {max_units!r}")
    key = next(k for k in ("c", "h", *GATE_KEYS) if k in arrays)
    ref = arrays[key]
    T, H = ref.shape
    marks = _check_marks(marks, T)
    if H <= max_units:
        return list(range(H))
    chosen: list[int] = []
    i = arrays.get("i")
    if marks and i is not None and i.shape[1] == H and len(marks) < T:
        at = np.zeros(T, dtype=bool)
        at[marks] = True
        contrast = np.abs(i[at].mean(axis=0) - i[~at].mean(axis=0))
        n_mark = max(1, max_units // 4)
        chosen = [int(u) for u in np.argsort(-contrast, kind="stable")[:n_mark]]
    variance = np.nan_to_num(ref.var(axis=0), nan=-1.0)
    for u in np.argsort(-variance, kind="stable"):
        if len(chosen) >= max_units:
            break
        if int(u) not in chosen:
            chosen.append(int(u))
    return sorted(chosen)


def _time_ticks(ax: Axes, T: int, step_labels: Sequence[str] | None) -> None:
    from matplotlib.ticker import MaxNLocator

    if step_labels is None:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=12, integer=True, min_n_ticks=2))
        return
    every = 1 if T <= 60 else math.ceil(T / 40)
    ticks = list(range(0, T, every))
    labels = [str(step_labels[t]) for t in ticks]
    long = max((len(s) for s in labels), default=0) > 2
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, rotation=90 if long else 0, fontsize=7 if T > 30 else 8)


def _unit_ticks(ax: Axes, units: Sequence[int | str]) -> None:
    n = len(units)
    every = 1 if n <= 16 else math.ceil(n / 16)
    rows = list(range(0, n, every))
    ax.set_yticks(rows)
    ax.set_yticklabels([str(units[r]) for r in rows], fontsize=7)


def _legend_above(ax: Axes, *args, ncol: int = 1, **kwargs) -> None:
    """A small frameless legend in ``ncol`` columns just above the right end of the panel, where
    it hides no line."""
    ax.legend(
        *args,
        loc="lower right",
        bbox_to_anchor=(1.0, 1.0),
        ncol=ncol,
        fontsize=7,
        frameon=False,
        borderaxespad=0.1,
        **kwargs,
    )


def _draw_marks(ax: Axes, marks: Sequence[int], *, filled: bool) -> None:
    """Bands on line panels; outlines on heatmaps so the marked columns stay readable."""
    for m in marks:
        if filled:
            ax.axvspan(m - 0.5, m + 0.5, color=_MARK_COLOR, alpha=0.18, lw=0, zorder=0)
            ax.axvline(m, color=_MARK_COLOR, lw=0.8, alpha=0.7, zorder=1)
        else:
            ax.axvspan(m - 0.5, m + 0.5, fill=False, ec=_MARK_COLOR, lw=1.2, zorder=3)


def _mark_ticks(ax: Axes, marks: Sequence[int]) -> None:
    """Triangles just above a panel, pointing at the marked steps."""
    if marks:
        ax.plot(
            marks,
            [1.0] * len(marks),
            "v",
            color=_MARK_COLOR,
            ms=6,
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            zorder=5,
        )


def _is_one_hot(x: np.ndarray) -> bool:
    return (
        x.shape[1] > 1 and bool(np.isin(x, (0.0, 1.0)).all()) and bool((x.sum(axis=1) == 1).all())
    )


def _is_binary(col: np.ndarray) -> bool:
    return bool(np.isin(col, (0.0, 1.0)).all())


# ---------------------------------------------------------------------------------------------
# gates


def plot_gates(
    gates: GateTrace | Mapping[str, Any],
    path: str | os.PathLike,
    *,
    inputs: Any = None,
    input_labels: Sequence[str] | None = None,
    marks: Sequence[int] = (),
    step_labels: Sequence[str] | None = None,
    units: Sequence[int] | None = None,
    unit_labels: Sequence[str] | None = None,
    max_units: int = 16,
    show: Sequence[str] | None = None,
    c_lines: int = 4,
    line_panels: Sequence[LinePanel] = (),
    title: str | None = None,
    caption: str | None = None,
    dpi: int = _DPI,
) -> Path:
    """Draw the gates of one sequence over time and write a PNG; returns ``path``.

    ``gates`` holds ``(T, H)`` arrays (torch or numpy) under keys among ``i, f, g, o, c, h``,
    or is a :class:`~lstmkit.nn.GateTrace` of one unbatched sequence. Panels, top to bottom:

    - ``inputs`` ``(T, I)`` or ``(T,)``, if given: lines (0/1 channels as steps) named by
      ``input_labels``; one-hot inputs (or more than 6 channels) as a heatmap instead;
    - each of ``line_panels`` (:class:`LinePanel`), e.g. a read-out over time;
    - one heatmap per key in ``show`` (default: those of ``i, f, o, c`` present), time on x and
      units on y, the first of ``units`` at the top, labelled with their real indices (or
      ``unit_labels``). Sigmoid gates use a fixed [0, 1] scale, ``g`` and ``h`` a diverging
      [-1, 1] one, ``c`` a diverging one symmetric about 0;
    - ``c`` over time for ``c_lines`` of the shown units, if ``c`` is given and ``c_lines > 0``:
      those whose cell state jumps most at the marks, or without marks moves most over time.

    ``marks`` are time steps drawn as red bands on every panel (legend "marked input").
    ``step_labels`` (T strings, e.g. tokens) label the time axis, thinned when T > 60.
    ``units`` picks the units to show, in that order; otherwise :func:`select_units` picks
    ``max_units`` (ascending). ``caption`` is set in small type under the time axis: say there
    which units are shown and why.
    """
    from matplotlib.gridspec import GridSpec
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    _check_dpi(dpi)
    arrays = _gate_arrays(gates)
    T = next(iter(arrays.values())).shape[0]
    marks = _check_marks(marks, T)

    if show is None:
        show = [k for k in DEFAULT_SHOW if k in arrays]
    else:
        show = list(show)
        bad = [k for k in show if k not in GATE_KEYS]
        if bad:
            raise ValueError(f"show has unknown keys {bad}; allowed: {list(GATE_KEYS)}")
        missing = [k for k in show if k not in arrays]
        if missing:
            raise ValueError(f"show asks for {missing} but gates has only {list(arrays)}")
    if isinstance(c_lines, bool) or not isinstance(c_lines, int) or c_lines < 0:
        raise ValueError(f"c_lines must be an int >= 0, got {c_lines!r}")
    drawn = [*show, *(["c"] if "c" in arrays and c_lines > 0 and "c" not in show else [])]
    if not drawn:
        raise ValueError("nothing to draw: show is empty and there is no c line panel")
    widths = {arrays[k].shape[1] for k in drawn}
    if len(widths) > 1:
        shapes = {k: tuple(arrays[k].shape) for k in drawn}
        raise ValueError(
            f"the panels need one unit count H, got {shapes} "
            "(with a projection, h has P features: leave 'h' out of show)"
        )
    H = widths.pop()

    if units is None:
        sel = {k: arrays[k] for k in arrays if arrays[k].shape[1] == H}
        units = select_units(sel, max_units=max_units, marks=marks)
    else:
        units = list(units)
        if not units:
            raise ValueError("units is empty")
        for u in units:
            if isinstance(u, bool) or not isinstance(u, (int, np.integer)) or not 0 <= u < H:
                raise ValueError(f"unit {u!r} is out of range for H={H} (need 0 <= unit < {H})")
        if len(set(units)) != len(units):
            raise ValueError(f"units has duplicates: {units}")
        units = [int(u) for u in units]
    if unit_labels is not None:
        unit_labels = [str(s) for s in unit_labels]
        if len(unit_labels) != len(units):
            raise ValueError(
                f"unit_labels has {len(unit_labels)} entries but {len(units)} units are shown"
            )

    panels: list[tuple[LinePanel, dict[str, np.ndarray]]] = []
    for p in line_panels:
        if not isinstance(p, LinePanel):
            raise ValueError(f"line_panels takes LinePanel objects, got {type(p).__name__}")
        if not p.lines:
            raise ValueError(f"line panel {p.title!r} has no lines")
        ys = {}
        for name, y in p.lines.items():
            y = to_numpy(y, f"line {name!r}")
            if y.shape != (T,):
                raise ValueError(
                    f"line {name!r} of panel {p.title!r} must have shape ({T},), got {y.shape}"
                )
            ys[str(name)] = y
        panels.append((p, ys))

    if step_labels is not None:
        step_labels = [str(s) for s in step_labels]
        if len(step_labels) != T:
            raise ValueError(f"step_labels has {len(step_labels)} entries but T={T}")

    x_in = None
    if inputs is not None:
        x_in = to_numpy(inputs, "inputs")
        if x_in.ndim == 1:
            x_in = x_in[:, None]
        if x_in.ndim != 2 or x_in.shape[0] != T:
            raise ValueError(f"inputs must be (T, I) with T={T}, got shape {x_in.shape}")
        if input_labels is not None and len(input_labels) != x_in.shape[1]:
            raise ValueError(
                f"input_labels has {len(input_labels)} entries but inputs has "
                f"{x_in.shape[1]} channels"
            )
    elif input_labels is not None:
        raise ValueError("input_labels given without inputs")

    line_units: list[int] = []
    if "c" in arrays and c_lines > 0:
        c_sel = arrays["c"][:, units]
        if marks:
            # the units that write at the marks hold what the marks point at
            before = np.vstack([np.zeros((1, len(units))), c_sel[:-1]])
            moves = np.abs(c_sel[marks] - before[marks]).sum(axis=0)
        else:
            moves = np.nanmax(c_sel, axis=0) - np.nanmin(c_sel, axis=0)
        order = np.argsort(-np.nan_to_num(moves, nan=-1.0), kind="stable")[:c_lines]
        line_units = [units[j] for j in sorted(order)]
    tick_of = dict(zip(units, unit_labels or [str(u) for u in units], strict=True))

    # --- layout: one row per panel, a narrow second column for the colorbars so that every
    # panel's time axis lines up
    one_hot = x_in is not None and _is_one_hot(x_in)
    input_as_map = x_in is not None and (one_hot or x_in.shape[1] > 6)
    heat_h = min(3.2, max(1.0, 0.16 * len(units) + 0.35))
    rows: list[tuple[str, float]] = []
    if x_in is not None:
        rows.append(
            ("inputs", min(2.0, max(0.9, 0.14 * x_in.shape[1] + 0.5)) if input_as_map else 1.3)
        )
    rows += [(f"panel{j}", 1.9) for j in range(len(panels))]
    rows += [(k, heat_h) for k in show]
    if line_units:
        rows.append(("c_lines", 1.8))
    width = min(16.0, max(8.0, 3.0 + 0.09 * T))
    caption_lines = (
        textwrap.wrap(caption, width=int(width * 15)) if caption else []
    )  # about 15 characters of 8-point type per inch
    height = (
        sum(h for _, h in rows)
        + 0.45 * len(rows)
        + 0.7
        + (0.3 if title else 0.0)
        + 0.16 * len(caption_lines)
    )
    # constrained layout, unlike tight_layout, makes room for the titles and legends that sit
    # above each panel and keeps the colorbar column aligned
    fig = _new_figure(width, height, layout="constrained")
    fig.get_layout_engine().set(h_pad=0.04, w_pad=0.04, hspace=0.02, wspace=0.01)
    gs = GridSpec(
        len(rows), 2, figure=fig, width_ratios=[1, 0.015], height_ratios=[h for _, h in rows]
    )
    extent = (-0.5, T - 0.5, len(units) - 0.5, -0.5)  # the first unit on top
    axes: list[Axes] = []
    for r, (kind, _) in enumerate(rows):
        ax = fig.add_subplot(gs[r, 0], sharex=axes[0] if axes else None)
        cax = fig.add_subplot(gs[r, 1])
        axes.append(ax)
        if kind == "inputs":
            assert x_in is not None
            names = list(input_labels) if input_labels is not None else None
            if input_as_map:
                lo, hi = (0.0, 1.0) if one_hot else (float(np.nanmin(x_in)), float(np.nanmax(x_in)))
                im = ax.imshow(
                    x_in.T,
                    aspect="auto",
                    interpolation="nearest",
                    origin="lower",
                    cmap="Greys" if one_hot else "viridis",
                    vmin=lo,
                    vmax=hi,
                    extent=(-0.5, T - 0.5, -0.5, x_in.shape[1] - 0.5),
                )
                n_in = x_in.shape[1]
                every = 1 if n_in <= 16 else math.ceil(n_in / 16)
                ax.set_yticks(range(0, n_in, every))
                ax.set_yticklabels(
                    [names[j] if names else str(j) for j in range(0, n_in, every)], fontsize=7
                )
                ax.set_ylabel("symbol" if one_hot else "channel", fontsize=8)
                if one_hot:
                    cax.set_axis_off()
                else:
                    fig.colorbar(im, cax=cax)
                    cax.tick_params(labelsize=7)
                _draw_marks(ax, marks, filled=False)
            else:
                _draw_marks(ax, marks, filled=True)
                t = np.arange(T)
                for j in range(x_in.shape[1]):
                    label = names[j] if names else f"input {j}"
                    if _is_binary(x_in[:, j]):
                        ax.step(t, x_in[:, j], where="mid", lw=1.2, label=label)
                    else:
                        dots = {"marker": ".", "ms": 3} if T <= 120 else {}
                        ax.plot(t, x_in[:, j], lw=1.0 if T <= 300 else 0.6, label=label, **dots)
                ax.set_ylabel("value", fontsize=8)
                ax.tick_params(labelsize=7)
                ax.margins(y=0.12)
                cax.set_axis_off()
            ax.set_title("inputs", loc="left", fontsize=9)
            if not input_as_map:
                handles, labels = ax.get_legend_handles_labels()
                if marks:
                    handles.append(Patch(fc=_MARK_COLOR, alpha=0.35, label="marked input"))
                    labels.append("marked input")
                _legend_above(ax, handles, labels, ncol=len(labels))
        elif kind.startswith("panel"):
            panel, ys = panels[int(kind[5:])]
            _draw_marks(ax, marks, filled=True)
            if panel.zero_line:
                ax.axhline(0, color="0.6", lw=0.6, zorder=0)
            _draw_lines(ax, ys, steps=panel.steps, emphasize=panel.emphasize)
            ax.set_ylabel(panel.ylabel, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.margins(y=0.1)
            ax.set_title(panel.title, loc="left", fontsize=9)
            # inside the panel, where the lines leave room: long names do not fit above it
            ax.legend(loc="best", ncol=min(len(ys), 3), fontsize=7, framealpha=0.85)
            cax.set_axis_off()
        elif kind == "c_lines":
            _draw_marks(ax, marks, filled=True)
            c = arrays["c"]
            _draw_lines(ax, {f"unit {tick_of[u]}": c[:, u] for u in line_units})
            ax.axhline(0, color="0.6", lw=0.6, zorder=0)
            ax.set_ylabel("c", fontsize=8)
            ax.tick_params(labelsize=7)
            what = "that write most at the marks" if marks else "that move most"
            ax.set_title(f"cell state c of the units {what}", loc="left", fontsize=9)
            _legend_above(ax, ncol=len(line_units))
            cax.set_axis_off()
        else:
            a = arrays[kind][:, units].T
            if kind == "c":
                lim = float(np.nanmax(np.abs(a))) if np.isfinite(a).any() else 1.0
                lim = lim if lim > 0 else 1.0
                cmap, lo, hi = "RdBu_r", -lim, lim
            elif kind in ("g", "h"):
                cmap, lo, hi = "RdBu_r", -1.0, 1.0
            else:
                cmap, lo, hi = "viridis", 0.0, 1.0
            im = ax.imshow(
                a,
                aspect="auto",
                interpolation="nearest",
                origin="upper",
                cmap=cmap,
                vmin=lo,
                vmax=hi,
                extent=extent,
            )
            _draw_marks(ax, marks, filled=False)
            _unit_ticks(ax, [tick_of[u] for u in units])
            ax.set_ylabel("unit", fontsize=8)
            ax.set_title(_GATE_TITLES[kind], loc="left", fontsize=9)
            cb = fig.colorbar(im, cax=cax)
            cb.ax.tick_params(labelsize=7)
            if kind in ("i", "f", "o"):
                cb.set_ticks([0, 0.5, 1])
            elif kind in ("g", "h"):
                cb.set_ticks([-1, 0, 1])
        _mark_ticks(ax, marks)

    for ax in axes[:-1]:
        ax.tick_params(axis="x", labelbottom=False)
    _time_ticks(axes[-1], T, step_labels)
    axes[-1].set_xlim(-0.5, T - 0.5)
    axes[-1].set_xlabel("time step", fontsize=9)
    axes[-1].tick_params(axis="x", labelsize=7)

    # "marked input" needs a legend entry even without an inputs line panel
    if marks and not (x_in is not None and not input_as_map):
        handle = Line2D([], [], marker="v", ls="none", color=_MARK_COLOR, label="marked input")
        _legend_above(axes[0], handles=[handle])
    if title:
        fig.suptitle(title, fontsize=11)
    if caption_lines:
        fig.supxlabel("\n".join(caption_lines), fontsize=8, ha="left", x=0.01, color="0.2")
    return _save(fig, path, dpi)


# ---------------------------------------------------------------------------------------------
# loss curves


def _ema(y: np.ndarray, smooth: float) -> np.ndarray:
    """Debiased exponential moving average (as TensorBoard's smoothing slider)."""
    out = np.empty_like(y)
    acc, weight = 0.0, 0.0
    for k, v in enumerate(y):
        acc = smooth * acc + (1 - smooth) * v
        weight = smooth * weight + (1 - smooth)
        out[k] = acc / weight
    return out


def _curve_arrays(curves: Mapping[str, Any], arg: str, logy: bool) -> dict[str, tuple]:
    if not isinstance(curves, Mapping):
        raise ValueError(f"{arg} must be a mapping name -> (x, y), got {type(curves).__name__}")
    out = {}
    for name, xy in curves.items():
        try:
            x, y = xy
        except (TypeError, ValueError) as e:
            raise ValueError(f"{arg}[{name!r}] must be a pair (x, y)") from e
        x, y = to_numpy(x, f"{arg}[{name!r}] x"), to_numpy(y, f"{arg}[{name!r}] y")
        if x.ndim != 1 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(
                f"{arg}[{name!r}] needs 1-D x and y of one length, got shapes {x.shape} "
                f"and {y.shape}"
            )
        if len(x) == 0:
            raise ValueError(f"{arg}[{name!r}] is empty")
        if logy and np.nanmin(y) <= 0:
            raise ValueError(
                f"{arg}[{name!r}] has y <= 0 (min {np.nanmin(y):g}), which a log axis cannot "
                "show; pass logy=False"
            )
        out[str(name)] = (x, y)
    return out


def plot_loss_curves(
    curves: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    valid_curves: Mapping[str, Any] | None = None,
    baseline: float | None = None,
    baseline_label: str = "baseline",
    smooth: float = 0.0,
    xlabel: str = "training sequences",
    ylabel: str = "loss",
    logy: bool = True,
    title: str | None = None,
    dpi: int = _DPI,
) -> Path:
    """Plot training curves ``{name: (x, y)}`` and write a PNG; returns ``path``.

    ``valid_curves`` (same shape) are drawn dashed with markers, in the colour of the training
    curve of the same name. ``baseline`` is a dashed grey horizontal line (e.g. the loss of
    always predicting the mean). ``smooth`` in [0, 1) is an exponential moving average factor:
    the smoothed curve is drawn solid over the raw one, kept faint.
    """
    from matplotlib.ticker import EngFormatter

    _check_dpi(dpi)
    if not isinstance(smooth, (int, float)) or not 0 <= smooth < 1:
        raise ValueError(f"smooth must be in [0, 1), got {smooth!r}")
    train = _curve_arrays(curves, "curves", logy)
    if not train:
        raise ValueError("curves is empty: give at least one name -> (x, y)")
    valid = _curve_arrays(valid_curves, "valid_curves", logy) if valid_curves is not None else {}
    if baseline is not None:
        baseline = float(baseline)
        if logy and baseline <= 0:
            raise ValueError(f"baseline={baseline:g} cannot be drawn on a log axis")

    fig = _new_figure(7.5, 4.5)
    ax = fig.add_subplot()
    colors = {}
    for k, (name, (x, y)) in enumerate(train.items()):
        color = f"C{k % 10}"
        colors[name] = color
        if smooth > 0:
            ax.plot(x, y, color=color, lw=0.8, alpha=0.25)
            ax.plot(x, _ema(y, smooth), color=color, lw=1.6, label=name)
        else:
            ax.plot(x, y, color=color, lw=1.4, label=name)
    extra = len(train)
    for name, (x, y) in valid.items():
        if name not in colors:
            colors[name] = f"C{extra % 10}"
            extra += 1
        ax.plot(
            x, y, color=colors[name], ls="--", marker="o", ms=3.5, lw=1.0, label=f"{name} (valid)"
        )
    if baseline is not None:
        ax.axhline(
            baseline, color="0.35", ls="--", lw=1.1, label=f"{baseline_label} ({baseline:.3g})"
        )
    if logy:
        ax.set_yscale("log")
    x_max = max(float(np.nanmax(np.abs(x))) for x, _ in [*train.values(), *valid.values()])
    if x_max >= 1e4:
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.grid(True, which="major", alpha=0.3)
    if logy:
        ax.grid(True, which="minor", alpha=0.1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, framealpha=0.9)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path, dpi)


# ---------------------------------------------------------------------------------------------
# generic heatmap


def plot_heatmap(
    matrix: Any,
    path: str | os.PathLike,
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    annotate: bool | None = None,
    fmt: str | None = None,
    dpi: int = _DPI,
) -> Path:
    """Draw a 2-D ``matrix`` (rows top to bottom) with a colorbar and write a PNG; returns ``path``.

    For attention weights (rows: output steps, columns: input steps) and confusion matrices
    (rows: true class, columns: predicted). ``annotate`` writes each value in its cell; by
    default only when both sides are at most 12. ``fmt`` is a format spec for those values
    (default ``d`` for whole numbers, else ``.2f``).
    """
    _check_dpi(dpi)
    m = to_numpy(matrix, "matrix")
    if m.ndim != 2 or 0 in m.shape:
        raise ValueError(f"matrix must be 2-D and non-empty, got shape {m.shape}")
    R, C = m.shape
    if row_labels is not None and len(row_labels) != R:
        raise ValueError(f"row_labels has {len(row_labels)} entries but matrix has {R} rows")
    if col_labels is not None and len(col_labels) != C:
        raise ValueError(f"col_labels has {len(col_labels)} entries but matrix has {C} columns")
    if vmin is not None and vmax is not None and vmin >= vmax:
        raise ValueError(f"vmin={vmin} must be below vmax={vmax}")
    if annotate is None:
        annotate = R <= 12 and C <= 12
    finite = m[np.isfinite(m)]
    if fmt is None:
        fmt = "d" if finite.size and np.all(finite == np.round(finite)) else ".2f"

    cell = 0.55 if annotate else max(0.08, min(0.4, 8.0 / max(R, C)))
    label_room = 1.6 if (row_labels or col_labels) else 1.0
    width = min(14.0, max(4.5, C * cell + label_room + 1.4))
    height = min(12.0, max(3.5, R * cell + label_room + (0.4 if title else 0.0)))
    fig = _new_figure(width, height)
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    cb.ax.tick_params(labelsize=8)

    def ticks(n: int, labels: Sequence[str] | None) -> tuple[list[int], list[str]]:
        every = 1 if n <= 40 else math.ceil(n / 40)
        pos = list(range(0, n, every))
        return pos, [str(labels[p]) if labels is not None else str(p) for p in pos]

    xpos, xlab = ticks(C, col_labels)
    ypos, ylab = ticks(R, row_labels)
    ax.set_xticks(xpos)
    ax.set_yticks(ypos)
    long_x = max((len(s) for s in xlab), default=0) > 3 or len(xpos) > 20
    ax.set_xticklabels(xlab, rotation=90 if long_x else 0, fontsize=8)
    ax.set_yticklabels(ylab, fontsize=8)
    if annotate:
        norm, cm = im.norm, im.get_cmap()
        for r in range(R):
            for c in range(C):
                v = m[r, c]
                if not np.isfinite(v):
                    continue
                red, green, blue, _ = cm(norm(v))
                dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
                text = format(int(v), fmt) if fmt == "d" else format(v, fmt)
                ax.text(
                    c,
                    r,
                    text,
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "black",
                )
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path, dpi)
