"""Two trainers on one run folder: the live run is never harmed, the second is refused.

The quick version runs in the normal suite; ``pytest -m fuzz`` (``make fuzz``) runs more rounds
(``LSTMKIT_FUZZ_ROUNDS``, default 8).
"""

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lstmkit.tasks.longlag import AddingTask
from lstmkit.train.checkpoint import load_checkpoint
from lstmkit.train.config import TrainConfig
from lstmkit.train.trainer import train
from lstmkit.utils.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
SIZES = ["--seq-len", "5", "--hidden-size", "4", "--batch-size", "8"]
RUN = [
    "train",
    "adding",
    *SIZES,
    "--steps",
    "1000000",
    "--eval-every",
    "20",
    "--save-every",
    "1",
    "--no-stop-when-solved",
    "--no-progress",
    "--device",
    "cpu",
    "--threads",
    "1",
]


def _popen(out: Path, max_time: float, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "lstmkit", *RUN, "--max-time", str(max_time), *extra]
    return subprocess.Popen(
        [*cmd, "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _has_checkpoint(out: Path) -> bool:
    return (out / "last" / "model.json").exists()


def _assert_unharmed(out: Path, proc: subprocess.Popen) -> None:
    """The run exited 0, its checkpoints load and its log is whole and in order."""
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err[-2000:]
    last = load_checkpoint(out / "last", trainer=True)
    best = load_checkpoint(out / "best")
    lines = (out / "train.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line whole: none torn or interleaved
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds.count("start") == 1 and kinds[-1] == "test", kinds
    for kind in ("train", "valid"):
        steps = [e["step"] for e in events if e["event"] == kind]
        assert steps and steps == sorted(set(steps)), (kind, steps)
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == last.meta["step"] >= best.meta["step"]
    assert not list(out.glob(".*.tmp-*")) and not list(out.glob(".*.old-*"))


def _intruder_cfg(out: Path, mode: str) -> TrainConfig:
    flags = {"resume": {"resume": True}, "overwrite": {"overwrite": True}}.get(mode, {})
    return TrainConfig(out=str(out), steps=5, device="cpu", progress=False, **flags)


def _live_and_intruders(out: Path, rng: random.Random, max_time: float) -> int:
    """A live run, beside it one ``lstmkit train`` command and many in-process trainers, each
    with --resume, --overwrite or neither; returns how many were refused."""
    live = _popen(out, max_time)
    deadline = time.time() + 120
    while not _has_checkpoint(out):
        assert live.poll() is None, live.stderr.read().decode()[-2000:]
        assert time.time() < deadline
        time.sleep(0.01)
    t0 = time.time()
    mode = rng.choice(["", "--resume", "--overwrite"])
    command = _popen(out, 1, *([mode] if mode else []))
    task = AddingTask(AddingTask.Config(seq_len=5), AddingTask.ModelConfig(hidden_size=4))
    refused = 0
    # only while the live run surely trains: a trainer let in after it ended would be right
    while time.time() < t0 + max_time / 2 and command.poll() is None:
        mode = rng.choice(["fresh", "resume", "overwrite"])
        with pytest.raises(UserError) as e:
            train(task, _intruder_cfg(out, mode))
        assert str(e.value) == f"{out} is in use by another lstmkit train (PID {live.pid})"
        refused += 1
        time.sleep(rng.uniform(0, 0.03))
    err = command.stderr.read().decode().strip().splitlines()
    assert command.wait(timeout=120) == 2
    # (a live run that ended before the command started would give "already holds a run")
    assert err == [f"lstmkit: error: {out} is in use by another lstmkit train (PID {live.pid})"]
    _assert_unharmed(out, live)
    return refused + 1


def _started_together(out: Path, max_time: float) -> None:
    a, b = _popen(out, max_time), _popen(out, max_time)
    status = {a.pid: a.wait(timeout=120), b.pid: b.wait(timeout=120)}
    assert sorted(status.values()) == [0, 2], status
    winner = a if status[a.pid] == 0 else b
    loser = b if winner is a else a
    assert loser.stderr.read().decode().strip().splitlines() == [
        f"lstmkit: error: {out} is in use by another lstmkit train (PID {winner.pid})"
    ]
    _assert_unharmed(out, winner)


def _rounds(tmp_path: Path, rounds: int) -> None:
    rng = random.Random(14)
    for k in range(rounds):
        # the live run outlasts the second command's start-up (importing torch: 3-8 s here)
        assert _live_and_intruders(tmp_path / f"live{k}", rng, max_time=12) > 1
        _started_together(tmp_path / f"together{k}", max_time=4)


def test_two_trainers_on_one_folder(tmp_path):
    _rounds(tmp_path, 1)


@pytest.mark.fuzz
def test_two_trainers_on_one_folder_many_rounds(tmp_path):
    _rounds(tmp_path, int(os.environ.get("LSTMKIT_FUZZ_ROUNDS", "8")))
