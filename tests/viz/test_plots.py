"""The plots write real, readable PNGs atomically and reject bad input by name."""

import subprocess
import sys

import matplotlib.figure
import matplotlib.image
import numpy as np
import pytest
import torch

import lstmkit
from lstmkit.viz import LinePanel, plot_gates, plot_heatmap, plot_loss_curves, select_units
from lstmkit.viz.plots import _ema

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DPI = 40  # small images keep the suite fast; the layout does not depend on it


def read_png(path):
    """The image as an (h, w, channels) array, after checking it really is a PNG."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    img = matplotlib.image.imread(path, format="png")
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    return img


def adding_gates(T=30, H=12, marks=(4, 20), memory=(2, 7), seed=0):
    """Gate traces like an LSTM that solved the adding problem: the memory units open their
    input gate only at the marks, keep f near 1, and their c steps up there."""
    rng = np.random.default_rng(seed)
    i = rng.uniform(0.2, 0.6, (T, H))
    f = rng.uniform(0.5, 0.9, (T, H))
    o = rng.uniform(0, 1, (T, H))
    c = rng.normal(0, 0.05, (T, H))
    for u in memory:
        i[:, u] = 0.02
        i[list(marks), u] = 0.98
        f[:, u] = 0.99
        c[:, u] = 0.0
        for m in marks:
            c[m:, u] += 0.7
    return {"i": i, "f": f, "o": o, "c": c}


def only_file(folder, name):
    assert sorted(p.name for p in folder.iterdir()) == [name], "temporary files were left"


def test_plot_gates_writes_png_with_everything(tmp_path):
    T = 30
    gates = adding_gates(T=T)
    inputs = np.stack([np.linspace(0, 1, T), np.isin(np.arange(T), (4, 20)).astype(float)], 1)
    out = plot_gates(
        gates,
        tmp_path / "gates.png",
        inputs=inputs,
        input_labels=["value", "marker"],
        marks=[4, 20],
        step_labels=[f"s{t}" for t in range(T)],
        title="adding",
        dpi=DPI,
    )
    assert out == tmp_path / "gates.png"
    h, w, _ = read_png(out).shape
    assert h > w > 100  # five stacked panels: taller than wide
    only_file(tmp_path, "gates.png")


def test_plot_gates_accepts_torch_numpy_and_gate_trace(tmp_path):
    gates = adding_gates()
    as_torch = {k: torch.from_numpy(v).float() for k, v in gates.items()}
    read_png(plot_gates(as_torch, tmp_path / "torch.png", marks=[4], dpi=DPI))

    model = lstmkit.LSTM(3, 5)
    with lstmkit.record_gates(model) as rec:
        model(torch.randn(9, 3))  # unbatched: each trace tensor is (T, H)
    trace = rec[0, 0]
    # every gate, g and h included
    path = plot_gates(
        trace, tmp_path / "trace.png", inputs=torch.randn(9, 3), show="ifgoch", dpi=DPI
    )
    read_png(path)


def test_plot_gates_one_hot_inputs_and_explicit_units(tmp_path):
    T = 12
    sym = np.eye(4)[np.arange(T) % 4]
    path = plot_gates(
        adding_gates(T=T, marks=(3,), memory=(1,)),
        tmp_path / "g.png",
        inputs=sym,
        input_labels=list("abcd"),
        step_labels=list("abcdabcdabcd"),
        units=[1, 5, 0],
        marks=[3],
        dpi=DPI,
    )
    read_png(path)


def test_plot_gates_width_grows_with_length_then_caps(tmp_path):
    def width(T):
        g = {"i": np.full((T, 2), 0.5)}
        return read_png(plot_gates(g, tmp_path / f"{T}.png", dpi=DPI)).shape[1]

    assert width(20) < width(100) < width(1000)
    assert width(1000) <= 16 * DPI  # capped


def test_overwrite_and_failed_save_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "curve.png"
    path.write_bytes(b"old contents")
    curves = {"LSTM": ([1, 2, 3], [1.0, 0.5, 0.25])}
    plot_loss_curves(curves, path, dpi=DPI)
    first = path.read_bytes()
    assert first[:8] == PNG_SIGNATURE

    def broken_savefig(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        plot_loss_curves({"RNN": ([1, 2], [0.3, 0.2])}, path, dpi=DPI)
    assert path.read_bytes() == first
    only_file(tmp_path, "curve.png")


def test_plot_loss_curves_full_options(tmp_path):
    x = np.arange(1, 401) * 2500  # up to 1M sequences: engineering tick labels
    rng = np.random.default_rng(0)
    lstm = 0.17 * np.exp(-x / 2e5) + 1e-3 * (1 + rng.random(400))
    rnn = torch.full((400,), 0.167) + 0.01 * torch.rand(400)
    path = plot_loss_curves(
        {"LSTM": (x, lstm), "RNN": (torch.from_numpy(x), rnn)},
        tmp_path / "loss.png",
        valid_curves={"LSTM": (x[::50], lstm[::50]), "other": ([1e5, 2e5], [0.1, 0.05])},
        baseline=0.167,
        baseline_label="variance baseline",
        smooth=0.9,
        title="adding problem",
        dpi=DPI,
    )
    h, w, _ = read_png(path).shape
    assert w > h
    read_png(plot_loss_curves({"a": ([0, 1], [-1.0, 1.0])}, tmp_path / "lin.png", logy=False))


def test_ema_debiased():
    y = np.array([2.0, 2.0, 2.0])
    np.testing.assert_allclose(_ema(y, 0.9), y)  # no pull towards 0 at the start
    z = np.array([1.0, 3.0, 5.0])
    np.testing.assert_allclose(_ema(z, 0.0), z)
    assert _ema(np.array([0.0, 10.0]), 0.5)[1] == pytest.approx(10 * 0.5 / 0.75)


def test_plot_heatmap_small_annotated_and_large(tmp_path):
    conf = torch.tensor([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
    path = plot_heatmap(
        conf,
        tmp_path / "conf.png",
        row_labels=["a", "b", "c"],
        col_labels=["a", "b", "c"],
        xlabel="predicted",
        ylabel="true",
        title="confusion",
        cmap="Blues",
        dpi=DPI,
    )
    read_png(path)
    att = np.random.default_rng(0).random((30, 50))
    att[3, 4] = np.nan  # masked cell
    read_png(plot_heatmap(att, tmp_path / "att.png", vmin=0, vmax=1, dpi=DPI))
    read_png(plot_heatmap(att[:4, :5], tmp_path / "small.png", fmt=".1f", dpi=DPI))
    only_file_names = sorted(p.name for p in tmp_path.iterdir())
    assert only_file_names == ["att.png", "conf.png", "small.png"]


def test_select_units_prefers_high_variance_c():
    rng = np.random.default_rng(0)
    c = rng.normal(0, 0.01, (50, 20))
    c[:, [3, 11, 17]] += rng.normal(0, 1.0, (50, 3))
    assert select_units({"c": c}, max_units=3) == [3, 11, 17]
    assert select_units({"c": torch.from_numpy(c)}, max_units=3) == [3, 11, 17]
    assert select_units({"c": c[:, :5]}, max_units=8) == [0, 1, 2, 3, 4]
    assert select_units({"h": c}, max_units=3) == [3, 11, 17]  # falls back to h without c


def test_select_units_keeps_the_unit_that_writes_at_the_marks():
    rng = np.random.default_rng(1)
    T, H = 40, 20
    c = rng.normal(0, 1.0, (T, H))
    c[:, 9] = np.where(np.arange(T) >= 10, 0.2, 0.0)  # small, rarely moving memory
    i = rng.uniform(0.3, 0.7, (T, H))
    i[:, 9] = 0.01
    i[[10, 30], 9] = 0.99
    assert 9 not in select_units({"c": c, "i": i}, max_units=4)
    assert 9 in select_units({"c": c, "i": i}, max_units=4, marks=[10, 30])


def test_gate_validation_errors(tmp_path):
    p = tmp_path / "x.png"
    g = adding_gates(T=10, marks=(2,))
    with pytest.raises(ValueError, match=r"gates\['f'\] has T=9 steps but gates\['i'\] has T=10"):
        plot_gates({"i": g["i"], "f": g["f"][:9]}, p)
    with pytest.raises(ValueError, match="mark 10 is out of range for T=10"):
        plot_gates(g, p, marks=[2, 10])
    with pytest.raises(ValueError, match="mark -1 is out of range"):
        plot_gates(g, p, marks=[-1])
    with pytest.raises(ValueError, match=r"unknown keys \['z'\]"):
        plot_gates({**g, "z": g["i"]}, p)
    with pytest.raises(ValueError, match="gates is empty"):
        plot_gates({}, p)
    with pytest.raises(ValueError, match=r"must be 2-D \(T, H\), got shape \(10, 1, 12\).*slice"):
        plot_gates({"i": g["i"][:, None, :]}, p)
    with pytest.raises(ValueError, match="unit 12 is out of range for H=12"):
        plot_gates(g, p, units=[0, 12])
    with pytest.raises(ValueError, match="units has duplicates"):
        plot_gates(g, p, units=[1, 1])
    with pytest.raises(ValueError, match="step_labels has 3 entries but T=10"):
        plot_gates(g, p, step_labels=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"inputs must be \(T, I\) with T=10, got shape \(9, 2\)"):
        plot_gates(g, p, inputs=np.zeros((9, 2)))
    with pytest.raises(ValueError, match="input_labels has 1 entries but inputs has 2 channels"):
        plot_gates(g, p, inputs=np.zeros((10, 2)), input_labels=["v"])
    with pytest.raises(ValueError, match=r"show asks for \['g'\]"):
        plot_gates(g, p, show=["i", "g"])
    with pytest.raises(ValueError, match="max_units must be an int >= 1, got 0"):
        plot_gates(g, p, max_units=0)
    with pytest.raises(ValueError, match="one unit count H"):
        plot_gates({"i": g["i"], "h": g["i"][:, :4]}, p, show=["i", "h"])
    with pytest.raises(ValueError, match="nothing to draw"):
        plot_gates(g, p, show=[], c_lines=0)
    with pytest.raises(ValueError, match="c_lines must be an int >= 0, got -1"):
        plot_gates(g, p, c_lines=-1)
    assert not p.exists() and list(tmp_path.iterdir()) == []


def test_curve_and_heatmap_validation_errors(tmp_path):
    p = tmp_path / "x.png"
    with pytest.raises(ValueError, match="curves is empty"):
        plot_loss_curves({}, p)
    with pytest.raises(ValueError, match=r"curves\['RNN'\] is empty"):
        plot_loss_curves({"RNN": ([], [])}, p)
    with pytest.raises(ValueError, match=r"curves\['RNN'\] needs 1-D x and y of one length"):
        plot_loss_curves({"RNN": ([1, 2, 3], [1.0, 2.0])}, p)
    with pytest.raises(ValueError, match=r"curves\['RNN'\] must be a pair"):
        plot_loss_curves({"RNN": [1.0, 2.0, 3.0]}, p)
    with pytest.raises(ValueError, match=r"curves\['a'\] has y <= 0 .*logy=False"):
        plot_loss_curves({"a": ([1, 2], [0.5, 0.0])}, p)
    with pytest.raises(ValueError, match=r"valid_curves\['v'\] is empty"):
        plot_loss_curves({"a": ([1], [1.0])}, p, valid_curves={"v": ([], [])})
    with pytest.raises(ValueError, match=r"smooth must be in \[0, 1\), got 1"):
        plot_loss_curves({"a": ([1], [1.0])}, p, smooth=1)
    with pytest.raises(ValueError, match="matrix must be 2-D and non-empty, got shape"):
        plot_heatmap(np.zeros(4), p)
    with pytest.raises(ValueError, match="col_labels has 2 entries but matrix has 3 columns"):
        plot_heatmap(np.zeros((2, 3)), p, col_labels=["a", "b"])
    with pytest.raises(ValueError, match="vmin=1 must be below vmax=0"):
        plot_heatmap(np.zeros((2, 3)), p, vmin=1, vmax=0)
    assert list(tmp_path.iterdir()) == []


def test_import_does_not_load_matplotlib():
    code = "import sys, lstmkit.viz; assert 'matplotlib' not in sys.modules, 'eager import'"
    subprocess.run([sys.executable, "-c", code], check=True)


def _has_colour(img, hex_colour, tol=0.06, min_pixels=20):
    rgb = np.array([int(hex_colour[k : k + 2], 16) / 255 for k in (1, 3, 5)])
    return int((np.abs(img[..., :3] - rgb).max(-1) < tol).sum()) >= min_pixels


def test_c_lines_that_coincide_stay_visible(tmp_path):
    # two units with the same cell state: the second line must not hide the first
    T = 40
    c = np.zeros((T, 3))
    c[10:, 0] = c[10:, 1] = 0.8
    c[:, 2] = np.linspace(-0.5, 0.5, T)
    img = read_png(plot_gates({"c": c}, tmp_path / "c.png", show=[], c_lines=3, dpi=100))
    assert _has_colour(img, "#1f77b4")  # C0: unit 0
    assert _has_colour(img, "#ff7f0e")  # C1: unit 1, drawn over unit 0


def test_units_are_drawn_in_the_given_order_first_on_top(tmp_path):
    T = 20
    i = np.zeros((T, 6))
    i[:, 4] = 1.0  # unit 4 all yellow, the others dark
    img = read_png(plot_gates({"i": i}, tmp_path / "u.png", units=[4, 0, 1, 2], c_lines=0, dpi=60))
    column = img[:, img.shape[1] // 2, :3]
    yellow = np.where(np.abs(column - [0.993, 0.906, 0.144]).max(-1) < 0.1)[0]
    purple = np.where(np.abs(column - [0.267, 0.005, 0.329]).max(-1) < 0.1)[0]
    assert len(yellow) > 5 and len(purple) > 3 * len(yellow) // 2
    assert yellow.max() < purple.min()  # unit 4, given first, is the top row


def test_line_panels_unit_labels_and_caption(tmp_path):
    T = 30
    gates = adding_gates(T=T)
    readout = np.concatenate([np.zeros(10), np.full(T - 10, 0.7)])
    panel = LinePanel(
        "read-out", {"read-out": readout, "target": np.full(T, 0.7)}, emphasize="read-out"
    )
    kw = {"units": [7, 2], "marks": [4, 20], "dpi": DPI}
    plain = read_png(plot_gates(gates, tmp_path / "a.png", **kw))
    more = read_png(
        plot_gates(
            gates,
            tmp_path / "b.png",
            line_panels=[panel],
            unit_labels=["7 (w +1.0)", "2 (w -0.3)"],
            caption="Units shown: the two that matter. " * 8,
            **kw,
        )
    )
    assert more.shape[0] > plain.shape[0] + 2 * DPI  # the panel and the caption take room
    assert more.shape[1] == plain.shape[1]


def test_line_panel_and_unit_label_errors(tmp_path):
    g, p = adding_gates(T=10, marks=(4,)), tmp_path / "x.png"
    with pytest.raises(ValueError, match=r"line 'r' of panel 'P' must have shape \(10,\)"):
        plot_gates(g, p, line_panels=[LinePanel("P", {"r": np.zeros(9)})])
    with pytest.raises(ValueError, match="line panel 'P' has no lines"):
        plot_gates(g, p, line_panels=[LinePanel("P", {})])
    with pytest.raises(ValueError, match="line_panels takes LinePanel objects, got dict"):
        plot_gates(g, p, line_panels=[{"r": np.zeros(10)}])
    with pytest.raises(ValueError, match="unit_labels has 1 entries but 2 units are shown"):
        plot_gates(g, p, units=[0, 1], unit_labels=["a"])
