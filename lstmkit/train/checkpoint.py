"""Checkpoints: safetensors tensors plus JSON metadata; nothing on the load path unpickles.

A checkpoint is a folder::

    model.safetensors    the model's weights
    model.json           format tag, lstmkit version, task, configs, vocabularies, step,
                         metrics, and the SHA-256 of model.safetensors
    trainer.safetensors  optimiser moments and RNG states (resumable checkpoints only)
    trainer.json         step, optimiser hyper-parameters, early-stopping state

The folder is written beside its final name and then renamed into place, so a crash at any
moment leaves the previous checkpoint or the new one, never a mixture or a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from lstmkit.utils.errors import UserError
from lstmkit.utils.io import default_mode

FORMAT = "lstmkit-checkpoint"
FORMAT_VERSION = 1
MODEL_FILE, MODEL_META = "model.safetensors", "model.json"
TRAINER_FILE, TRAINER_META = "trainer.safetensors", "trainer.json"


@dataclass
class Checkpoint:
    """A loaded checkpoint: where it was, its metadata and its tensors."""

    path: Path
    meta: dict
    weights: dict[str, Tensor]
    trainer_meta: dict | None = None
    trainer_tensors: dict[str, Tensor] | None = None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _unshare(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Contiguous, unaliased copies: safetensors refuses tensors sharing memory (tied weights)."""
    seen: set[tuple[int, int]] = set()
    out = {}
    for k, v in state.items():
        v = v.detach().to("cpu")
        key = (v.untyped_storage().data_ptr(), v.storage_offset())
        out[k] = v.clone().contiguous() if key in seen or not v.is_contiguous() else v
        seen.add(key)
    return out


def _write_json(path: Path, obj: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(
    directory: str | os.PathLike,
    weights: dict[str, Tensor],
    meta: dict,
    trainer_tensors: dict[str, Tensor] | None = None,
    trainer_meta: dict | None = None,
) -> Path:
    """Write a checkpoint folder atomically (a sibling temporary folder, then a rename)."""
    final = Path(directory)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        save_file(_unshare(weights), str(tmp / MODEL_FILE))
        with open(tmp / MODEL_FILE, "rb+") as f:
            os.fsync(f.fileno())
        from lstmkit import __version__

        full = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "lstmkit_version": __version__,
            **meta,
            "sha256": _sha256(tmp / MODEL_FILE),
        }
        _write_json(tmp / MODEL_META, full)
        if trainer_tensors is not None:
            save_file(_unshare(trainer_tensors), str(tmp / TRAINER_FILE))
            _write_json(tmp / TRAINER_META, trainer_meta or {})
        for f in tmp.iterdir():  # safetensors writes 0600; checkpoints are ordinary files
            os.chmod(f, default_mode())
        _swap_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _swap_into_place(tmp: Path, final: Path) -> None:
    # Two renames: the old folder steps aside, the new one takes its name. Between them only the
    # aside copy exists; resolve_checkpoint() falls back to it, so nothing is ever lost.
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    for stale in final.parent.glob(f".{final.name}.old-*"):
        shutil.rmtree(stale, ignore_errors=True)


def resolve_checkpoint(path: str | os.PathLike, prefer: str = "best") -> Path:
    """The checkpoint folder meant by ``path``: a checkpoint folder, one of its files, or a run
    folder (its ``best`` or ``last`` checkpoint, ``prefer`` first)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"checkpoint not found: {p}")
    if p.is_file():
        if p.name not in (MODEL_FILE, MODEL_META):
            raise UserError(
                f"{p} is not an lstmkit checkpoint (give its folder, or its {MODEL_META})"
            )
        p = p.parent
    if (p / MODEL_META).exists() or (p / MODEL_FILE).exists():
        return p
    order = (prefer, "last" if prefer == "best" else "best")
    for name in order:
        if (p / name / MODEL_META).exists():
            return p / name
    for name in order:  # a crash between the two renames of _swap_into_place
        aside = sorted(p.glob(f".{name}.old-*"))
        if aside and (aside[-1] / MODEL_META).exists():
            return aside[-1]
    raise UserError(f"{p} holds no lstmkit checkpoint (no {MODEL_META}, best/ or last/)")


def _read_json(path: Path, what: str) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"incomplete checkpoint: {path} is missing") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {what} {path}: {e}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"corrupted {what} {path}: line {e.lineno}: {e.msg}") from None
    if not isinstance(obj, dict):
        raise UserError(f"corrupted {what} {path}: expected a JSON object")
    return obj


def _read_tensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise UserError(f"incomplete checkpoint: {path} is missing") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"corrupted or truncated tensor file {path}: {e}") from None


def load_checkpoint(path: str | os.PathLike, *, trainer: bool = False, prefer="best") -> Checkpoint:
    """Read and verify a checkpoint. Raises :class:`UserError` naming the file on any problem."""
    folder = resolve_checkpoint(path, prefer)
    meta = _read_json(folder / MODEL_META, "checkpoint metadata")
    if meta.get("format") != FORMAT:
        raise UserError(
            f"{folder / MODEL_META} is not an lstmkit checkpoint (format {meta.get('format')!r})"
        )
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(
            f"{folder} was written by a newer lstmkit ({meta.get('lstmkit_version')}); "
            f"this one reads checkpoint format <= {FORMAT_VERSION}"
        )
    weights_path = folder / MODEL_FILE
    if not weights_path.exists():
        raise UserError(f"incomplete checkpoint: {weights_path} is missing")
    if meta.get("sha256") and _sha256(weights_path) != meta["sha256"]:
        raise UserError(f"corrupted checkpoint: {weights_path} does not match its SHA-256")
    ckpt = Checkpoint(folder, meta, _read_tensors(weights_path))
    if trainer:
        ckpt.trainer_meta = _read_json(folder / TRAINER_META, "trainer state")
        ckpt.trainer_tensors = _read_tensors(folder / TRAINER_FILE)
    return ckpt


def load_weights(model: torch.nn.Module, weights: dict[str, Tensor], source: Path) -> None:
    """``model.load_state_dict(weights)``, strictly, with an error naming what does not fit."""
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    wrong = [
        f"{k} {tuple(weights[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in weights and weights[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
    if unexpected:
        problems.append(
            f"unexpected {', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}"
        )
    if wrong:
        problems.append(f"shape {'; '.join(wrong[:4])}{' ...' if len(wrong) > 4 else ''}")
    if problems:
        raise UserError(f"checkpoint {source} does not fit the model: {'; '.join(problems)}")
    model.load_state_dict(weights)


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    """Split an optimiser's state into tensors (for safetensors) and JSON (the rest)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{idx}.{name}"] = value
            else:
                scalars[f"{idx}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(
    opt: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict
) -> None:
    """Inverse of :func:`optimizer_to_tensors`."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for key, value in meta.get("scalars", {}).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})
