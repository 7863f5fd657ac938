"""Where to run: the ``--device`` names and the torch device they stand for (training and every
use verb resolve ``--device`` here)."""

from __future__ import annotations

import re

import torch

from lstmkit.utils.errors import UserError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` is CUDA where there is one, else CPU; processes take one GPU each (the process
    of ``local_rank`` on a machine takes GPU ``local_rank`` modulo their count). ``cuda:N``
    (the Python API's ``lstmkit.load(..., device="cuda:1")``) is GPU ``N`` itself."""
    index = re.fullmatch(r"cuda:(\d+)", name) if isinstance(name, str) else None
    if index is not None:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if int(index[1]) >= count:
            raise UserError(
                f"device {name}: no such CUDA device ({count} available; try device='cpu')"
            )
        return torch.device("cuda", int(index[1]))
    if name not in DEVICES:
        raise UserError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (try --device cpu)")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", local_rank % torch.cuda.device_count())
