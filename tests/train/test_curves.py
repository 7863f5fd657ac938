"""`lstmkit plot` of several runs: which panels share a y range."""

import json

import pytest
from matplotlib.figure import Figure

from lstmkit.train.curves import PlotConfig, plot_runs


def _run(folder, task, scale, steps=(10, 20, 30, 40)):
    """A fake run folder: config.json naming ``task`` and a train.jsonl whose loss falls from
    ``scale`` to ``scale / 2``."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"task": task}))
    events = [{"event": "start", "step": 0, "world": 1, "metric": "loss"}]
    for k, step in enumerate(steps):
        loss = scale * (1 - k / (2 * (len(steps) - 1)))
        events += [
            {"event": "train", "step": step, "loss": loss},
            {"event": "valid", "step": step, "loss": loss * 1.1},
        ]
    (folder / "train.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return str(folder)


@pytest.fixture
def drawn(monkeypatch):
    """The figures plot_runs saves (to read their axes)."""
    figures = []
    save = Figure.savefig

    def savefig(fig, *a, **k):
        figures.append(fig)
        return save(fig, *a, **k)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return figures


def test_runs_of_different_tasks_keep_their_own_y_range(tmp_path, drawn):
    """An lm loss of ~5 beside an adding loss of ~0.01 on one y range drew the adding curve
    flat at zero: the range is shared among runs of one task only."""
    lm_a = _run(tmp_path / "lm-a", "lm", 5.0)
    lm_b = _run(tmp_path / "lm-b", "lm", 4.0)
    adding = _run(tmp_path / "adding", "adding", 0.02)
    out = tmp_path / "curves.png"
    plot_runs(PlotConfig(runs=(lm_a, lm_b, adding), out=str(out)))
    assert out.read_bytes().startswith(b"\x89PNG")
    (fig,) = drawn
    a, b, c = fig.axes  # one metric (loss), three runs
    assert a.get_ylim() == b.get_ylim()  # one task: one range, the runs compare directly
    lo, hi = c.get_ylim()
    assert lo < 0.01 < 0.022 < hi < 0.05  # the adding run's own range: its curve is not flat
    assert a.get_ylim()[0] > 1.5 and a.get_ylim()[1] > 5.5
