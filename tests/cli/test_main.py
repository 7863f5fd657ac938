"""The lstmkit command: every subcommand on a tiny run, and one error line for bad input."""

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import lstmkit
from lstmkit.cli.main import cli_main
from lstmkit.train.checkpoint import _content_sha256

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--hidden-size", "8", "--batch-size", "16", "--eval-every", "20", "--no-progress"]
TINY += ["--device", "cpu", "--n-valid", "50", "--n-test", "50"]


def test_version(capsys):
    assert cli_main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == lstmkit.__version__


def test_the_command_sets_the_allocator(monkeypatch, capsys):
    from lstmkit.utils.malloc import ENV, malloc_state

    monkeypatch.setenv(ENV, "sytem")  # a typo: one error line, status 2
    assert cli_main(["--version"]) == 2
    assert "LSTMKIT_MALLOC='sytem' is not understood" in capsys.readouterr().err
    monkeypatch.setenv(ENV, "system")  # the opt-out: the command asks and leaves it alone
    assert cli_main(["--version"]) == 0
    assert malloc_state() == f"system ({ENV}=system)"
    for name in (ENV, "LD_PRELOAD", "GLIBC_TUNABLES", "MALLOC_ARENA_MAX", "MALLOC_MMAP_MAX_"):
        monkeypatch.delenv(name, raising=False)
    assert cli_main(["--version"]) == 0
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert malloc_state().startswith("glibc tuned")
    else:
        assert malloc_state() == "system (not glibc)"


def test_help_documents_every_option(capsys):
    from dataclasses import fields

    from lstmkit.tasks.longlag import AddingTask
    from lstmkit.train.config import TrainConfig

    assert cli_main(["train", "adding", "--help"]) == 0
    text = capsys.readouterr().out
    for cls in (AddingTask.Config, AddingTask.ModelConfig, TrainConfig):
        for f in fields(cls):
            assert "--" + f.name.replace("_", "-") in text, f.name
    for section in ("Task options", "Model options", "Training options"):
        assert section in text
    assert ":func:" not in text


def test_train_lists_the_tasks(capsys):
    assert cli_main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    for name in ("adding", "multiplication", "temporal-order", "reber", "copy-memory"):
        assert name in text


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "adding"
    args = ["train", "adding", "--seq-len", "10", "--steps", "40", *TINY, "--out", str(out)]
    assert cli_main(args) == 0
    return out


def test_train_writes_a_run(trained, capsys):
    assert (trained / "best" / "model.safetensors").exists()
    assert json.loads((trained / "results.json").read_text())["steps"] <= 40


@pytest.mark.parametrize(
    "task, extra",
    [
        ("multiplication", ["--seq-len", "20"]),
        ("temporal-order", ["--variant", "6b"]),
        ("reber", []),
        ("copy-memory", ["--delay", "5", "--copy-len", "3"]),
        ("continual-reber", ["--chunk", "40", "--valid-length", "200", "--test-length", "200"]),
    ],
)
def test_every_task_trains_and_predicts(tmp_path, capsys, task, extra):
    tiny = TINY if task != "continual-reber" else TINY[:-4]
    out = tmp_path / task
    assert cli_main(["train", task, "--steps", "20", *extra, *tiny, "--out", str(out)]) == 0
    capsys.readouterr()
    assert cli_main(["predict", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all("input" in json.loads(line) for line in lines)


def test_evaluate(trained, capsys):
    assert cli_main(["evaluate", str(trained), "--json", "--split", "both"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert set(got) == {"checkpoint", "valid", "test"}
    assert got["test"] == json.loads((trained / "results.json").read_text())["test"]
    assert cli_main(["evaluate", str(trained / "last")]) == 0
    assert "mse" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["evaluate", "predict", "inspect", "generate", "transcribe"])
def test_use_commands_take_threads(command, capsys):
    assert cli_main([command, "--help"]) == 0
    assert "--threads" in capsys.readouterr().out
    assert cli_main([command, "x", "--threads", "-1"]) == 2
    assert "--threads must be >= 0, got -1" in capsys.readouterr().err


def test_evaluate_threads_sets_torch_threads(trained, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        assert cli_main(["evaluate", str(trained), "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_predict_arguments_and_files(trained, tmp_path, capsys):
    assert cli_main(["predict", str(trained), "0.5* 0.1 0.2 0.3* 0.4"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["target"] == pytest.approx(0.8) and set(row) >= {"prediction", "error"}
    inputs = tmp_path / "in.txt"
    inputs.write_text("0.5* 0.1 0.3*\n\n0.9* 0.9*\n")
    out = tmp_path / "pred.jsonl"
    assert cli_main(["predict", str(trained), "--input", str(inputs), "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["target"] for r in rows] == pytest.approx([0.8, 1.8])


def test_inspect_writes_pngs(trained, tmp_path, capsys):
    assert cli_main(["inspect", str(trained), "0.5* 0.1 0.3*", "--out", str(tmp_path / "i")]) == 0
    paths = capsys.readouterr().out.split()
    assert len(paths) == 1 and Path(paths[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_quick_writes_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert cli_main(["bench", "--quick", "--variants", "vanilla,layernorm", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    names = {r["name"] for r in data["rows"]}
    assert names == {"torch.nn.LSTM", "lstmkit vanilla", "lstmkit layernorm"}
    assert all(r["median_ms"] > 0 for r in data["rows"])
    assert "ratio" in capsys.readouterr().out


def _corrupt(run: Path, tmp_path: Path) -> Path:
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in (run / "best").iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[:100])
    return bad


def _foreign(tmp_path: Path) -> Path:
    d = tmp_path / "foreign"
    d.mkdir()
    (d / "model.json").write_text('{"architectures": ["BertModel"]}')
    return d


def _misfit(run: Path, tmp_path: Path) -> Path:
    d = tmp_path / "misfit"
    d.mkdir()
    for f in (run / "best").iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    meta = json.loads((d / "model.json").read_text())
    meta["model_config"]["hidden_size"] = 9
    meta["meta_sha256"] = _content_sha256(meta)  # sealed again: a checkpoint that is whole
    (d / "model.json").write_text(json.dumps(meta))
    return d


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda run, tmp: ["train", "nosuchtask"], "unknown task 'nosuchtask'; known tasks:"),
        (lambda run, tmp: ["train", "adding", "--bogus"], "No such option '--bogus'"),
        (lambda run, tmp: ["train", "adding", "--lr", "fast"], "'fast' is not a valid float"),
        (lambda run, tmp: ["train", "adding", "--variant", "x"], "'x' is not one of"),
        (lambda run, tmp: ["train", "adding", "--cell", "rnn", "--layer-norm"], "--layer-norm"),
        (lambda run, tmp: ["train", "adding", "--out", str(run)], "already holds a run"),
        (lambda run, tmp: ["evaluate", str(tmp / "nope")], "checkpoint not found"),
        (lambda run, tmp: ["evaluate", str(_corrupt(run, tmp))], "corrupted checkpoint"),
        (lambda run, tmp: ["evaluate", str(_foreign(tmp))], "not an lstmkit checkpoint"),
        (lambda run, tmp: ["evaluate", str(_misfit(run, tmp))], "does not fit the model"),
        (lambda run, tmp: ["predict", str(run), "--input", str(tmp / "x")], "file not found"),
        (lambda run, tmp: ["predict", str(run), "1 2 3"], "mark exactly two values"),
        (lambda run, tmp: ["nosuchcommand"], "No such command"),
        (lambda run, tmp: ["bench", "--variants", "vanilla,bogus"], "unknown ['bogus']"),
        (lambda run, tmp: ["bench", "--repeats", "x"], "invalid int value"),
        (lambda run, tmp: ["train", "adding", "--amp", "bf16", "--device", "cpu"], "CUDA"),
    ],
)
def test_bad_input_gives_one_error_line(trained, tmp_path, capsys, make_args, message):
    assert cli_main(make_args(trained, tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("lstmkit: error: ") and err.count("\n") == 1, err
    assert message in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path):
    cmd = [sys.executable, "-m", "lstmkit", "evaluate", str(tmp_path / "nope")]
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    plain = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    debug = subprocess.run([*cmd, "--debug"], capture_output=True, text=True, env=env)
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    assert "checkpoint not found" in debug.stderr


def _commands(group, prefix=()):
    import click

    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


def test_no_command_declares_an_option_twice():
    from lstmkit.cli.main import cli

    seen = 0
    for path, cmd in _commands(cli):
        flags = [f for p in cmd.params for f in getattr(p, "opts", [])]
        assert len(flags) == len(set(flags)), (path, sorted(f for f in flags if flags.count(f) > 1))
        seen += 1
    assert seen >= 6  # evaluate, predict, inspect, generate, translate, transcribe, ...


def _tiny_text(path: Path) -> Path:
    import random

    rng = random.Random(0)
    words = "the cat sat on a mat and the dog ran to the park while birds sang".split()
    path.write_text("\n".join(" ".join(rng.choices(words, k=12)) for _ in range(200)) + "\n")
    return path


def _table_header(out: str) -> list[str]:
    import re

    rows = ([w for w in re.split(r"[\s┃│|]+", line) if w] for line in out.splitlines())
    return next(words for words in rows if words[:1] == ["metric"])


def _next_hints(out: str) -> list[str]:
    lines = out.splitlines()
    start = lines.index("next:")
    return [line.strip() for line in lines[start + 1 :] if line.startswith("  lstmkit ")]


def test_after_training_the_hints_name_the_tasks_verbs_and_empty_splits_have_no_column(
    tmp_path, capsys
):
    lm = tmp_path / "lm"
    args = ["train", "lm", "--train", str(_tiny_text(tmp_path / "t.txt")), "--hidden-size", "8"]
    args += ["--steps", "4", "--eval-every", "2", "--batch-size", "4", "--seq-len", "8"]
    assert cli_main([*args, "--no-progress", "--device", "cpu", "--out", str(lm)]) == 0
    out = capsys.readouterr().out
    # the lm run has no test split: its evaluate hint must be one that works
    assert _next_hints(out) == [
        f"lstmkit evaluate {lm} --split valid",
        *(f"lstmkit {verb} {lm}" for verb in ("generate", "predict", "inspect")),
    ]
    header = _table_header(out)
    assert "valid" in header and "test" not in header
    assert cli_main(["evaluate", str(lm), "--split", "valid", "--device", "cpu"]) == 0
    assert "valid" in _table_header(capsys.readouterr().out)
    adding = tmp_path / "adding"
    args = ["train", "adding", "--seq-len", "10", "--steps", "10", *TINY, "--out", str(adding)]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert _next_hints(out) == [
        f"lstmkit {verb} {adding}" for verb in ("evaluate", "predict", "inspect")
    ]
    header = _table_header(out)
    assert "valid" in header and "test" in header
    assert f"curves: {adding / 'curves.png'}" in out


def test_use_verbs_of_the_translation_and_speech_tasks():
    from lstmkit.cli.report import use_verbs
    from lstmkit.tasks.speech import AsrCtcTask, SpokenWordsTask
    from lstmkit.tasks.translation import TranslationTask

    def bare(cls):
        return cls.__new__(cls)  # the verbs are the class's; no data needs reading

    assert use_verbs(bare(TranslationTask))[:2] == ["evaluate", "translate"]
    assert use_verbs(bare(AsrCtcTask))[:2] == ["evaluate", "transcribe"]
    assert "transcribe" not in use_verbs(bare(SpokenWordsTask))


def test_metrics_table_leaves_out_splits_without_metrics():
    from lstmkit.cli.report import metrics_table

    table = metrics_table({"valid": {"loss": 1.0}, "test": {}})
    assert [c.header for c in table.columns] == ["metric", "valid"]


def test_metrics_note_is_printed_under_the_table(capsys):
    from types import SimpleNamespace

    from lstmkit.cli.report import print_metrics
    from lstmkit.tasks.base import Task
    from lstmkit.tasks.forecast import ForecastTask

    ckpt = SimpleNamespace(meta={"step": 3}, path="run/ckpt")
    print_metrics(
        SimpleNamespace(name="forecast", metrics_note=ForecastTask.metrics_note),
        ckpt,
        {"test": {"mse": 0.5}},
    )
    out = capsys.readouterr().out
    assert "standardised with the training rows' mean and std" in out
    assert out.index("0.5") < out.index("standardised")
    assert Task.metrics_note == ""


def test_plot_draws_runs_side_by_side(trained, tmp_path, capsys):
    assert cli_main(["plot", str(trained)]) == 0
    assert capsys.readouterr().err == f"wrote {trained / 'curves.png'}\n"
    assert (trained / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = tmp_path / "both.png"
    assert cli_main(["plot", str(trained), str(trained / "train.jsonl"), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli_main(["plot", str(trained), "--metric", "loss,lr", "--out", str(out)]) == 0


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "plot: give one or more run folders"),
        (["{tmp}/nothing"], "plot: run folder not found: {tmp}/nothing"),
        (["{tmp}"], "plot: {tmp} is not a run folder (no train.jsonl in it)"),
        (["{run}", "--metric", "accuracy"], "plot: --metric accuracy: not in the logs; they hold"),
        (["{run}", "--out", "{tmp}/x.jpg"], "plot: --out {tmp}/x.jpg: give a .png file"),
        (["{run}", "--out", "{tmp}/no/x.png"], "folder {tmp}/no does not exist"),
    ],
)
def test_plot_bad_input_is_one_line(trained, tmp_path, capsys, args, message):
    args = [a.format(tmp=tmp_path, run=trained) for a in args]
    assert cli_main(["plot", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(tmp=tmp_path) in err


def test_a_model_of_another_task_is_named_in_good_grammar(trained, tmp_path, capsys):
    assert cli_main(["transcribe", str(trained), str(tmp_path / "x.wav")]) == 2
    err = capsys.readouterr().err
    # one message for every verb a task lacks (infer.load.require): the task by name, its verbs
    assert "this run's task, 'adding', has no transcribe" in err and "a 'adding'" not in err
    assert cli_main(["translate", str(trained), "hello"]) == 2
    err = capsys.readouterr().err
    assert "this run's task, 'adding', has no translate" in err and "a 'adding'" not in err


def test_a_speech_run_hints_an_audio_file_and_predict_without_one_says_so(capsys):
    from types import SimpleNamespace

    from lstmkit.cli.report import print_training_result

    # trained on generated tones with no --valid/--test files: no recordings to fall back on
    fixture = Path(__file__).parents[1] / "fixtures" / "checkpoints" / "spoken-words"
    task = lstmkit.load(fixture, device="cpu").task
    state = SimpleNamespace(stop_reason="reached --steps 1", step=1, sequences=1, elapsed=0.0)
    result = SimpleNamespace(state=state, out=fixture, valid={"accuracy": 1.0}, test={})
    print_training_result(result, task)
    assert _next_hints(capsys.readouterr().out) == [
        f"lstmkit evaluate {fixture} --split valid",
        f"lstmkit predict {fixture} AUDIO.wav",
        f"lstmkit inspect {fixture} AUDIO.wav",
    ]
    # the hint without the file: a speech task has no built-in examples to fall back on
    assert cli_main(["predict", str(fixture), "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        "lstmkit: error: predict: a spoken-words run has no built-in examples; give the "
        "inputs to label (as arguments, or --input FILE)"
    ]


def test_predict_output_says_how_many_in_words_that_fit(tmp_path, capsys):
    fixture = Path(__file__).parents[1] / "fixtures" / "checkpoints" / "adding"
    out = tmp_path / "p.csv"
    args = ["predict", str(fixture), "0.3 0.9* 0.1 0.5* 0.2", "--device", "cpu"]
    assert cli_main([*args, "--output", str(out)]) == 0
    assert capsys.readouterr().err.strip() == f"wrote 1 prediction to {out}"
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2  # header and the one row
    assert cli_main([*args, "0.1 0.2* 0.3* 0.4", "--output", str(out)]) == 0
    assert capsys.readouterr().err.strip() == f"wrote 2 predictions to {out}"
