"""Checkpoints: safetensors tensors plus JSON metadata; nothing on the load path unpickles.

A checkpoint is a folder::

    model.safetensors    the model's weights
    model.json           format tag, lstmkit version, task, configs, vocabularies, step,
                         metrics, and the manifest: the SHA-256 of every other file of the
                         folder and of model.json's own content
    trainer.safetensors  optimiser moments and RNG states (resumable checkpoints only)
    trainer.json         step, optimiser hyper-parameters, early-stopping state

The folder is written beside its final name and then renamed into place, so a crash at any
moment leaves the previous checkpoint or the new one, never a mixture or a half-written file.

Loading trusts nothing it reads. Every file must be a regular file inside the folder (a FIFO,
a device or a symbolic link leaving the folder is refused before it is opened), no larger than
what it can hold (:data:`MAX_JSON_BYTES` for JSON; a tensor file exactly its header's size),
and match its checksum, which must be present. The safetensors header is checked (dtypes,
shapes, offsets) before any tensor is read, against the model the configuration describes
when the caller says how to build it, and non-finite weights are an error unless asked for.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import stat
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save_file
from torch import Tensor

from lstmkit.utils.errors import UserError
from lstmkit.utils.io import default_mode

FORMAT = "lstmkit-checkpoint"
FORMAT_VERSION = 2
"""2: model.json holds the checksums of trainer.safetensors, trainer.json and its own content
(``checksums``, ``meta_sha256``). 1 (read for use, not resumed): only model.safetensors'."""
MODEL_FILE, MODEL_META = "model.safetensors", "model.json"
TRAINER_FILE, TRAINER_META = "trainer.safetensors", "trainer.json"

MAX_JSON_BYTES = 64 << 20
"""model.json and trainer.json: configs, vocabularies and statistics are far below this (a
100,000-word vocabulary takes about 2 MB)."""
MAX_HEADER_BYTES = 16 << 20
"""A safetensors header: about 100 bytes per tensor."""
MAX_INT = 2**53
"""Largest integer a checkpoint's configuration may hold (JSON's exact-integer range)."""

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
"""The safetensors dtypes a checkpoint may hold."""

Spec = dict[str, tuple[tuple[int, ...], torch.dtype]]
"""Tensor name -> (shape, dtype)."""


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


def _content_sha256(meta: dict) -> str:
    """SHA-256 of model.json's values (not its layout): canonical JSON without ``meta_sha256``.
    A changed byte either breaks the JSON or changes a value, and so this sum."""
    rest = {k: v for k, v in meta.items() if k != "meta_sha256"}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


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


def _write_tensors(path: Path, tensors: dict[str, Tensor]) -> None:
    save_file(_unshare(tensors), str(path))
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def save_checkpoint(
    directory: str | os.PathLike,
    weights: dict[str, Tensor],
    meta: dict,
    trainer_tensors: dict[str, Tensor] | None = None,
    trainer_meta: dict | None = None,
) -> Path:
    """Write a checkpoint folder atomically (a sibling temporary folder, then a rename).
    model.json is written last and holds the checksums of everything else."""
    final = Path(directory)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        _write_tensors(tmp / MODEL_FILE, weights)
        checksums = {}
        if trainer_tensors is not None:
            _write_tensors(tmp / TRAINER_FILE, trainer_tensors)
            _write_json(tmp / TRAINER_META, trainer_meta or {})
            checksums = {n: _sha256(tmp / n) for n in (TRAINER_FILE, TRAINER_META)}
        from lstmkit import __version__

        full = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "lstmkit_version": __version__,
            **meta,
            "sha256": _sha256(tmp / MODEL_FILE),
            "checksums": checksums,
        }
        full = json.loads(json.dumps(full))  # the values as they will be read back
        full["meta_sha256"] = _content_sha256(full)
        _write_json(tmp / MODEL_META, full)
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
    if not p.is_dir():
        if p.name not in (MODEL_FILE, MODEL_META):
            raise UserError(
                f"{p} is not an lstmkit checkpoint (give its folder, or its {MODEL_META})"
            )
        p = p.parent
    if (p / MODEL_META).exists() or (p / MODEL_FILE).exists():
        return p
    for name in (prefer, "last" if prefer == "best" else "best"):
        if (p / name / MODEL_META).exists():
            return p / name
        # a crash between the two renames of _swap_into_place: the aside copy, before the other
        # checkpoint (--resume needs last/'s trainer state, which best/ does not hold)
        aside = sorted(p.glob(f".{name}.old-*"))
        if aside and (aside[-1] / MODEL_META).exists():
            return aside[-1]
    raise UserError(f"{p} holds no lstmkit checkpoint (no {MODEL_META}, best/ or last/)")


def checkpoint_folders(path: str | os.PathLike) -> list[Path]:
    """The checkpoint folders a command reading ``path`` must leave alone when it writes: the
    checkpoint :func:`resolve_checkpoint` finds, and its run's ``best/`` and ``last/`` (resolved;
    empty if ``path`` is no checkpoint, which the command reports itself)."""
    try:
        ckpt = resolve_checkpoint(path).resolve()
    except UserError:
        return []
    found = {ckpt}
    for name in ("best", "last"):
        sibling = ckpt.parent / name
        if (sibling / MODEL_META).exists():
            found.add(sibling.resolve())
    return sorted(found)


def overlaps(target: str | os.PathLike, folders: list[Path]) -> Path | None:
    """The folder of ``folders`` that ``target`` is, lies inside or contains, else None."""
    t = Path(target).resolve()
    for f in folders:
        if t == f or f in t.parents or t in f.parents:
            return f
    return None


# ----------------------------------------------------------------------------- reading files


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _open_regular(folder: Path, name: str) -> tuple[int, int]:
    """An open descriptor on ``folder/name`` and its size; refuses anything but a regular file
    inside ``folder`` (checked before opening: a FIFO is never opened)."""
    path = folder / name
    try:
        st = os.lstat(path)
        target = path
        if stat.S_ISLNK(st.st_mode):
            target = Path(os.path.realpath(path))
            root = Path(os.path.realpath(folder))
            if root not in target.parents:
                raise UserError(
                    f"{path} is a symbolic link out of its checkpoint folder (to {target}); "
                    "refusing to read it"
                )
            st = os.stat(target)
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"{path} is {_kind(st.st_mode)}, not a regular file; refusing it")
        # O_NONBLOCK: should the file be swapped for a FIFO since the check, do not wait on it
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UserError(f"incomplete checkpoint: {path} is missing") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UserError(f"{path} is {_kind(st.st_mode)}, not a regular file; refusing it")
    return fd, st.st_size


def _read_exactly(fd: int, n: int, path: Path) -> bytes:
    chunks, left = [], n
    while left:
        block = os.read(fd, min(left, 1 << 24))
        if not block:
            raise UserError(f"{path} changed while it was read (shorter than its size)")
        chunks.append(block)
        left -= len(block)
    return b"".join(chunks)


def _read_small(folder: Path, name: str, what: str) -> bytes:
    path = folder / name
    fd, size = _open_regular(folder, name)
    try:
        if size > MAX_JSON_BYTES:
            raise UserError(
                f"{what} {path} is {size} bytes, more than the {MAX_JSON_BYTES} it may have"
            )
        data = _read_exactly(fd, size, path)
        if os.read(fd, 1):
            raise UserError(f"{path} changed while it was read (longer than its size)")
        return data
    finally:
        os.close(fd)


def _parse_json(data: bytes, path: Path, what: str) -> dict:
    try:
        obj = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise UserError(f"corrupted {what} {path}: not UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise UserError(f"corrupted {what} {path}: line {e.lineno}: {e.msg}") from None
    except RecursionError:
        raise UserError(f"corrupted {what} {path}: nested too deeply") from None
    except ValueError as e:  # an integer of more than 4300 digits
        raise UserError(f"corrupted {what} {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(obj, dict):
        raise UserError(f"corrupted {what} {path}: expected a JSON object")
    return obj


def _read_json(folder: Path, name: str, what: str) -> dict:
    return _parse_json(_read_small(folder, name, what), folder / name, what)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_header(header: bytes, path: Path, data_size: int) -> Spec:
    """The tensors a safetensors header declares, checked for dtypes, shapes and offsets that
    tile exactly ``data_size`` bytes."""
    bad = f"corrupted checkpoint: truncated or damaged tensor file {path}"
    try:
        obj = json.loads(header.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise UserError(f"{bad}: unreadable header") from None
    if not isinstance(obj, dict):
        raise UserError(f"{bad}: the header is not a JSON object")
    spec: Spec = {}
    spans = []
    for name, entry in obj.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise UserError(f"{bad}: malformed header entry {name!r}")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPES:
            raise UserError(
                f"{path}: tensor {name!r} has dtype {dtype!r}; allowed: {', '.join(DTYPES)}"
            )
        if not isinstance(shape, list) or not all(_is_int(d) and 0 <= d <= MAX_INT for d in shape):
            raise UserError(f"{bad}: tensor {name!r} has shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_int(o) for o in offsets)
        ):
            raise UserError(f"{bad}: tensor {name!r} has offsets {offsets!r}")
        nbytes = math.prod(shape) * DTYPES[dtype].itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise UserError(
                f"{bad}: tensor {name!r} has {offsets[1] - offsets[0]} bytes for "
                f"shape {tuple(shape)} {dtype}"
            )
        spans.append((offsets[0], offsets[1]))
        spec[name] = (tuple(shape), DTYPES[dtype])
    end = 0
    for a, b in sorted(spans):
        if a != end:
            raise UserError(f"{bad}: tensor data overlaps or leaves gaps (offset {a})")
        end = b
    if end != data_size:
        raise UserError(
            f"{bad}: its header declares {end} bytes of tensor data, the file holds {data_size}"
        )
    return spec


def _describe(shape_dtype: tuple[tuple[int, ...], torch.dtype]) -> str:
    shape, dtype = shape_dtype
    return f"{tuple(shape)} {str(dtype).removeprefix('torch.')}"


def _compare_spec(stored: Spec, expected: Spec, path: Path, meta_path: Path) -> None:
    """Refuse a tensor file that does not hold what the configuration describes."""
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    wrong = [
        f"{k} {_describe(stored[k])} vs {_describe(v)}"
        for k, v in expected.items()
        if k in stored and stored[k] != v
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("", wrong)):
        if items:
            more = " ..." if len(items) > 4 else ""
            problems.append(f"{label + ' ' if label else ''}{'; '.join(items[:4])}{more}")
    if problems:
        raise UserError(
            f"checkpoint {path} does not fit the model that {meta_path} describes: "
            f"{'; '.join(problems)}"
        )


class _TooLarge(Exception):
    pass


def expected_spec(build: Callable[[], torch.nn.Module], stored: Spec, where: Path) -> Spec:
    """Names, shapes and dtypes of the state of the model ``build`` makes, built on the meta
    device (nothing allocated) and stopped as soon as it registers far more tensors or values
    than ``stored`` holds: a configuration of a billion layers fails at once."""
    limit_tensors = 2 * len(stored) + 16
    limit_numel = 2 * sum(math.prod(s) for s, _ in stored.values()) + (1 << 20)
    count = [0, 0]

    def hook(module, name, tensor):
        if tensor is not None:
            count[0] += 1
            count[1] += tensor.numel()
            if count[0] > limit_tensors or count[1] > limit_numel:
                raise _TooLarge
        return None

    reg = torch.nn.modules.module
    handles = [
        reg.register_module_parameter_registration_hook(hook),
        reg.register_module_buffer_registration_hook(hook),
    ]
    try:
        with torch.device("meta"):
            model = build()
        return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    except _TooLarge:
        raise UserError(
            f"{where}: the model configuration describes more tensors or values than "
            f"{where.parent / MODEL_FILE} holds ({len(stored)} tensors)"
        ) from None
    except UserError as e:
        raise UserError(f"{where}: {e}") from None
    except (RuntimeError, ValueError, TypeError, OverflowError, MemoryError, KeyError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{where}: cannot build the model it describes: {first}") from None
    finally:
        for h in handles:
            h.remove()


def _read_tensors(
    folder: Path,
    name: str,
    sha256: str,
    *,
    allow_nonfinite: bool,
    expect: Callable[[Spec], Spec | None] | None = None,
) -> dict[str, Tensor]:
    """The tensors of ``folder/name``: header checked (and compared with ``expect(header)``)
    before the data is read, exactly the header's size, then the checksum, then the values."""
    path = folder / name
    bad = f"corrupted checkpoint: truncated or damaged tensor file {path}"
    fd, size = _open_regular(folder, name)
    try:
        if size < 8:
            raise UserError(f"{bad}: {size} bytes")
        prefix = _read_exactly(fd, 8, path)
        n = int.from_bytes(prefix, "little")
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise UserError(f"{bad}: header length {n} for a file of {size} bytes")
        header = _read_exactly(fd, n, path)
        stored = _parse_header(header, path, size - 8 - n)
        if expect is not None:
            expected = expect(stored)
            if expected is not None:
                _compare_spec(stored, expected, path, folder / MODEL_META)
        data = prefix + header + _read_exactly(fd, size - 8 - n, path)
        if os.read(fd, 1):
            raise UserError(f"{path} changed while it was read (longer than its size)")
    finally:
        os.close(fd)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise UserError(f"corrupted checkpoint: {path} does not match its SHA-256")
    try:
        tensors = load_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise UserError(f"{bad}: {e}") from None
    if not allow_nonfinite:
        for k, v in tensors.items():
            if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                raise UserError(
                    f"{path}: tensor {k!r} holds NaN or infinite values "
                    "(--allow-nonfinite, or allow_nonfinite=True, loads it anyway, for debugging)"
                )
    return tensors


def _sha_field(meta: dict, key: str, where: str) -> str:
    v = meta.get(key)
    if not isinstance(v, str) or len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
        if v is None or v == "":
            raise UserError(f"{where} has no checksum {key!r}; refusing an unverifiable file")
        raise UserError(f"{where}: checksum {key!r} is not a SHA-256 hex digest: {v!r}")
    return v


def _check_meta(meta: dict, meta_path: Path, folder: Path) -> int:
    """The format version, after checking the tag, the version and model.json's own checksum."""
    if meta.get("format") != FORMAT:
        raise UserError(f"{meta_path} is not an lstmkit checkpoint (format {meta.get('format')!r})")
    version = meta.get("format_version", 1)
    if not _is_int(version) or version < 1:
        raise UserError(f"{meta_path}: format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise UserError(
            f"{folder} was written by a newer lstmkit ({meta.get('lstmkit_version')}); "
            f"this one reads checkpoint format <= {FORMAT_VERSION}"
        )
    if version >= 2:
        if _sha_field(meta, "meta_sha256", str(meta_path)) != _content_sha256(meta):
            raise UserError(f"corrupted checkpoint: {meta_path} does not match its SHA-256")
        if not isinstance(meta.get("checksums"), dict):
            raise UserError(f"{meta_path}: 'checksums' must be a JSON object")
    return version


def migrate_configs(meta: dict, where: Path) -> dict:
    """``meta`` with its configs in today's layout (:data:`~lstmkit.utils.config.
    CONFIG_SCHEMA`). Schema 1 (no ``config_schema``: every checkpoint written before the model
    configs nested) kept the model's options flat, schema 2 those of every task but speech;
    they are nested into the task's ``ModelConfig`` (the recurrent options under ``encoder``,
    seq2seq's ``enc_*``/``dec_*`` under ``encoder``/``decoder``; what is nested already stays).
    Called after the checksum of model.json's content was verified, so that the check is of
    what was written."""
    from lstmkit.utils.config import CONFIG_SCHEMA, nest

    schema = meta.get("config_schema", 1)
    if not _is_int(schema) or not 1 <= schema <= CONFIG_SCHEMA:
        raise UserError(
            f"{where}: config_schema must be an integer from 1 to {CONFIG_SCHEMA}, got "
            f"{schema!r} (a newer lstmkit wrote it?)"
        )
    flat = meta.get("model_config")
    if schema == CONFIG_SCHEMA or not isinstance(flat, dict):
        return meta
    from lstmkit.tasks.base import discover

    task_cls = discover().get(meta.get("task")) if isinstance(meta.get("task"), str) else None
    if task_cls is None:
        return meta  # the task check names it when the task is rebuilt
    nested = nest(task_cls.ModelConfig, flat)
    return {**meta, "model_config": nested, "config_schema": CONFIG_SCHEMA}


def load_checkpoint(
    path: str | os.PathLike,
    *,
    trainer: bool = False,
    prefer="best",
    build: Callable[[dict], torch.nn.Module] | None = None,
    allow_nonfinite: bool = False,
) -> Checkpoint:
    """Read and verify a checkpoint. Raises :class:`UserError` naming the file on any problem.

    ``build(meta)``, where given, makes the model that the metadata describes; it runs on the
    meta device, bounded by the weight file's header, and the header must match its state
    (names, shapes, dtypes) before a weight is read. ``trainer`` also reads the trainer state
    (for ``--resume``), which needs a checkpoint that records its checksums (format 2).
    ``allow_nonfinite`` accepts NaN or infinite values (for debugging a diverged run).

    A live trainer may replace the checkpoint folder (a rename) between the reads of its
    files, so that model.json comes from one save and the weights from the next: a failed
    read is retried (up to twice) when the folder ``path`` resolves to is no longer the one
    that was read (another inode), instead of reporting the pair as corrupted."""
    for attempt in range(3):
        folder = resolve_checkpoint(path, prefer)
        ident = _folder_ident(folder)
        try:
            return _load_checkpoint(folder, trainer, build, allow_nonfinite)
        except UserError:
            if attempt == 2 or _resolved_ident(path, prefer) == ident:
                raise
            time.sleep(0.05)  # the save's second rename may still be on its way
    raise AssertionError("unreachable")


def _folder_ident(folder: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _resolved_ident(path, prefer: str) -> tuple[int, int] | None:
    try:
        return _folder_ident(resolve_checkpoint(path, prefer))
    except UserError:
        return None


def _load_checkpoint(folder: Path, trainer: bool, build, allow_nonfinite: bool) -> Checkpoint:
    meta_path = folder / MODEL_META
    meta = _read_json(folder, MODEL_META, "checkpoint metadata")
    version = _check_meta(meta, meta_path, folder)
    meta = migrate_configs(meta, meta_path)
    sha = _sha_field(meta, "sha256", str(meta_path))

    def expect(stored: Spec) -> Spec | None:
        return None if build is None else expected_spec(lambda: build(meta), stored, meta_path)

    weights = _read_tensors(folder, MODEL_FILE, sha, allow_nonfinite=allow_nonfinite, expect=expect)
    ckpt = Checkpoint(folder, meta, weights)
    if trainer:
        if version < 2:
            raise UserError(
                f"{folder} was written by lstmkit {meta.get('lstmkit_version')}, which kept no "
                f"checksum of its trainer state; it cannot be resumed (its weights still load)"
            )
        sums = meta["checksums"]
        where = f"{meta_path} (checksums)"
        raw = _read_small(folder, TRAINER_META, "trainer state")
        if hashlib.sha256(raw).hexdigest() != _sha_field(sums, TRAINER_META, where):
            raise UserError(
                f"corrupted checkpoint: {folder / TRAINER_META} does not match its SHA-256"
            )
        ckpt.trainer_meta = _parse_json(raw, folder / TRAINER_META, "trainer state")
        ckpt.trainer_tensors = _read_tensors(
            folder,
            TRAINER_FILE,
            _sha_field(sums, TRAINER_FILE, where),
            allow_nonfinite=allow_nonfinite,
        )
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
    # load_state_dict would quietly cast (int32 weights into float parameters)
    wrong_dtype = [
        f"{k} {str(weights[k].dtype).removeprefix('torch.')} vs "
        f"{str(v.dtype).removeprefix('torch.')}"
        for k, v in own.items()
        if k in weights and weights[k].dtype != v.dtype
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
    if wrong_dtype:
        more = " ..." if len(wrong_dtype) > 4 else ""
        problems.append(f"dtype {'; '.join(wrong_dtype[:4])}{more}")
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
