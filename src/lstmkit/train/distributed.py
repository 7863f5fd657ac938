"""Data-parallel training on torch.distributed: one process per device, gradients all-reduced.

The same ``lstmkit train`` command runs alone, under ``torchrun --nproc_per_node N``, or with
``--nproc N``, which re-launches it through torch's own launcher (``torch.distributed.run``). Each
process trains on its slice of the global batch; DistributedDataParallel averages the gradients,
so N processes take the same steps as one process on the whole batch.

With ``--nproc`` the process tree is ``lstmkit train`` (holds the run folder's lock) ->
:mod:`lstmkit.train.launcher` (torch's launcher) -> N workers. Each process dies with its parent
(``PR_SET_PDEATHSIG`` and a watchdog on the parent's PID), so killing any of them, even with
SIGKILL, leaves no worker training on; SIGTERM to the top stops the whole group and keeps the
last complete checkpoint. Each worker's standard error goes to ``<out>/logs/rank<k>.log``, and a
worker's failure is one line naming its rank, its exit status and that log.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from lstmkit.utils.lock import HELD_ENV

PARENT_ENV = "LSTMKIT_PARENT_PID"
"""The PID a launched process expects as its parent; another parent means the first one died."""
LOGS_ENV = "LSTMKIT_RANK_LOGS"
"""The folder where each worker of ``--nproc`` writes its standard error, ``rank<k>.log``."""
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    """Read the rank and world size that torchrun sets (``RANK``, ``WORLD_SIZE``...)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))


def init(world: World, device: torch.device) -> None:
    """Join the process group: NCCL for CUDA devices, gloo on CPU."""
    if world.distributed and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=world.rank, world_size=world.size)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.barrier()


def broadcast_flag(world: World, flag: bool) -> bool:
    """Rank 0's decision, given to every process (so that all stop at the same step)."""
    if not (world.distributed and dist.is_initialized()):
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int64)
    dist.broadcast(t, src=0)
    return bool(t.item())


def die_with_parent() -> None:
    """In a process started by :func:`launch` or the launcher: stop when the parent dies.

    ``PR_SET_PDEATHSIG`` has the kernel send SIGTERM when the parent *thread* that started this
    process ends, which for a parent that started it from another thread comes too early, and
    which does not cover a parent that died before this call. So this also checks now, and a
    watchdog thread every half second, that the parent is still the expected one. Outside such
    a process (``PARENT_ENV`` unset) it does nothing.
    """
    expected = os.environ.get(PARENT_ENV)
    if not expected or not expected.isdigit():
        return
    parent = int(expected)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="lstmkit-parent-watchdog", daemon=True).start()


def log_to_run_folder(world: World) -> None:
    """A worker of ``--nproc``: send this process's standard error to ``logs/rank<k>.log``.

    At the file-descriptor level, so that torch's C++ messages and a crash's traceback land
    there too; the launcher names the file when the worker fails.
    """
    logs = os.environ.get(LOGS_ENV)
    if not logs or not world.distributed:
        return
    sys.stderr.flush()
    fd = os.open(rank_log(Path(logs), world.rank), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    os.dup2(fd, 2)
    os.close(fd)


def rank_log(logs: Path, rank: int) -> Path:
    return logs / f"rank{rank}.log"


def launch(nproc: int, argv: list[str], *, logs: Path, held_lock: Path) -> int:
    """Run ``lstmkit <argv>`` in ``nproc`` processes under :mod:`lstmkit.train.launcher`.

    Returns its status. The caller holds the run folder's lock (``held_lock``) for the whole
    run; its workers know it from ``HELD_ENV`` and do not try to take it. SIGTERM (and SIGHUP)
    received here is passed on to the launcher, which stops the workers; this waits for all of
    them before returning 128 + the signal's number.
    """
    cmd = [
        sys.executable,
        "-m",
        "lstmkit.train.launcher",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "lstmkit",
        *argv,
    ]
    env = dict(os.environ)
    # torchrun sets OMP_NUM_THREADS=1 with a warning when unset; we size threads ourselves.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    env |= {PARENT_ENV: str(os.getpid()), LOGS_ENV: str(logs), HELD_ENV: str(held_lock)}
    received: list[int] = []
    proc = subprocess.Popen(cmd, env=env)

    def forward(signum, frame) -> None:
        received.append(signum)
        proc.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        status = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        name = signal.Signals(received[0]).name
        print(
            f"lstmkit: stopped by {name}: all {nproc} processes ended; the last complete "
            f"checkpoint is in {logs.parent}",
            file=sys.stderr,
        )
        return 128 + received[0]
    if status < 0:
        name = signal.Signals(-status).name
        print(
            f"lstmkit: error: the launcher of the {nproc} processes (PID {proc.pid}) was killed "
            f"by {name}; its workers stopped with it (logs in {logs})",
            file=sys.stderr,
        )
        return 1
    return status
