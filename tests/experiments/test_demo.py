"""A reduced `lstmkit demo`: the LSTM must beat the plain RNN by a wide margin, and the plots
must be written. (The full demo, T=100 for 75 s per net, is what `make demo` runs.)"""

import json
import time

import matplotlib.image
import torch

from lstmkit.cli.main import cli_main
from lstmkit.experiments import demo

PNG = b"\x89PNG\r\n\x1a\n"


def test_reduced_demo(tmp_path, capsys, monkeypatch):
    import lstmkit.viz

    drawn = []
    real_plot_gates = lstmkit.viz.plot_gates
    monkeypatch.setattr(
        lstmkit.viz, "plot_gates", lambda *a, **k: drawn.append(k) or real_plot_gates(*a, **k)
    )
    out = tmp_path / "demo"
    args = ["demo", "--seq-len", "30", "--hidden-size", "32", "--max-steps", "1500"]
    args += ["--budget", "600", "--n-test", "500", "--no-progress", "--out", str(out)]
    assert cli_main(args) == 0
    text = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    lstm, rnn = summary["models"]["LSTM"], summary["models"]["RNN"]
    baseline = summary["baseline_mse"]
    assert abs(baseline - 1 / 6) < 1e-9
    assert lstm["test_mse"] < 0.1 * baseline, lstm
    assert rnn["test_mse"] > 0.5 * baseline, rnn
    assert lstm["within_0.04"] > rnn["within_0.04"] + 0.5
    assert rnn["sequences"] == lstm["sequences"]  # the RNN gets the LSTM's training budget
    for name in ("loss.png", "gates.png"):
        path = out / name
        assert path.read_bytes()[:8] == PNG
        h, w, _ = matplotlib.image.imread(path).shape
        assert h > 300 and w > 500
    assert (out / "lstm" / "best" / "model.safetensors").exists()
    # gates.png: the read-out line is the net's answer at every step, so its last value is the
    # prediction, and the sum line ends at the target; the caption names the units shown
    from lstmkit.infer.load import load_trained

    task, model, _ = load_trained(out / "lstm", torch.device("cpu"))
    test = task.eval_set("test")
    with torch.no_grad():
        predictions = [float(model(test.inputs[:1, : t + 1]).squeeze()) for t in (9, 29)]
    (kw,) = drawn
    readout, seen, _ = kw["line_panels"][0].lines.values()
    assert abs(float(readout[9]) - predictions[0]) < 1e-4
    assert abs(float(readout[-1]) - predictions[1]) < 1e-4
    assert abs(float(seen[-1]) - float(test.targets[0])) < 1e-5
    units = kw["units"]
    assert len(units) == 12 and len(set(units)) == 12
    assert f"Unit {units[0]} carries" in kw["caption"] and "largest first" in kw["caption"]
    # the example inputs it names are accepted by predict, and the LSTM gets them right
    capsys.readouterr()
    examples = out / "examples.txt"
    assert cli_main(["predict", str(out / "lstm"), "--input", str(examples)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3 and sum(r["correct"] for r in rows) >= 2
    # the table and the pointers to what to try next
    for word in ("LSTM", "RNN", "test MSE", "within 0.04", "lstmkit evaluate", "gates.png"):
        assert word in text


def _slowed(monkeypatch, seconds_per_rnn_step: float) -> None:
    """The RNN's steps take ``seconds_per_rnn_step`` longer, as on a machine under load."""
    real = demo._task

    def task(cfg, cell):
        t = real(cfg, cell)
        if cell == "rnn":
            batch = t.train_batch

            def slow(*a, **k):
                time.sleep(seconds_per_rnn_step)
                return batch(*a, **k)

            t.train_batch = slow
        return t

    monkeypatch.setattr(demo, "_task", task)
    monkeypatch.setattr(demo, "_plots", lambda *a: [])


def _small(out, budget: float, steps: int) -> demo.DemoConfig:
    return demo.DemoConfig(
        out=str(out),
        seq_len=10,
        hidden_size=8,
        budget=budget,
        max_steps=steps,
        batch_size=8,
        n_test=50,
        progress=False,
    )


def test_a_slow_rnn_still_gets_the_lstms_sequences(tmp_path, monkeypatch):
    # the LSTM's 20 steps take well under its 4 s budget; the RNN's take 20 x 0.3 s = 6 s,
    # past that budget (where the old demo stopped it) but within the safety net of 3 x 4 s
    _slowed(monkeypatch, 0.3)
    summary = demo.run(_small(tmp_path / "d", budget=4.0, steps=20))
    lstm, rnn = summary["models"]["LSTM"], summary["models"]["RNN"]
    assert lstm["sequences"] == 20 * 8, lstm
    assert rnn["sequences"] == lstm["sequences"], rnn
    assert rnn["seconds"] > 4.0
    assert summary["equal_data"] and summary["unequal_data"] is None


def test_the_rnn_safety_limit_is_reported(tmp_path, monkeypatch, capsys):
    _slowed(monkeypatch, 0.5)
    cfg = _small(tmp_path / "d", budget=1.0, steps=12)
    assert demo.main(cfg) == 0
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    lstm, rnn = summary["models"]["LSTM"], summary["models"]["RNN"]
    assert rnn["sequences"] < lstm["sequences"] == 12 * 8
    assert rnn["stop_reason"] == "time limit of 3 s"
    assert not summary["equal_data"]
    text = " ".join(capsys.readouterr().out.split())
    assert "not on equal data" in text and f"after {rnn['sequences']:,} sequences" in text


def test_readout_ranking_prefers_the_unit_that_keeps_what_a_mark_wrote():
    T = 12
    contrib = torch.zeros(1, T, 4)
    contrib[0, 3:, 0] = 0.5  # unit 0 steps up at the mark at step 3 and keeps it
    contrib[0, 3, 1] = 2.0  # unit 1 flickers at the mark only
    contrib[0, :, 2] = torch.linspace(0, 0.2, T)  # unit 2 drifts without regard to the marks
    contrib[0, 8:, 3] = -0.3  # unit 3 steps down at the second mark
    score = demo.readout_ranking(contrib, torch.tensor([[8, 3]]), torch.tensor([T]))
    assert score.argsort(descending=True).tolist()[:2] == [0, 3]
    assert score[1] == 0  # back to 0 before the next mark: nothing stored
    torch.testing.assert_close(score[0], torch.tensor(0.5))
    torch.testing.assert_close(score[3], torch.tensor(0.3))
