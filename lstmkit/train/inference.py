"""Rebuild a trained model from a checkpoint, for evaluate, predict and inspect."""

from __future__ import annotations

import os

import torch
from torch import nn

from lstmkit.tasks.base import Task, get_task
from lstmkit.train.checkpoint import Checkpoint, load_checkpoint, load_weights
from lstmkit.utils.errors import UserError


def load_trained(
    path: str | os.PathLike, device: torch.device
) -> tuple[Task, nn.Module, Checkpoint]:
    """The task, the model in eval mode on ``device``, and the checkpoint of ``path``."""
    ckpt = load_checkpoint(path)
    name = ckpt.meta.get("task")
    if not isinstance(name, str):
        raise UserError(f"{ckpt.path}/model.json names no task")
    task = get_task(name).from_checkpoint_meta(ckpt.meta)
    model = task.build_model()
    load_weights(model, ckpt.weights, ckpt.path)
    return task, model.to(device).eval(), ckpt
