"""Data-parallel training on torch.distributed: one process per device, gradients all-reduced.

The same ``lstmkit train`` command runs alone, under ``torchrun --nproc_per_node N``, or with
``--nproc N``, which re-launches it through torch's own launcher (``torch.distributed.run``). Each
process trains on its slice of the global batch; DistributedDataParallel averages the gradients,
so N processes take the same steps as one process on the whole batch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


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


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``lstmkit <argv>`` in ``nproc`` processes with torch's launcher; returns its status."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "lstmkit",
        *argv,
    ]
    env = dict(os.environ)
    # torchrun sets OMP_NUM_THREADS=1 with a warning when unset; we size threads ourselves.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.call(cmd, env=env)
