"""The check that ``--resume`` is exact, shared by the task tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from lstmkit.train.checkpoint import load_checkpoint


def assert_resume_is_exact(run: Callable[..., None], tmp_path: Path, steps: int, stop: int):
    """``run(out, steps, resume=False)`` trains a run; one of ``steps`` steps and one stopped at
    ``stop`` then resumed to ``steps`` must end at the same weights, bit for bit."""
    run(tmp_path / "whole", steps)
    run(tmp_path / "split", stop)
    run(tmp_path / "split", steps, resume=True)
    whole = load_checkpoint(tmp_path / "whole" / "last")
    split = load_checkpoint(tmp_path / "split" / "last")
    assert whole.meta["step"] == split.meta["step"] == steps
    for k, v in whole.weights.items():
        assert torch.equal(v, split.weights[k]), k
