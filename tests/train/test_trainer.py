"""The training loop: schedule, stopping rules, outputs, resume after a kill, data parallelism."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from lstmkit.tasks.longlag import AddingTask
from lstmkit.train.checkpoint import load_checkpoint
from lstmkit.train.config import TrainConfig
from lstmkit.train.trainer import check_config, lr_at, make_optimizer, read_jsonl, train
from lstmkit.utils.errors import UserError
from lstmkit.utils.malloc import malloc_state

ROOT = Path(__file__).resolve().parents[2]


def _task(seq_len=10, hidden=8, **model):
    return AddingTask(
        AddingTask.Config(seq_len=seq_len, n_valid=200, n_test=200),
        AddingTask.ModelConfig(hidden_size=hidden, **model),
    )


def _cfg(out, **kw):
    base = dict(steps=40, batch_size=16, lr=1e-2, eval_every=10, device="cpu", progress=False)
    return TrainConfig(out=str(out), **{**base, **kw})


def test_schedule():
    cfg = TrainConfig(lr=1.0, steps=110, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55)
    assert lr_at(110, cfg) == pytest.approx(0.1)
    lin = replace(cfg, schedule="linear")
    assert lr_at(60, lin) == pytest.approx(0.55)
    assert lr_at(35, lin) == pytest.approx(1.0 - 0.9 * 0.25)
    assert lr_at(50, replace(cfg, schedule="constant", warmup_steps=0)) == 1.0


@pytest.mark.parametrize(
    "change, flag",
    [
        ({"steps": 0}, "--steps"),
        ({"batch_size": -1}, "--batch-size"),
        ({"lr": -1.0}, "--lr"),
        ({"schedule": "zigzag"}, "--schedule"),
        ({"amp": "fp8"}, "--amp"),
        ({"patience": -2}, "--patience"),
    ],
)
def test_bad_options_name_the_flag(change, flag):
    with pytest.raises(UserError, match=flag):
        check_config(replace(TrainConfig(), **change))


def test_outputs_and_log(tmp_path):
    r = train(_task(), _cfg(tmp_path / "run", stop_when_solved=False))
    out = tmp_path / "run"
    assert {p.name for p in out.iterdir()} == {
        ".lock",
        "config.json",
        "train.jsonl",
        "last",
        "best",
        "results.json",
        "curves.png",
    }
    events = read_jsonl(out / "train.jsonl")
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-2:] == ["stop", "test"]
    assert events[0]["malloc"] == malloc_state()  # how the C allocator was set, for the record
    assert kinds.count("valid") == 4  # steps 10, 20, 30, 40
    train_steps = [e["step"] for e in events if e["event"] == "train"]
    assert train_steps == [20, 40]  # log_every 20
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 40 and results["sequences"] == 640
    best = load_checkpoint(out / "best")
    valid = [e for e in events if e["event"] == "valid"]
    assert best.meta["step"] == min(valid, key=lambda e: e["loss"])["step"]
    assert r.test == results["test"]
    assert json.loads((out / "config.json").read_text())["task"] == "adding"


def test_refuses_to_clobber_a_run(tmp_path):
    train(_task(), _cfg(tmp_path / "run", steps=10))
    with pytest.raises(UserError, match="already holds a run"):
        train(_task(), _cfg(tmp_path / "run", steps=10))
    train(_task(), _cfg(tmp_path / "run", steps=10, overwrite=True))
    with pytest.raises(UserError, match="no checkpoint to resume"):
        train(_task(), _cfg(tmp_path / "other", steps=10, resume=True))


def test_early_stopping_and_time_limit(tmp_path):
    # lr 0: nothing improves after the first evaluation
    r = train(_task(), _cfg(tmp_path / "a", lr=0.0, steps=1000, patience=2))
    assert r.state.step == 30 and "no better loss in 2 evaluations" in r.state.stop_reason
    r = train(_task(), _cfg(tmp_path / "b", steps=10**6, max_time=1.0))
    assert "time limit" in r.state.stop_reason and r.state.elapsed < 10


def test_stops_when_solved(tmp_path):
    task = AddingTask(
        AddingTask.Config(seq_len=5, n_valid=100, n_test=100, tolerance=10.0),
        AddingTask.ModelConfig(hidden_size=4),
    )
    r = train(task, _cfg(tmp_path / "run", steps=1000))
    assert r.state.stop_reason == "solved at step 10" and r.solved


def test_learns(tmp_path):
    r = train(_task(seq_len=8, hidden=16), _cfg(tmp_path / "run", steps=300, eval_every=100))
    assert r.test["mse"] < 0.2 * r.test["baseline_mse"]


def _cli(*args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return [sys.executable, "-m", "lstmkit", *args], env


TRAIN = [
    "train",
    "adding",
    "--seq-len",
    "10",
    "--hidden-size",
    "8",
    "--batch-size",
    "16",
    "--eval-every",
    "50",
    "--save-every",
    "5",
    "--no-stop-when-solved",
    "--no-progress",
    "--device",
    "cpu",
    "--threads",
    "1",
    "--recurrent-dropout",  # draws from the global RNG: resume must restore it
    "0.1",
]


def _last_step(out: Path) -> int:
    try:
        return json.loads((out / "last" / "model.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return -1


def test_killed_and_resumed_run_ends_at_the_same_weights(tmp_path):
    steps = "600"
    cmd, env = _cli(*TRAIN, "--steps", steps, "--out", str(tmp_path / "whole"))
    subprocess.run(cmd, env=env, check=True, capture_output=True)

    cmd, env = _cli(*TRAIN, "--steps", steps, "--out", str(tmp_path / "killed"))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while _last_step(tmp_path / "killed") < 100 and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _last_step(tmp_path / "killed")
    assert 100 <= killed_at < 600, f"the run was not interrupted (last step {killed_at})"
    cmd, env = _cli(*TRAIN, "--steps", steps, "--out", str(tmp_path / "killed"), "--resume")
    subprocess.run(cmd, env=env, check=True, capture_output=True)

    whole = load_checkpoint(tmp_path / "whole" / "last")
    resumed = load_checkpoint(tmp_path / "killed" / "last")
    assert whole.meta["step"] == resumed.meta["step"] == 600
    for k, v in whole.weights.items():
        assert torch.equal(v, resumed.weights[k]), k
    events = read_jsonl(tmp_path / "killed" / "train.jsonl")
    assert [e["step"] for e in events if e["event"] == "resume"] == [killed_at]
    # the steps the killed run did after its checkpoint were dropped from the log and redone
    logged = [e["step"] for e in events if e["event"] == "train"]
    assert logged == sorted(set(logged)) == list(range(20, 601, 20))


def test_two_processes_match_one_on_the_same_global_batch(tmp_path):
    common = [*TRAIN[:-2], "--steps", "30", "--eval-every", "30", "--lr", "0.01"]
    cmd, env = _cli(*common, "--out", str(tmp_path / "one"))
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    cmd, env = _cli(*common, "--out", str(tmp_path / "two"), "--nproc", "2")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    one = load_checkpoint(tmp_path / "one" / "last")
    two = load_checkpoint(tmp_path / "two" / "last")
    assert two.meta["step"] == 30
    start = json.loads((tmp_path / "two" / "train.jsonl").read_text().splitlines()[0])
    assert start["world"] == 2
    for k, v in one.weights.items():
        torch.testing.assert_close(two.weights[k], v, rtol=1e-4, atol=1e-5)
    # and training moved the weights: the comparison is not between two untrained models
    torch.manual_seed(0)
    init = _task(hidden=8).build_model().state_dict()
    assert not torch.allclose(init["head.weight"], one.weights["head.weight"], atol=1e-3)


def test_two_processes_stop_together_on_a_time_limit(tmp_path):
    # only rank 0 reads its clock; a rank that stopped alone would hang the other in all-reduce
    args = [*TRAIN[:-2], "--steps", "1000000", "--max-time", "2", "--nproc", "2"]
    cmd, env = _cli(*args, "--out", str(tmp_path / "two"))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "two" / "results.json").read_text())
    assert "time limit" in results["stop_reason"]


def test_resume_extends_a_finished_run_and_refuses_other_options(tmp_path):
    train(_task(), _cfg(tmp_path / "run", steps=20, stop_when_solved=False))
    r = train(_task(), _cfg(tmp_path / "run", steps=40, resume=True, stop_when_solved=False))
    assert r.state.step == 40 and r.state.stop_reason == "reached --steps 40"
    with pytest.raises(UserError, match=r"--hidden-size 8 \(run\) vs 16 \(now\)"):
        train(_task(hidden=16), _cfg(tmp_path / "run", steps=60, resume=True))
    with pytest.raises(UserError, match=r"--seq-len 10 \(run\) vs 12 \(now\)"):
        train(_task(seq_len=12), _cfg(tmp_path / "run", steps=60, resume=True))


def test_optimizer_is_fused_adamw_with_the_same_update():
    torch.manual_seed(0)
    model, plain = nn.Linear(5, 3), nn.Linear(5, 3)
    plain.load_state_dict(model.state_dict())
    cfg = TrainConfig(lr=0.05, weight_decay=0.01)
    opt = make_optimizer(model, cfg, torch.device("cpu"))
    ref = torch.optim.AdamW(plain.parameters(), lr=0.05, weight_decay=0.01, foreach=False)
    assert opt.defaults["fused"] is True
    x = torch.randn(8, 5)
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(5):
        for m, o in ((model, opt), (plain, ref)):
            o.zero_grad()
            m(x).pow(2).sum().backward()
            o.step()
    for a, b, a0 in zip(model.parameters(), plain.parameters(), before, strict=True):
        assert (a - a0).abs().min() > 1e-3  # every entry moved: 5 steps of lr 0.05
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_logged_speed_leaves_out_evaluation_time(tmp_path, monkeypatch):
    import lstmkit.train.trainer as trainer

    validate = trainer._Run.validate

    def slow_validate(self):  # an evaluation of 0.5 s between two log windows
        time.sleep(0.5)
        validate(self)

    monkeypatch.setattr(trainer._Run, "validate", slow_validate)
    train(_task(), _cfg(tmp_path / "run", steps=12, eval_every=3, log_every=2, threads=1))
    events = read_jsonl(tmp_path / "run" / "train.jsonl")
    speeds = [e["seq_per_s"] for e in events if e["event"] == "train"]
    # 2 steps of 16 tiny sequences take milliseconds: with a 0.5 s evaluation inside a window
    # its speed would fall below 2 * 16 / 0.5 = 64 sequences per second
    assert len(speeds) == 6 and min(speeds) > 200, speeds


# --- one owner per run folder (issue 14) ---


def _snapshot(folder: Path) -> dict[str, tuple]:
    """Every file and folder under ``folder`` with its size, mtime and bytes (the lock file's
    content, its holder's PID, is bookkeeping and left out)."""
    snap = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_dir():
            snap[rel] = ("dir",)
        elif p.name != ".lock":
            snap[rel] = (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
    return snap


def test_refused_run_deletes_nothing(tmp_path):
    out = tmp_path / "run"
    train(_task(), _cfg(out, steps=10))
    # a checkpoint that a live run in this folder is writing right now
    live = out / ".last.tmp-1234abcd"
    live.mkdir()
    (live / "model.safetensors").write_bytes(b"half written")
    before = _snapshot(out)
    with pytest.raises(UserError, match="already holds a run"):
        train(_task(), _cfg(out, steps=10))
    assert _snapshot(out) == before
    with pytest.raises(UserError, match="no checkpoint to resume"):
        train(_task(), _cfg(tmp_path / "other", steps=10, resume=True))
    assert not (tmp_path / "other" / "last").exists()


@pytest.mark.parametrize("mode", ["fresh", "resume", "overwrite", "empty folder"])
def test_folder_in_use_is_refused_and_untouched(tmp_path, mode):
    from lstmkit.utils.lock import lock_folder

    out = tmp_path / "run"
    if mode == "empty folder":
        out.mkdir()
    else:
        train(_task(), _cfg(out, steps=10))
        (out / ".last.tmp-1234abcd").mkdir()  # the live run's checkpoint in progress
    before = _snapshot(out)
    flags = {"resume": {"resume": True}, "overwrite": {"overwrite": True}}.get(mode, {})
    with lock_folder(out):  # the live run (this process's PID)
        with pytest.raises(UserError) as e:
            train(_task(), _cfg(out, steps=20, **flags))
    assert str(e.value) == f"{out} is in use by another lstmkit train (PID {os.getpid()})"
    assert _snapshot(out) == before


def test_the_lock_is_held_for_the_whole_run_and_cleans_stale_temporaries(tmp_path):
    from lstmkit.utils.lock import lock_folder

    out = tmp_path / "run"
    train(_task(), _cfg(out, steps=10))
    (out / ".last.tmp-dead0001").mkdir()  # left by a run that was killed while saving
    refusals = []

    def try_to_take_it(state, values):
        with pytest.raises(UserError, match=r"in use by another lstmkit train \(PID \d+\)"):
            lock_folder(out)
        refusals.append(state.step)

    train(_task(), _cfg(out, steps=20, overwrite=True), on_log=try_to_take_it)
    assert refusals and not (out / ".last.tmp-dead0001").exists()
    assert (out / ".lock").exists()  # --overwrite kept the lock file it held
    lock_folder(out).release()  # given back when the run ended


def test_out_that_is_a_file_is_one_user_error(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    with pytest.raises(UserError, match=f"--out {f} is a file"):
        train(_task(), _cfg(f, steps=10))
    assert f.read_text() == "mine"


def test_unwritable_out_is_one_user_error(tmp_path, monkeypatch):
    import errno

    out = tmp_path / "ro"
    out.mkdir()
    real_open = os.open

    def read_only(path, flags, *args):  # a read-only file system (also refuses root)
        if str(path).startswith(str(out)) and flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(UserError, match=f"--out {out} is not writable"):
        train(_task(), _cfg(out, steps=10))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in read-only folders")
def test_read_only_out_is_one_user_error(tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        with pytest.raises(UserError, match=f"--out {out} is not writable"):
            train(_task(), _cfg(out, steps=10))
    finally:
        out.chmod(0o755)


def test_full_disk_while_checkpointing_is_one_line_naming_the_path(tmp_path):
    import resource

    def small_disk():  # every file this process writes stops at 4 KB: EFBIG, like a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    out = tmp_path / "run"
    cmd, env = _cli(*TRAIN, "--steps", "20", "--out", str(out))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, preexec_fn=small_disk)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lstmkit: error: cannot write {out}/last")
    assert "File too large" in lines[0]
    assert not list(out.glob(".last.tmp-*"))  # the half-written checkpoint was removed


def test_full_disk_while_logging_is_a_user_error_naming_the_log(tmp_path, monkeypatch):
    import errno

    import lstmkit.train.trainer as trainer

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.f, name)

    init = trainer.JsonlLog.__init__

    def full_after_open(self, path):
        init(self, path)
        if self._f:
            self._f = FullDisk(self._f)

    monkeypatch.setattr(trainer.JsonlLog, "__init__", full_after_open)
    out = tmp_path / "run"
    with pytest.raises(UserError) as e:
        train(_task(), _cfg(out, steps=10))
    assert str(e.value).startswith(f"cannot write {out / 'train.jsonl'}: No space left on device")


def test_resume_refuses_other_training_options_but_takes_the_changeable_ones(tmp_path):
    train(_task(), _cfg(tmp_path / "run", steps=20, stop_when_solved=False))
    with pytest.raises(UserError, match=r"--lr 0\.01 \(run\) vs 0\.5 \(now\).*only --steps"):
        train(_task(), _cfg(tmp_path / "run", steps=30, resume=True, lr=0.5))
    with pytest.raises(UserError, match=r"--seed 0 \(run\) vs 3 \(now\)"):
        train(_task(), _cfg(tmp_path / "run", steps=30, resume=True, seed=3))
    r = train(
        _task(),
        _cfg(tmp_path / "run", steps=30, resume=True, eval_every=5, log_every=5, patience=9),
    )
    assert r.state.step == 30


def _events_at_draws(monkeypatch):
    """Replace the curves' drawing by a recorder of what each drawing was given."""
    import lstmkit.train.curves as curves

    drawn = []

    def record(out, events, metric, name):
        drawn.append([e["step"] for e in events if e["event"] == "valid"])
        return out / curves.CURVES_FILE

    monkeypatch.setattr(curves, "write_run_curves", record)
    return drawn


def test_curves_are_drawn_at_every_evaluation_while_drawing_is_cheap(tmp_path, monkeypatch):
    from lstmkit.train import trainer

    drawn = _events_at_draws(monkeypatch)
    monkeypatch.setattr(trainer, "_CURVES_FIRST_COST", 0.0)  # a drawing that costs nothing
    train(_task(), _cfg(tmp_path / "run", steps=30, stop_when_solved=False))
    assert drawn == [[10], [10, 20], [10, 20, 30], [10, 20, 30]]  # each evaluation, the end


def test_curves_are_not_redrawn_when_drawing_would_dominate(tmp_path, monkeypatch):
    from lstmkit.train import trainer

    drawn = _events_at_draws(monkeypatch)
    monkeypatch.setattr(trainer, "_CURVES_FIRST_COST", 3600.0)  # an hour per drawing
    train(_task(), _cfg(tmp_path / "run", steps=30, stop_when_solved=False))
    assert drawn == [[10, 20, 30]]  # only the final one
    drawn.clear()
    train(_task(), _cfg(tmp_path / "off", steps=30, stop_when_solved=False, curves=False))
    assert drawn == [] and not (tmp_path / "off" / "curves.png").exists()


def test_every_run_writes_curves_png_with_earlier_sessions(tmp_path):
    from lstmkit.train.curves import read_run_events

    out = tmp_path / "run"
    train(_task(), _cfg(out, steps=20, stop_when_solved=False))
    first = (out / "curves.png").read_bytes()
    assert first.startswith(b"\x89PNG\r\n\x1a\n")
    train(_task(), _cfg(out, steps=40, resume=True, stop_when_solved=False))
    assert (out / "curves.png").read_bytes() != first
    steps = [e["step"] for e in read_run_events(out) if e["event"] == "valid"]
    assert steps == [10, 20, 30, 40]  # what the redrawn picture holds: both sessions
    assert not list(out.glob(".curves.png.*"))  # no temporary left beside it


def test_ctrl_c_says_where_resume_starts(tmp_path, monkeypatch, capsys):
    from lstmkit.cli.main import cli_main

    original = AddingTask.train_batch

    def interrupted(self, step, *args):
        if step == 37:  # steps 1..37 done: a Ctrl-C while the 38th batch is made
            raise KeyboardInterrupt
        return original(self, step, *args)

    monkeypatch.setattr(AddingTask, "train_batch", interrupted)
    out = tmp_path / "run"
    args = ["train", "adding", "--seq-len", "10", "--hidden-size", "8", "--steps", "100"]
    args += ["--eval-every", "50", "--save-every", "15", "--no-progress", "--device", "cpu"]
    assert cli_main([*args, "--out", str(out)]) == 130
    err = capsys.readouterr().err.lstrip("\n")  # click ends the terminal's ^C line first
    assert err == (
        f"lstmkit: interrupted at step 37; the last checkpoint is of step 30: `lstmkit train "
        f"adding --out {out} --resume` continues from there (steps 31-37 are trained again; "
        "--save-every N saves more often)\n"
    )
    assert json.loads((out / "last" / "model.json").read_text())["step"] == 30
    monkeypatch.setattr(AddingTask, "train_batch", original)
    assert cli_main(["train", "adding", "--out", str(out), "--resume", "--steps", "40"]) == 0
    assert json.loads((out / "last" / "model.json").read_text())["step"] == 40


def test_ctrl_c_before_the_first_checkpoint_says_there_is_nothing_to_resume(
    tmp_path, monkeypatch, capsys
):
    from lstmkit.cli.main import cli_main

    def interrupted(self, step, *args):
        raise KeyboardInterrupt

    monkeypatch.setattr(AddingTask, "train_batch", interrupted)
    out = tmp_path / "run"
    assert (
        cli_main(["train", "adding", "--no-progress", "--device", "cpu", "--out", str(out)]) == 130
    )
    err = capsys.readouterr().err.lstrip("\n")
    assert err.startswith("lstmkit: interrupted at step 0, before the first checkpoint")
    assert "--overwrite" in err and err.count("\n") == 1


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_event_files_hold_the_logged_scalars(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (lstmkit[tensorboard])")
    out = tmp_path / "run"
    r = train(_task(), _cfg(out, steps=30, stop_when_solved=False, log_every=5, tensorboard=True))
    scalars = _scalars(out / "tensorboard")
    assert {"train/loss", "train/lr", "valid/loss", "valid/mse", "test/mse"} <= set(scalars)
    log = read_jsonl(out / "train.jsonl")
    train_loss = [(e["step"], e["loss"]) for e in log if e["event"] == "train"]
    assert (
        [s for s, _ in scalars["train/loss"]] == [s for s, _ in train_loss] == list(range(5, 31, 5))
    )
    for (_, got), (_, want) in zip(scalars["train/loss"], train_loss, strict=True):
        assert got == pytest.approx(want, rel=1e-6)
    assert [s for s, _ in scalars["valid/mse"]] == [10, 20, 30]
    assert scalars["train/lr"][0][1] == pytest.approx(0.01)
    assert scalars["test/mse"] == [(r.state.best_step, pytest.approx(r.test["mse"], rel=1e-6))]
    # a resumed run continues the same curves, steps after its checkpoint not doubled
    train(
        _task(),
        _cfg(out, steps=40, resume=True, stop_when_solved=False, log_every=5, tensorboard=True),
    )
    steps = [s for s, _ in _scalars(out / "tensorboard")["train/loss"]]
    assert steps == list(range(5, 41, 5))


def test_overwrite_removes_the_old_runs_curves_and_event_files(tmp_path):
    out = tmp_path / "run"
    (out / "tensorboard").mkdir(parents=True)
    (out / "tensorboard" / "events.out.tfevents.old").write_bytes(b"old")
    train(_task(), _cfg(out, steps=10, stop_when_solved=False))
    old_curves = (out / "curves.png").read_bytes()
    train(_task(), _cfg(out, steps=10, overwrite=True, curves=False))
    assert not (out / "curves.png").exists() and not (out / "tensorboard").exists()
    assert old_curves


def test_tensorboard_missing_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from lstmkit.cli.main import cli_main

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    out = tmp_path / "run"
    args = ["train", "adding", "--steps", "10", "--no-progress", "--device", "cpu"]
    assert cli_main([*args, "--tensorboard", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        "lstmkit: error: --tensorboard needs the tensorboard package: pip install "
        "'lstmkit[tensorboard]' (or pip install tensorboard)\n"
    )
    assert not out.exists()
