"""A reduced `lstmkit demo`: the LSTM must beat the plain RNN by a wide margin, and the plots
must be written. (The full demo, T=100 for 75 s per net, is what `make demo` runs.)"""

import json

import matplotlib.image

from lstmkit.cli.main import cli_main

PNG = b"\x89PNG\r\n\x1a\n"


def test_reduced_demo(tmp_path, capsys):
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
    # the example inputs it names are accepted by predict, and the LSTM gets them right
    capsys.readouterr()
    examples = out / "examples.txt"
    assert cli_main(["predict", str(out / "lstm"), "--input", str(examples)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3 and sum(r["correct"] for r in rows) >= 2
    # the table and the pointers to what to try next
    for word in ("LSTM", "RNN", "test MSE", "within 0.04", "lstmkit evaluate", "gates.png"):
        assert word in text
