"""End to end on real text: `lstmkit train lm` on a slice of tinyshakespeare, then evaluate and
generate (streamed, repeatable with a seed), and the generate errors as one line."""

import json
from pathlib import Path

import pytest

from lstmkit.cli.main import cli_main

SHAKESPEARE = Path(__file__).resolve().parents[3] / "shared/data/tinyshakespeare/input.txt"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not SHAKESPEARE.exists():
        pytest.skip(f"tinyshakespeare not found at {SHAKESPEARE} (../shared/data is absent)")
    tmp = tmp_path_factory.mktemp("lm")
    text = SHAKESPEARE.read_text(encoding="utf-8")[:30000]
    (tmp / "slice.txt").write_text(text, encoding="utf-8")
    out = tmp / "run"
    args = ["train", "lm", "--train", str(tmp / "slice.txt"), "--out", str(out)]
    args += ["--hidden-size", "32", "--num-layers", "1", "--embed-size", "16", "--seq-len", "32"]
    args += ["--batch-size", "8", "--steps", "40", "--eval-every", "20", "--lr", "1e-2"]
    args += ["--warmup-steps", "0", "--no-progress", "--device", "cpu", "--threads", "1"]
    assert cli_main(args) == 0
    return out


def test_train_and_evaluate(run, capsys):
    results = json.loads((run / "results.json").read_text())
    assert results["steps"] == 40
    assert results["valid"]["loss"] < 3.3  # below the uniform 4.2 nats: it learned something
    capsys.readouterr()
    assert cli_main(["evaluate", str(run), "--split", "valid", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)["valid"]
    assert metrics["loss"] == pytest.approx(results["valid"]["loss"])
    assert metrics["bpc"] == pytest.approx(metrics["loss"] / 0.6931471805599453)


def test_generate_is_repeatable_with_a_seed(run, capsys):
    args = ["generate", str(run), "--prompt", "ROMEO:", "--length", "60", "--seed", "7"]
    assert cli_main(args) == 0
    first = capsys.readouterr().out
    assert cli_main(args) == 0
    assert capsys.readouterr().out == first
    assert first.startswith("ROMEO:") and len(first) == len("ROMEO:") + 60 + 1  # + final newline
    assert cli_main([*args[:-1], "8", "--no-echo-prompt"]) == 0
    assert not capsys.readouterr().out.startswith("ROMEO:")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--prompt", "R\u00e9"], "not in the model's vocabulary: '\u00e9' (U+00E9)"),
        (["--length", "-1"], "--length must be >= 0"),
        (["--temperature", "-1"], "--temperature must be >= 0"),
    ],
)
def test_generate_errors_are_one_line(run, capsys, extra, message):
    assert cli_main(["generate", str(run), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_generate_needs_a_checkpoint(tmp_path, capsys):
    assert cli_main(["generate", str(tmp_path / "nothing")]) == 2
    assert "lstmkit: error:" in capsys.readouterr().err
