"""`lstmkit train TASK --out RUN --resume`: the run's saved options, without retyping them.

A resumed run takes its task, model and training options from its last checkpoint; options
typed on the line override only those that may change (--steps, --max-time, --eval-every...),
and a typed value that differs from the run for any other option is one error line, status 2.
"""

import json
import random
from pathlib import Path

from lstmkit.cli.main import cli_main
from lstmkit.train.config import RESUMABLE, TrainConfig

FAST = ["--no-progress", "--device", "cpu", "--threads", "1", "--no-curves"]


def _meta(run: Path) -> dict:
    return json.loads((run / "last" / "model.json").read_text())


def _adding_run(out: Path) -> Path:
    args = ["train", "adding", "--seq-len", "12", "--hidden-size", "8", "--batch-size", "16"]
    args += ["--lr", "0.02", "--n-valid", "40", "--n-test", "40", "--eval-every", "10"]
    args += ["--steps", "20", "--no-stop-when-solved", *FAST, "--out", str(out)]
    assert cli_main(args) == 0
    return out


def test_resume_takes_the_runs_options(tmp_path, capsys):
    run = _adding_run(tmp_path / "add")
    capsys.readouterr()
    # the README's line: no --seq-len, --hidden-size or --lr given again
    assert cli_main(["train", "adding", "--out", str(run), "--resume", "--steps", "30"]) == 0
    meta = _meta(run)
    assert meta["step"] == 30
    assert meta["task_config"]["seq_len"] == 12 and meta["task_config"]["n_valid"] == 40
    assert meta["model_config"]["hidden_size"] == 8
    train = meta["train_config"]
    assert (train["lr"], train["batch_size"], train["eval_every"]) == (0.02, 16, 10)
    assert train["steps"] == 30 and train["stop_when_solved"] is False
    # a second resume without --steps continues to the saved --steps 30: nothing more to do
    assert cli_main(["train", "adding", "--out", str(run), "--resume"]) == 0
    assert _meta(run)["step"] == 30


def test_resume_refuses_a_typed_option_that_changes_the_run(tmp_path, capsys):
    run = _adding_run(tmp_path / "add")
    capsys.readouterr()
    before = (run / "last" / "model.json").read_text()
    for typed, shown in [
        (["--seq-len", "20"], "--seq-len 12 (run) vs 20 (now)"),
        (["--hidden-size", "16"], "--hidden-size 8 (run) vs 16 (now)"),
        (["--lr", "0.5"], "--lr 0.02 (run) vs 0.5 (now)"),  # not checked at all before
        (["--batch-size", "32"], "--batch-size 16 (run) vs 32 (now)"),
    ]:
        argv = ["train", "adding", "--out", str(run), "--resume", "--steps", "40", *typed]
        assert cli_main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("lstmkit: error: --resume: options differ")
        assert shown in err and "--steps" in err  # what may change is listed,
        assert "--backend" in err and "--enc-backend" not in err  # the task's options too
    assert (run / "last" / "model.json").read_text() == before


def test_resume_accepts_typed_options_equal_to_the_run_and_the_changeable_ones(tmp_path):
    run = _adding_run(tmp_path / "add")
    argv = ["train", "adding", "--out", str(run), "--resume", "--seq-len", "12", "--lr", "0.02"]
    argv += ["--steps", "30", "--eval-every", "5", "--log-every", "5", "--max-time", "600"]
    assert cli_main(argv) == 0
    meta = _meta(run)
    assert meta["step"] == 30
    assert (meta["train_config"]["eval_every"], meta["train_config"]["max_time"]) == (5, 600)
    events = [json.loads(line) for line in (run / "train.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "valid"] == [10, 20, 25, 30]


def test_resume_of_another_task_or_an_empty_folder_is_one_line(tmp_path, capsys):
    run = _adding_run(tmp_path / "add")
    capsys.readouterr()
    assert cli_main(["train", "multiplication", "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"lstmkit: error: --resume: {run} holds a run of task 'adding', not 'multiplication'\n"
    )
    assert cli_main(["train", "adding", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "has no checkpoint to resume from" in capsys.readouterr().err


def test_resume_help_lists_what_may_change(capsys):
    assert cli_main(["train", "adding", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--resume" in text and "only these may be given anew" in text
    for name in ("steps", "max-time", "eval-every", "log-every"):
        assert f"--{name}," in text or f"--{name} " in text
    assert all(n in {f.name for f in TrainConfig.__dataclass_fields__.values()} for n in RESUMABLE)


def _reviews(path: Path, n: int = 80) -> Path:
    rng = random.Random(0)
    good, bad = ["great", "moving", "superb", "fine"], ["dull", "awful", "weak", "boring"]
    lines = ["text,label"]
    for k in range(n):
        label = k % 2
        words = rng.choices(good if label else bad, k=4) + rng.choices(["film", "plot"], k=2)
        lines.append(f"{' '.join(words)},{'pos' if label else 'neg'}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_sentiment_resumes_without_retyping_train(tmp_path, capsys):
    data = _reviews(tmp_path / "reviews.csv")
    out = tmp_path / "int"
    argv = ["train", "sentiment", "--train", str(data), "--hidden-size", "8"]
    argv += ["--embedding-dim", "8", "--batch-size", "8", "--steps", "10", "--eval-every", "5"]
    assert cli_main([*argv, *FAST, "--out", str(out)]) == 0
    capsys.readouterr()
    # the README's line failed with "--train is required"
    assert cli_main(["train", "sentiment", "--out", str(out), "--resume", "--steps", "15"]) == 0
    meta = _meta(out)
    assert meta["step"] == 15 and meta["task_config"]["train"] == str(data)
    other = _reviews(tmp_path / "other.csv", 60)
    assert (
        cli_main(["train", "sentiment", "--out", str(out), "--resume", "--train", str(other)]) == 2
    )
    assert f"--train {data} (run) vs {other} (now)" in capsys.readouterr().err


def test_overwrite_still_takes_the_typed_options(tmp_path):
    run = _adding_run(tmp_path / "add")
    argv = ["train", "adding", "--seq-len", "14", "--hidden-size", "4", "--steps", "10"]
    assert cli_main([*argv, "--eval-every", "10", *FAST, "--out", str(run), "--overwrite"]) == 0
    meta = _meta(run)
    assert meta["task_config"]["seq_len"] == 14 and meta["model_config"]["hidden_size"] == 4


def test_cross_validation_resumes_without_retyping(tmp_path, capsys):
    data = _reviews(tmp_path / "reviews.csv", 40)
    out = tmp_path / "cv"
    argv = ["train", "sentiment", "--train", str(data), "--cv", "2", "--hidden-size", "8"]
    argv += ["--embedding-dim", "8", "--batch-size", "8", "--steps", "4", "--eval-every", "4"]
    assert cli_main([*argv, *FAST, "--out", str(out)]) == 0
    first = json.loads((out / "cv.json").read_text())
    (out / "fold-1" / "results.json").unlink()  # as if killed during the second fold
    capsys.readouterr()
    assert cli_main(["train", "sentiment", "--out", str(out), "--resume"]) == 0
    assert "2-fold cross-validation" in capsys.readouterr().out
    again = json.loads((out / "cv.json").read_text())
    assert again["folds"] == first["folds"] == 2
    assert json.loads((out / "fold-1" / "results.json").read_text())["steps"] == 4


def test_a_run_of_two_processes_resumes_in_two(tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "two"
    args = ["train", "adding", "--seq-len", "10", "--hidden-size", "8", "--batch-size", "16"]
    args += ["--steps", "10", "--eval-every", "10", "--nproc", "2", *FAST, "--out", str(out)]
    for argv in (args, ["train", "adding", "--out", str(out), "--resume", "--steps", "20"]):
        done = subprocess.run(
            [sys.executable, "-m", "lstmkit", *argv], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
    events = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert [(e["event"], e["world"]) for e in events if "world" in e] == [
        ("start", 2),
        ("resume", 2),
    ]
    assert _meta(out)["step"] == 20 and _meta(out)["train_config"]["nproc"] == 2
