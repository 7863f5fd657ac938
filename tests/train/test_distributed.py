"""--nproc: the workers die with their parents, SIGTERM stops the group, a failure is one line."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lstmkit.train.checkpoint import load_checkpoint
from lstmkit.train.launcher import describe_failure
from lstmkit.train.trainer import launch
from lstmkit.utils.errors import UserError
from lstmkit.utils.lock import lock_folder

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

ENDLESS = [
    "train",
    "adding",
    "--seq-len",
    "5",
    "--hidden-size",
    "4",
    "--batch-size",
    "8",
    "--steps",
    "1000000",
    "--max-time",
    "300",
    "--eval-every",
    "100000",
    "--save-every",
    "2",
    "--no-stop-when-solved",
    "--no-progress",
    "--device",
    "cpu",
    "--threads",
    "1",
    "--nproc",
    "2",
]


def _state(pid: int) -> str | None:
    """The process's state letter, None once it is gone (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state = stat.rsplit(")", 1)[1].split()[0]
    return None if state in ("Z", "X") else state


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid and _state(int(p.name)):
                out.append(int(p.name))
    return out


def _last_step(out: Path) -> int:
    try:
        return load_checkpoint(out, prefer="last").meta["step"]
    except (UserError, OSError, ValueError):
        return -1


def _start(out: Path):
    """A 2-process run, once it has saved a checkpoint: (top, launcher, {rank: worker PID})."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "lstmkit", *ENDLESS, "--out", str(out)]
    top = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while _last_step(out) < 2:
        assert top.poll() is None, top.stderr.read().decode()
        assert time.time() < deadline, "the run saved no checkpoint"
        time.sleep(0.1)
    (launcher,) = _children(top.pid)
    workers = {}
    for pid in _children(launcher):
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        rank = next(int(v[5:]) for v in environ if v.startswith(b"RANK="))
        workers[rank] = pid
    assert sorted(workers) == [0, 1]
    return top, launcher, workers


def _all_gone(pids, seconds=10.0) -> list[int]:
    deadline = time.time() + seconds
    while time.time() < deadline:
        alive = [p for p in pids if _state(p)]
        if not alive:
            return []
        time.sleep(0.1)
    for p in alive:  # don't leave them training after a failed test
        os.kill(p, signal.SIGKILL)
    return alive


@pytest.mark.parametrize("victim", ["top", "launcher"])
def test_sigkill_of_the_top_or_the_launcher_stops_every_worker(tmp_path, victim):
    out = tmp_path / "run"
    top, launcher, workers = _start(out)
    os.kill(top.pid if victim == "top" else launcher, signal.SIGKILL)
    assert _all_gone([launcher, *workers.values()]) == [], "processes still running"
    top.wait(timeout=30)
    step = _last_step(out)
    time.sleep(1.0)
    assert _last_step(out) == step >= 2  # nothing trains on, and the checkpoint loads
    if victim == "launcher":
        assert top.returncode == 1
        err = top.stderr.read().decode().strip().splitlines()
        assert len(err) == 1 and f"(PID {launcher}) was killed by SIGKILL" in err[0], err
    lock_folder(out).release()  # the folder is free again


def test_sigterm_of_the_top_stops_the_group_and_keeps_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    top, launcher, workers = _start(out)
    top.send_signal(signal.SIGTERM)
    assert top.wait(timeout=60) == 128 + signal.SIGTERM
    # the top waited for its launcher, which waited for its workers
    assert [p for p in (launcher, *workers.values()) if _state(p)] == []
    err = top.stderr.read().decode().strip().splitlines()
    assert err == [
        f"lstmkit: stopped by SIGTERM: all 2 processes ended; the last complete checkpoint "
        f"is in {out}"
    ]
    ckpt = load_checkpoint(out, trainer=True, prefer="last")
    assert ckpt.meta["step"] >= 2 and ckpt.trainer_meta["state"]["step"] == ckpt.meta["step"]
    lock_folder(out).release()


def test_a_dead_worker_is_one_line_naming_its_rank_status_and_log(tmp_path):
    out = tmp_path / "run"
    top, launcher, workers = _start(out)
    os.kill(workers[1], signal.SIGKILL)
    assert top.wait(timeout=90) == 1
    assert _all_gone([launcher, workers[0]]) == []
    err = top.stderr.read().decode().strip().splitlines()
    log = out / "logs" / "rank1.log"
    assert err == [
        f"lstmkit: error: rank 1 (PID {workers[1]}) was killed by SIGKILL; the other processes "
        f"were stopped; its log: {log}"
    ]
    assert log.exists() and (out / "logs" / "rank0.log").exists()


def test_a_failure_names_the_workers_own_error_line(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "rank0.log").write_text(
        "a warning\nlstmkit: error: cannot write runs/x/last: No space left on device\n"
    )
    assert describe_failure(0, 4321, 2, logs) == (
        "lstmkit: error: rank 0 (PID 4321) exited with status 2: cannot write runs/x/last: "
        f"No space left on device; the other processes were stopped; its log: {logs}/rank0.log"
    )
    assert describe_failure(1, 99, 1, logs).startswith(
        "lstmkit: error: rank 1 (PID 99) exited with status 1; "
    )


def test_nproc_on_a_folder_in_use_starts_nothing_and_writes_nothing(tmp_path):
    from lstmkit.train.config import TrainConfig

    out = tmp_path / "run"
    out.mkdir()
    cfg = TrainConfig(out=str(out), nproc=2, batch_size=8, device="cpu", resume=True)
    with lock_folder(out):
        with pytest.raises(
            UserError, match=rf"in use by another lstmkit train \(PID {os.getpid()}"
        ):
            launch("adding", cfg, ["train", "adding"])
    assert [p.name for p in out.iterdir()] == [".lock"]
    with pytest.raises(UserError, match="no checkpoint to resume"):
        launch("adding", cfg, ["train", "adding"])
    assert [p.name for p in out.iterdir()] == [".lock"]  # no logs/ for a refused run
