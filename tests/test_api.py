"""The Python API, ``lstmkit.load(run)``: on tiny runs trained here, each method gives what its
command prints; unsupported verbs name the task and its verbs; ``import lstmkit`` stays light;
and the README's Quick start runs as a script beside a folder named ``lstmkit``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from torch import nn

import lstmkit
from lstmkit.api import UnsupportedVerb
from lstmkit.cli.main import cli_main
from lstmkit.utils.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--no-progress", "--device", "cpu", "--threads", "1"]
ADDING = ["--seq-len", "10", "--steps", "20", "--hidden-size", "8", "--batch-size", "16"]
ADDING += ["--eval-every", "20", "--n-valid", "50", "--n-test", "50", *QUIET]


def _lines(capsys) -> list[dict]:
    return [json.loads(x) for x in capsys.readouterr().out.splitlines()]


@pytest.fixture(scope="module")
def adding(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "add"
    assert cli_main(["train", "adding", *ADDING, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api-sent")
    rows = ["text,label"]
    for i in range(40):
        rows.append(f"a gripping film {i},pos" if i % 2 else f"a dull tired film {i},neg")
    (tmp / "reviews.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp / "run"
    args = ["train", "sentiment", "--train", str(tmp / "reviews.csv"), "--steps", "6"]
    args += ["--batch-size", "8", "--hidden-size", "8", "--embedding-dim", "8", *QUIET]
    assert cli_main([*args, "--out", str(out)]) == 0
    return out


def test_import_lstmkit_stays_light():
    code = (
        "import sys, lstmkit; "
        "print(sorted(m for m in sys.modules if m.startswith(('lstmkit.train', "
        "'lstmkit.tasks', 'lstmkit.api', 'lstmkit.cli'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"
    assert callable(lstmkit.load) and "load" in lstmkit.__all__


def test_predict_matches_the_command(adding, capsys):
    inputs = ["0.5* 0.1 0.2 0.3* 0.4", "0.9* 0.9*"]
    capsys.readouterr()
    assert cli_main(["predict", str(adding), *inputs]) == 0
    printed = _lines(capsys)
    run = lstmkit.load(adding, device="cpu")
    assert run.predict(inputs) == printed
    assert run.predict(inputs[0]) == printed[:1]  # one string is one input
    assert printed[0]["target"] == pytest.approx(0.8)


def test_the_model_is_a_plain_module_in_eval_mode(adding):
    run = lstmkit.load(adding / "best")
    assert isinstance(run.model, nn.Module) and not run.model.training
    assert run.task.name == "adding" and run.checkpoint.path.name == "best"
    assert run.verbs == ("predict", "evaluate", "inspect", "export", "quantize")
    assert "adding" in repr(run)


def test_evaluate_matches_the_command(adding, capsys):
    run = lstmkit.load(adding)
    capsys.readouterr()
    assert cli_main(["evaluate", str(adding), "--json", "--split", "both"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert run.evaluate() == printed["test"]
    assert run.evaluate("valid") == printed["valid"]
    with pytest.raises(UserError, match="split must be 'valid' or 'test', got 'tset'"):
        run.evaluate("tset")


@pytest.mark.parametrize(
    "verb, args", [("generate", ("x",)), ("translate", (["x"],)), ("transcribe", ("a.wav",))]
)
def test_an_unsupported_verb_names_the_task_and_its_verbs(adding, verb, args):
    run = lstmkit.load(adding)
    with pytest.raises(UnsupportedVerb) as e:
        getattr(run, verb)(*args)
    message = str(e.value)
    assert f"'adding', has no {verb}" in message
    assert message.endswith("it supports predict, evaluate, inspect, export, quantize")
    assert isinstance(e.value, UserError)  # the one error type a caller needs to catch
    with pytest.raises(
        AttributeError, match="run has predict, evaluate, inspect, export, quantize"
    ):
        run.predcit  # noqa: B018 - a misspelt name is still an AttributeError (hasattr works)
    assert not hasattr(run, "predcit")


def test_bad_inputs_are_user_errors(adding):
    run = lstmkit.load(adding)
    with pytest.raises(UserError, match="input 1 is empty"):
        run.predict([""])
    with pytest.raises(UserError, match="give one or more inputs"):
        run.predict([])
    with pytest.raises(UserError, match="inputs: give strings, got int"):
        run.predict([3])
    with pytest.raises(UserError, match="checkpoint not found: .*nowhere"):
        lstmkit.load(adding / "nowhere")


def test_inspect_writes_the_pngs_the_command_writes(adding, tmp_path, capsys):
    run = lstmkit.load(adding)
    paths = run.inspect("0.5* 0.1 0.3*", out=tmp_path / "api")
    assert cli_main(["inspect", str(adding), "0.5* 0.1 0.3*", "--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out.split()
    assert [p.name for p in paths] == [Path(p).name for p in printed] and paths
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)


def test_sentiment_predict_matches_the_command(sentiment, capsys):
    texts = ["a gripping film", "a dull tired film \u263a"]
    capsys.readouterr()
    assert cli_main(["predict", str(sentiment), *texts]) == 0
    printed = _lines(capsys)
    run = lstmkit.load(sentiment)
    got = run.predict(texts)
    assert got == printed and {"label", "probabilities"} <= set(got[0])
    assert run.verbs == ("predict", "evaluate", "inspect", "export", "quantize")


def test_evaluate_a_labelled_file_matches_the_command(sentiment, capsys):
    data = sentiment.parent / "reviews.csv"
    capsys.readouterr()
    assert cli_main(["evaluate", str(sentiment), "--data", str(data), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)["data"]
    run = lstmkit.load(sentiment)
    assert run.evaluate(data=data) == printed and "accuracy" in printed
    with pytest.raises(UserError, match="apply only with data=FILE"):
        run.evaluate(text_column="review")


def test_evaluate_refuses_a_fifo_as_the_command_does(sentiment, tmp_path):
    # the command checked --data before reading it; Run.evaluate(data=FIFO) blocked for ever
    import threading

    fifo = tmp_path / "reviews.csv"
    os.mkfifo(fifo)
    run = lstmkit.load(sentiment)
    raised: list[BaseException] = []

    def call():
        try:
            run.evaluate(data=fifo)
        except BaseException as e:  # noqa: BLE001 - handed to the test's thread
            raised.append(e)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():  # blocked opening the FIFO: a writer unblocks it, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(timeout=30)
        pytest.fail("Run.evaluate(data=FIFO) blocked instead of refusing it")
    assert len(raised) == 1 and isinstance(raised[0], UserError)
    assert f"--data: {fifo} is not a regular file" in str(raised[0])


def test_generate_matches_the_command(tmp_path, capsys):
    text = "".join(f"to be or not to be, line {i}\n" for i in range(200))
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    out = tmp_path / "lm"
    args = ["train", "lm", "--train", str(tmp_path / "t.txt"), "--hidden-size", "16"]
    args += ["--num-layers", "1", "--embed-size", "8", "--seq-len", "16", "--batch-size", "4"]
    args += ["--steps", "4", "--eval-every", "4", "--warmup-steps", "0", *QUIET]
    assert cli_main([*args, "--out", str(out)]) == 0
    capsys.readouterr()
    assert (
        cli_main(["generate", str(out), "--prompt", "to be", "--length", "30", "--seed", "3"]) == 0
    )
    printed = capsys.readouterr().out
    run = lstmkit.load(out)
    assert "generate" in run.verbs and "translate" not in run.verbs
    assert run.generate("to be", 30, seed=3) + "\n" == printed
    assert "".join(run.generate("to be", 30, seed=3, stream=True)) + "\n" == printed
    assert not run.generate("to be", 5, seed=3, echo_prompt=False).startswith("to be")
    with pytest.raises(UserError, match="length must be >= 0, got -1"):
        run.generate("to be", -1)
    with pytest.raises(UserError, match="this lm run has no test set to evaluate"):
        run.evaluate()  # trained without --test: said, not an empty table


def test_transcribe_matches_the_command(tmp_path, capsys):
    rng = np.random.default_rng(1)
    lines = []
    for k in range(12):  # sequences of 'a' (400 Hz) and 'b' (1600 Hz) tones at 8 kHz
        symbols = rng.choice(["a", "b"], size=int(rng.integers(1, 4)))
        parts = [np.zeros(400)]
        for s in symbols:
            t = np.arange(1600) / 8000
            parts += [0.3 * np.sin(2 * np.pi * (400 if s == "a" else 1600) * t), np.zeros(400)]
        sf.write(tmp_path / f"{k}.flac", np.concatenate(parts).astype(np.float32), 8000)
        lines.append(json.dumps({"audio_filepath": f"{k}.flac", "text": " ".join(symbols)}))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "asr"
    args = ["train", "asr-ctc", "--train", str(tmp_path / "m.jsonl"), "--sample-rate", "8000"]
    args += ["--hidden-size", "8", "--num-layers", "1", "--steps", "2", "--batch-size", "4"]
    args += ["--eval-every", "2", *QUIET]
    assert cli_main([*args, "--out", str(out)]) == 0
    files = [str(tmp_path / "0.flac"), str(tmp_path / "1.flac")]
    capsys.readouterr()
    assert cli_main(["transcribe", str(out), *files]) == 0
    printed = capsys.readouterr().out
    run = lstmkit.load(out)
    rows = run.transcribe(files)
    assert "".join(f"{r['input']}\t{r['text']}\n" for r in rows) == printed
    assert [r["text"] for r in run.transcribe(Path(files[0]))] == [rows[0]["text"]]
    assert run.verbs == ("predict", "evaluate", "inspect", "transcribe", "export", "quantize")


def _quick_start() -> tuple[list[str], list[str]]:
    """The README Quick start's shell lines and its Python code, in order."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, re.S)
    shell = [
        line.split("#")[0].strip()
        for lang, code in blocks
        if lang in ("bash", "sh")
        for line in code.splitlines()
        if line.split("#")[0].strip()
    ]
    return shell, [code for lang, code in blocks if lang == "python"]


def test_the_readme_quick_start_runs_beside_a_folder_named_lstmkit(tmp_path):
    """Saved as a script next to the clone folder (here: an empty folder named lstmkit), the
    Quick start imports the installed package, not the folder; its shell lines run first."""
    shell, python = _quick_start()
    assert python and any("lstmkit.load(" in code for code in python)
    (tmp_path / "lstmkit").mkdir()
    env = {**os.environ, "PYTHONPATH": ""}
    bin_dir = Path(sys.executable).parent
    for line in shell:
        argv = line.split()
        assert argv[0] == "lstmkit", line
        # the README's own command, made quick: fewer steps (the other options as written)
        argv += ["--steps", "20", "--eval-every", "20", *QUIET]
        proc = subprocess.run(
            [str(bin_dir / "lstmkit"), *argv[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
    (tmp_path / "quick.py").write_text("\n".join(python), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "quick.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
