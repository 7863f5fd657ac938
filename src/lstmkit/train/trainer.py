"""The training loop shared by every task.

AdamW with decoupled weight decay, global-norm gradient clipping, linear warm-up then a constant,
cosine or linear learning rate, periodic validation with early stopping on the task's metric,
metrics as JSON lines, autocast on GPU, data-parallel processes, and resumable checkpoints.

An output folder holds::

    .lock             the run's owner (one ``lstmkit train`` at a time): :mod:`lstmkit.utils.lock`
    config.json       the run's task, model and training options
    train.jsonl       one JSON object per line: {"event": "train"|"valid"|"test"|..., ...}
    last/             the latest checkpoint, with optimiser and RNG state (for --resume)
    best/             the checkpoint with the best validation metric (for evaluate/predict)
    results.json      final validation and test metrics of best/
    curves.png        training and validation metrics against steps (``--no-curves``: none)
    tensorboard/      with ``--tensorboard``: TensorBoard event files of the same scalars
    logs/             with ``--nproc``: each process's standard error, ``rank<k>.log``

With ``--ema`` (:mod:`lstmkit.train.ema`) validation and ``best/`` use the moving average of the
weights; ``last/model.safetensors`` keeps the raw training weights and its trainer state the
average, so a resumed run continues both.

Reproducibility: the model is initialised from ``seed``, training batch ``k`` is a function of
``(seed, k)``, and the RNG state is saved with every checkpoint, so on CPU an interrupted run
resumed with ``--resume`` ends at the same weights as one that was never stopped.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shlex
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import nn

from lstmkit.tasks.base import Task, get_task, to_device
from lstmkit.train import distributed as dist_utils
from lstmkit.train.checkpoint import (
    load_checkpoint,
    load_weights,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_checkpoint,
)
from lstmkit.train.config import RESUMABLE, RESUMABLE_TASK, UNCHECKED, TrainConfig
from lstmkit.train.ema import WeightAverage
from lstmkit.utils.config import flatten
from lstmkit.utils.device import resolve_device
from lstmkit.utils.errors import UserError
from lstmkit.utils.io import atomic_write_json, atomic_write_text
from lstmkit.utils.lock import FolderLock, held_by_launcher, lock_folder
from lstmkit.utils.malloc import malloc_state

CARRIED = "task."
"""Prefix of the task's carried tensors in the trainer checkpoint."""


@dataclass
class TrainState:
    """Counters that a resumed run continues from."""

    step: int = 0
    sequences: int = 0
    elapsed: float = 0.0
    best: float | None = None
    best_step: int = 0
    bad_evals: int = 0
    stop_reason: str = ""


@dataclass
class TrainResult:
    out: Path
    state: TrainState
    valid: dict[str, float]
    test: dict[str, float]
    solved: bool
    history: list[dict]
    """This session's train and valid events (the JSONL log has those of earlier sessions)."""


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of optimiser step ``step`` (0-based): warm-up, then the schedule."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(1, cfg.steps - cfg.warmup_steps)
    t = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    if cfg.schedule == "cosine":
        return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * t))
    if cfg.schedule == "linear":
        return cfg.lr + (floor - cfg.lr) * t
    raise UserError(f"--schedule must be constant, cosine or linear, got {cfg.schedule!r}")


def check_backends(model: nn.Module, device: torch.device) -> None:
    """A recurrence backend chosen by name must run on ``device``: say so before training, in
    one line naming the option, rather than at the first forward pass."""
    from lstmkit.kernels import dispatch

    for module in model.modules():
        backend = getattr(module, "backend", None)
        if backend in (None, "auto", "torch") or not isinstance(backend, str):
            continue
        dtype = next((p.dtype for p in module.parameters()), torch.float32)
        try:
            dispatch.resolve_backend(backend, device, dtype)
        except (ValueError, RuntimeError) as e:
            raise UserError(f"--backend {backend}: {e}") from None


def check_config(cfg: TrainConfig) -> None:
    """Reject values that cannot work, naming the option."""
    positive = {"steps": cfg.steps, "batch_size": cfg.batch_size, "eval_every": cfg.eval_every}
    positive |= {"log_every": cfg.log_every, "nproc": cfg.nproc}
    for name, value in positive.items():
        if value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    for name in ("lr", "weight_decay", "clip_norm", "max_time", "max_cpu_time", "min_lr_ratio"):
        if getattr(cfg, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(cfg, name)}")
    for name in ("warmup_steps", "patience", "save_every", "threads"):
        if getattr(cfg, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(cfg, name)}")
    if not 0.0 <= cfg.ema < 1.0:
        raise UserError(f"--ema must be in [0, 1) (0: off), got {cfg.ema}")
    if cfg.amp not in ("none", "bf16", "fp16"):
        raise UserError(f"--amp must be none, bf16 or fp16, got {cfg.amp!r}")
    lr_at(0, cfg)  # validates the schedule name


_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}
"""Write failures the user fixes (free space, permissions), not bugs: one line, not a traceback."""


def _disk_errno(e: BaseException) -> int | None:
    if isinstance(e, OSError):
        return e.errno if e.errno in _DISK_ERRORS else None
    if isinstance(e, SafetensorError):  # safetensors reports the OS error in its message only
        m = re.search(r"os error (\d+)", str(e))
        return int(m.group(1)) if m and int(m.group(1)) in _DISK_ERRORS else None
    return None


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """A full disk or a read-only file system while writing ``path`` is a UserError naming it."""
    try:
        yield
    except (OSError, SafetensorError) as e:
        code = _disk_errno(e)
        if code is None:
            raise
        raise UserError(f"cannot write {path}: {os.strerror(code)}") from e


class JsonlLog:
    """Appends one JSON object per line and flushes it, so a killed run keeps its log."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._f = None
        if path:
            with _writing(path):
                self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, event: str, **values: object) -> None:
        if self._f:
            with _writing(self.path):
                self._f.write(json.dumps({"event": event, "time": round(time.time(), 3), **values}))
                self._f.write("\n")
                self._f.flush()

    def close(self) -> None:
        if self._f:
            self._f.close()


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The events of a ``train.jsonl`` log (a torn last line from a kill is skipped)."""
    events = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def _comparable(value: object) -> object:
    """``value`` as JSON reads it back (tuples are lists), for comparing with a saved config."""
    return json.loads(json.dumps(value))


def _flat_model(model_cls: type, meta: dict) -> object:
    """A checkpoint's model config as flags name its options (sections flattened)."""
    saved = meta.get("model_config")
    return flatten(saved, model_cls) if isinstance(saved, dict) else saved


def _check_same_run(task: Task, meta: dict, out: Path, cfg: TrainConfig | None = None) -> None:
    """--resume must not change the task, the model or how it learns under the saved weights;
    only the options of :data:`~lstmkit.train.config.RESUMABLE` may differ."""
    now = {**task.describe(), "train_config": asdict(cfg) if cfg is not None else {}}
    # the options as flags name them: a model config's sections (its encoder) seen flat
    now["model_config"] = flatten(task.model_cfg)
    meta = {**meta, "model_config": _flat_model(type(task).ModelConfig, meta)}
    diffs = []
    if meta.get("task") != now["task"]:
        raise UserError(
            f"--resume: {out} holds a run of task {meta.get('task')!r}, not {task.name!r}"
        )
    free = set(RESUMABLE) | set(RESUMABLE_TASK) | set(UNCHECKED)
    for section in ("task_config", "model_config", "train_config"):
        saved = meta.get(section, {})
        if not isinstance(saved, dict):
            continue
        for key, value in now[section].items():
            if key in free or key not in saved:
                continue
            if _comparable(saved[key]) != _comparable(value):
                flag = "--" + key.replace("_", "-")
                if key == "ema" and not saved[key]:  # its weight average was never kept
                    diffs.append(f"{flag} {value} (now), but the run was trained without --ema")
                else:
                    diffs.append(f"{flag} {saved[key]} (run) vs {value} (now)")
    if diffs:
        own = [n for n in RESUMABLE_TASK if n in now["task_config"] or n in now["model_config"]]
        may = ", ".join("--" + n.replace("_", "-") for n in (*RESUMABLE, *own))
        raise UserError(
            f"--resume: options differ from the run in {out}: {'; '.join(diffs)} (a resumed run "
            f"keeps its options; only {may} may change)"
        )


def find_resumable(out: Path) -> tuple[dict, Path]:
    """The metadata of the checkpoint that ``--resume`` continues in ``out`` and its run folder
    (``out``, or for a cross-validation its first fold with a checkpoint)."""
    for folder in [out, *sorted(out.glob("fold-*"))]:
        if (folder / "last").exists() or list(folder.glob(".last.old-*")):
            return load_checkpoint(folder, prefer="last").meta, folder
    raise UserError(f"--resume: {out} has no checkpoint to resume from (no {out}/last)")


def resume_values(task_name: str, values: dict, given: set[str], out: Path) -> dict:
    """The option values of ``lstmkit train TASK --resume``: the run's saved options (task,
    model and training), except those the user gave on the line (``given``), which the trainer
    then checks against the run (only :data:`RESUMABLE` ones may differ)."""
    meta, folder = find_resumable(out)
    if meta.get("task") != task_name:
        raise UserError(
            f"--resume: {out} holds a run of task {meta.get('task')!r}, not {task_name!r}"
        )
    merged = dict(values)
    meta = {**meta, "model_config": _flat_model(get_task(task_name).ModelConfig, meta)}
    keep = set(given) | set(UNCHECKED)
    if folder != out:
        keep.add("fold")  # a fold's own index; the cross-validation trains every fold
    for section in ("task_config", "model_config", "train_config"):
        saved = meta.get(section)
        if not isinstance(saved, dict):
            continue
        for key, value in saved.items():
            if key in merged and key not in keep:
                merged[key] = tuple(value) if isinstance(value, list) else value
    return merged


def _truncate_log(path: Path, step: int) -> None:
    """Drop the log lines of steps after the checkpoint a run resumes from: they are redone."""
    if path.exists():
        kept = [e for e in read_jsonl(path) if e.get("step", 0) <= step]
        atomic_write_text(path, "".join(json.dumps(e) + "\n" for e in kept))


def _own_out(out: Path) -> FolderLock | None:
    """Take ``out``'s lock, unless the ``--nproc`` launcher above this process holds it."""
    return None if held_by_launcher(out) else lock_folder(out)


def _prepare_out(out: Path, cfg: TrainConfig) -> None:
    """Refuse to clobber a previous run unless asked: runs are the user's data.

    The caller holds ``out``'s lock. Every refusal comes before anything is deleted.
    """
    has_run = (out / "config.json").exists() or (out / "last").exists()
    if cfg.resume:
        if not (out / "last").exists() and not list(out.glob(".last.old-*")):
            raise UserError(f"--resume: {out} has no checkpoint to resume from (no {out}/last)")
    elif has_run and not cfg.overwrite:
        raise UserError(
            f"{out} already holds a run; pass --resume to continue it, --overwrite to "
            "replace it, or choose another --out"
        )
    # Only the lock's holder gets here, so these are left by a run killed while saving, not
    # a live run's checkpoint in progress.
    for stale in out.glob(".*.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if has_run and cfg.overwrite and not cfg.resume:
        with _writing(out):
            old = ("last", "best", "train.jsonl", "results.json", "config.json", "logs")
            for name in (*old, "curves.png", "tensorboard"):
                p = out / name
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)


def _autocast(cfg: TrainConfig, device: torch.device):
    if cfg.amp == "none":
        return nullcontext()
    if device.type != "cuda":
        # torch's CPU LSTM (oneDNN) fails under bf16 autocast, and fp16 has no CPU kernels
        raise UserError(f"--amp {cfg.amp} needs a CUDA device; on CPU use --amp none")
    dtype = torch.bfloat16 if cfg.amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _rng_tensors() -> dict[str, torch.Tensor]:
    out = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda.{i}"] = s
    return out


def _set_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng.cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def _checkpoint_meta(task: Task, cfg: TrainConfig, state: TrainState, metrics: dict) -> dict:
    return {
        **task.describe(),
        "train_config": asdict(cfg),
        "step": state.step,
        "sequences": state.sequences,
        "metrics": metrics,
    }


def _better(task: Task, value: float, best: float | None) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value < best if task.mode == "min" else value > best


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; its message says where ``--resume`` will start from."""


def _saved_step(out: Path) -> int | None:
    """The step of ``out``'s resumable checkpoint (None without one)."""
    for folder in [out / "last", *sorted(out.glob(".last.old-*"))]:
        try:
            return int(json.loads((folder / "model.json").read_text(encoding="utf-8"))["step"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def interrupted_message(task_name: str, out: Path, reached: int | None) -> str:
    """What a Ctrl-C of a run says: the step reached, the checkpoint that ``--resume`` starts
    from, and the command."""
    saved = _saved_step(out)
    where = f"interrupted at step {reached}" if reached is not None else "interrupted"
    if saved is None:
        return (
            f"{where}, before the first checkpoint: nothing to resume; start again with "
            f"`lstmkit train {task_name} --out {shlex.quote(str(out))} --overwrite ...`"
        )
    command = f"lstmkit train {task_name} --out {shlex.quote(str(out))} --resume"
    if reached is None or reached <= saved:
        return f"{where}; `{command}` continues from the checkpoint of step {saved}"
    return (
        f"{where}; the last checkpoint is of step {saved}: `{command}` continues from there "
        f"(steps {saved + 1}-{reached} are trained again; --save-every N saves more often)"
    )


def _logged_step(out: Path) -> int | None:
    path = out / "train.jsonl"
    if not path.exists():
        return None
    steps = [e.get("step") for e in read_jsonl(path) if e.get("event") == "train"]
    steps = [s for s in steps if isinstance(s, int)]
    return steps[-1] if steps else None


def _summary_writer_class():
    """torch's SummaryWriter, or a UserError saying how to install TensorBoard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError(
            "--tensorboard needs the tensorboard package: pip install 'lstmkit[tensorboard]' "
            "(or pip install tensorboard)"
        ) from None
    return SummaryWriter


def _scalars(values: dict) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, (int, float))
        and not isinstance(v, bool)
        and k not in ("step", "sequences", "elapsed")
    }


ProgressHook = Callable[[TrainState, dict], None]

_CURVES_FIRST_COST = 0.5
"""Seconds that drawing curves.png is assumed to take before it has been measured (0.3-0.5 s
on a loaded 2-core machine): a run redraws at an evaluation once 20 times that has passed."""


def train(
    task: Task, cfg: TrainConfig, *, on_log: ProgressHook | None = None, label: str = ""
) -> TrainResult:
    """Train ``task``'s model under ``cfg``; returns the final state and metrics of ``best/``.

    ``on_log`` is called on the main process with the state and the latest logged values after
    every training log line and evaluation (the demo draws its curves from it).
    """
    cfg = task.train_config(cfg)  # options the task sets from its data (sentiment: the schedule)
    check_config(cfg)
    world = dist_utils.world_from_env()
    if world.size != cfg.nproc:  # a worker of --nproc (which it does not see) or of torchrun:
        cfg = replace(cfg, nproc=world.size)  # the checkpoints record the processes trained in
    if cfg.batch_size % world.size:
        raise UserError(
            f"--batch-size {cfg.batch_size} must divide evenly among {world.size} processes"
        )
    device = resolve_device(cfg.device, world.local_rank)
    _autocast(cfg, device)  # rejects --amp on CPU before anything is written
    if cfg.tensorboard:
        _summary_writer_class()
    out = Path(cfg.out or f"runs/{task.name}")
    dist_utils.die_with_parent()  # a worker of --nproc: its launcher's death stops it
    # One owner per folder, before anything in it is read or written: rank 0 (or the --nproc
    # launcher, for the whole group); the other ranks write nothing but their logs/ file.
    lock = _own_out(out) if world.is_main else None
    try:
        if world.is_main:
            _prepare_out(out, cfg)
        dist_utils.log_to_run_folder(world)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        elif world.distributed and device.type == "cpu":
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world.size))
        dist_utils.init(world, device)
        try:
            dist_utils.barrier(world)
            return _train(task, cfg, world, device, out, on_log, label)
        finally:
            dist_utils.shutdown()
    finally:
        if lock is not None:
            lock.release()


def launch(task_name: str, cfg: TrainConfig, argv: list[str]) -> int:
    """``--nproc N``: own the run folder for the whole run and train in N worker processes.

    This process takes the lock and makes every refusal before any worker starts (a refused
    command starts none and writes nothing); the workers run ``lstmkit <argv>`` under it.
    """
    check_config(cfg)
    if cfg.batch_size % cfg.nproc:
        raise UserError(
            f"--batch-size {cfg.batch_size} must divide evenly among {cfg.nproc} processes"
        )
    if cfg.tensorboard:
        _summary_writer_class()
    out = Path(cfg.out or f"runs/{task_name}")
    with lock_folder(out) as lock:
        _prepare_out(out, cfg)
        logs = out / "logs"
        with _writing(logs):
            logs.mkdir(exist_ok=True)
        try:
            return dist_utils.launch(cfg.nproc, argv, logs=logs, held_lock=lock.path)
        except KeyboardInterrupt:
            message = interrupted_message(task_name, out, _logged_step(out))
            raise TrainingInterrupted(message) from None


def _train(task, cfg, world, device, out, on_log, label) -> TrainResult:
    run = _Run(task, cfg, world, device, out, on_log)
    progress = _Progress(cfg, label or task.name, world.is_main and cfg.progress, run.state)
    if progress.bar is not None:
        n_params = sum(p.numel() for p in run.model.parameters())
        progress.bar.console.print(
            f"[bold]{label or task.name}[/bold]: {task.summary}; {n_params:,} parameters, "
            f"{device}, {world.size} process{'es' if world.size > 1 else ''}, "
            f"{'resuming at step ' + str(run.state.step) + ', ' if cfg.resume else ''}"
            f"output {out}"
        )
        if run.data_report and not task.prints_data_summary:
            progress.bar.console.print(
                "data: " + ", ".join(f"{k} {v}" for k, v in run.data_report.items())
            )
    try:
        try:
            run.loop(progress)
        finally:
            progress.close()
        return run.finish()
    except KeyboardInterrupt:
        if not world.is_main:
            raise
        message = interrupted_message(task.name, out, run.state.step)
        raise TrainingInterrupted(message) from None
    finally:
        run.close()


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device):
    """AdamW over ``model``'s parameters, with torch's fused kernel on CPU and CUDA.

    The fused kernel updates every parameter tensor in one call instead of torch's default
    loop of a dozen small ops per tensor: an AdamW step over the 1.9 M parameters of the
    384 x 2 character model took 2.4 ms instead of 14 ms on one CPU thread, over the 5.6 M of
    the MR sentiment BiLSTM 6.6 ms instead of 42 ms (``make bench-adamw``,
    docs/BENCHMARKS.md). Same update rule.
    """
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None
    )


class _Run:
    """One training run: the model, its optimiser, the counters and the log."""

    def __init__(self, task, cfg, world, device, out, on_log) -> None:
        self.task, self.cfg, self.world, self.device, self.out = task, cfg, world, device, out
        self.on_log = on_log if world.is_main else None
        torch.manual_seed(cfg.seed)
        self.model = task.build_model().to(device)
        check_backends(self.model, device)
        self.opt = make_optimizer(self.model, cfg, device)
        self.state = TrainState()
        self.ema = WeightAverage(self.model, cfg.ema) if cfg.ema else None
        if cfg.resume:
            ckpt = load_checkpoint(out, trainer=True, prefer="last")
            _check_same_run(task, ckpt.meta, out, cfg)
            load_weights(self.model, ckpt.weights, ckpt.path)
            optimizer_from_tensors(self.opt, ckpt.trainer_tensors, ckpt.trainer_meta["optimizer"])
            for group in self.opt.param_groups:  # this version's kernel, whatever saved it
                group["fused"], group["foreach"] = self.opt.defaults["fused"], None
            # a finished run can be extended (more --steps, a longer --max-time)
            self.state = replace(TrainState(**ckpt.trainer_meta["state"]), stop_reason="")
            _set_rng(ckpt.trainer_tensors)
            if self.ema:
                self.ema.load(ckpt.trainer_tensors, ckpt.trainer_meta.get("ema_updates", 0))
            if not world.distributed:
                n = len(CARRIED)
                task.load_carried_tensors(
                    {k[n:]: v for k, v in ckpt.trainer_tensors.items() if k.startswith(CARRIED)}
                )
            if world.is_main:
                with _writing(out / "train.jsonl"):
                    _truncate_log(out / "train.jsonl", self.state.step)
        elif world.is_main:
            with _writing(out / "config.json"):
                config = {**task.describe(), "train_config": asdict(cfg)}
                atomic_write_json(out / "config.json", config)
        self.ddp = self.model
        if world.distributed:
            self.ddp = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
        # the events of earlier sessions too (a resumed run's log), for curves.png
        log_path = out / "train.jsonl"
        self.events: list[dict] = []
        if world.is_main and cfg.resume and cfg.curves and log_path.exists():
            self.events = read_jsonl(log_path)
        self.log = JsonlLog(log_path if world.is_main else None)
        self.tensorboard = None
        if world.is_main and cfg.tensorboard:
            with _writing(out / "tensorboard"):
                # purge_step: a killed session's events after the checkpoint are redone
                self.tensorboard = _summary_writer_class()(
                    str(out / "tensorboard"), purge_step=self.state.step + 1 if cfg.resume else None
                )
        self._write(
            "resume" if cfg.resume else "start",
            step=self.state.step,
            world=world.size,
            metric=task.metric,
            malloc=malloc_state(),
        )
        self.data_report = task.data_report()
        if self.data_report:
            self.log.write("data", **self.data_report)
        self.valid: dict[str, float] = {}
        self.history: list[dict] = []
        self._curves_cost = _CURVES_FIRST_COST  # measured at each drawing
        self._curves_at = time.perf_counter()

    def _write(self, event: str, **values: object) -> None:
        self.log.write(event, **values)
        if self.world.is_main and self.cfg.curves:
            self.events.append({"event": event, **values})

    def _record(self, event: str, values: dict) -> None:
        self._write(event, **values)
        self.history.append({"event": event, **values})
        if self.tensorboard is not None:
            for name, value in _scalars(values).items():
                self.tensorboard.add_scalar(f"{event}/{name}", value, values["step"])
            if event != "train":
                self.tensorboard.flush()
        if self.on_log:
            self.on_log(self.state, values)

    def draw_curves(self, force: bool = False) -> None:
        """Redraw ``out/curves.png`` at an evaluation, unless the last drawing was so recent
        that drawing would take over 5% of the training time; ``force``: at the end."""
        if not (self.world.is_main and self.cfg.curves):
            return
        now = time.perf_counter()
        if not force and now - self._curves_at < 20 * self._curves_cost:
            return
        from lstmkit.train.curves import CURVES_FILE, write_run_curves

        with _writing(self.out / CURVES_FILE):
            write_run_curves(self.out, self.events, self.task.metric, self.task.name)
        self._curves_at = time.perf_counter()
        self._curves_cost = self._curves_at - now

    def close(self) -> None:
        """Close the log and the TensorBoard writer (also after an error or Ctrl-C)."""
        self.log.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None

    def train_step(self) -> tuple[float, int]:
        cfg, state = self.cfg, self.state
        lr = lr_at(state.step, cfg)
        for group in self.opt.param_groups:
            group["lr"] = lr
        batch = self.task.train_batch(
            state.step, cfg.seed, cfg.batch_size, self.world.rank, self.world.size
        )
        tokens = self.task.batch_tokens(batch) * self.world.size
        batch = to_device(batch, self.device)
        self.ddp.train()
        with _autocast(cfg, self.device):
            loss = self.task.loss(self.ddp, batch)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.clip_norm:
            self.scaler.unscale_(self.opt)
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_norm)
        self.scaler.step(self.opt)
        self.scaler.update()
        if self.ema:
            self.ema.update()
        state.step += 1
        state.sequences += cfg.batch_size
        return loss.item(), tokens

    def loop(self, progress: _Progress) -> None:
        cfg, state = self.cfg, self.state
        save_every = cfg.save_every or cfg.eval_every
        t_start = time.perf_counter() - state.elapsed
        cpu_start = time.process_time()
        window_loss, window_n, window_tokens = 0.0, 0, 0
        window_t = time.perf_counter()
        while state.step < cfg.steps and not state.stop_reason:
            loss, tokens = self.train_step()
            window_loss += loss
            window_n += 1
            window_tokens += tokens
            state.elapsed = time.perf_counter() - t_start
            if state.step % cfg.log_every == 0 or state.step == cfg.steps:
                now = time.perf_counter()
                speed = cfg.batch_size * window_n / max(now - window_t, 1e-9)
                values = {
                    "step": state.step,
                    "sequences": state.sequences,
                    "loss": window_loss / window_n,
                    "lr": self.opt.param_groups[0]["lr"],
                    "seq_per_s": round(speed, 1),
                    "elapsed": round(state.elapsed, 3),
                }
                if cfg.max_cpu_time:
                    values["cpu_time"] = round(time.process_time() - cpu_start, 3)
                if window_tokens:  # estimated from rank 0's batch times the processes
                    values["tok_per_s"] = round(window_tokens / max(now - window_t, 1e-9), 1)
                self._record("train", values)
                progress.update(state, values["loss"], speed)
                window_loss, window_n, window_tokens, window_t = 0.0, 0, 0, now
            # Clocks differ between processes: rank 0 alone reads its clock and tells the others,
            # so all evaluate and stop at the same step. The other stopping rules need no
            # message: every process evaluates the same weights on the same data.
            time_up = self.world.is_main and state.elapsed >= cfg.max_time
            if cfg.max_time and dist_utils.broadcast_flag(self.world, time_up):
                state.stop_reason = f"time limit of {cfg.max_time:g} s"
            if cfg.max_cpu_time:
                cpu_up = time.process_time() - cpu_start >= cfg.max_cpu_time
                if dist_utils.broadcast_flag(self.world, self.world.is_main and cpu_up):
                    state.stop_reason = state.stop_reason or (
                        f"CPU-time limit of {cfg.max_cpu_time:g} s"
                    )
            t_pause = time.perf_counter()
            if state.step % cfg.eval_every == 0 or state.step == cfg.steps or state.stop_reason:
                self.validate()
            elif state.step % save_every == 0:
                self.save_last()
            window_t += time.perf_counter() - t_pause  # the speeds are of training steps only
        if not state.stop_reason:
            state.stop_reason = f"reached --steps {cfg.steps}"
        self._write("stop", step=state.step, reason=state.stop_reason)

    def validate(self) -> None:
        # Every process evaluates the whole validation set, so that all take the same decision.
        task, cfg, state = self.task, self.cfg, self.state
        self.model.eval()
        with self._averaged(), torch.no_grad(), _autocast(cfg, self.device):
            metrics = task.evaluate(self.model, "valid", self.device)
            improved = _better(task, metrics[task.metric], state.best)
            # with --ema, best/ holds the averaged weights: the ones just evaluated
            weights = self.model.state_dict()
            if self.ema and improved:
                weights = {k: v.detach().clone() for k, v in weights.items()}
        self.valid = metrics
        if improved:
            state.best, state.best_step, state.bad_evals = metrics[task.metric], state.step, 0
        else:
            state.bad_evals += 1
        solved = task.solved(metrics)
        self._record(
            "valid",
            {"step": state.step, "sequences": state.sequences, **metrics, "solved": solved},
        )
        if solved and cfg.stop_when_solved:
            state.stop_reason = state.stop_reason or f"solved at step {state.step}"
        if cfg.patience and state.bad_evals >= cfg.patience:
            state.stop_reason = state.stop_reason or (
                f"no better {task.metric} in {cfg.patience} evaluations"
            )
        if self.world.is_main and improved:
            meta = _checkpoint_meta(task, cfg, state, metrics)
            with _writing(self.out / "best"):
                save_checkpoint(self.out / "best", weights, meta)
        self.save_last()
        self.draw_curves()

    def _averaged(self):
        return self.ema.applied() if self.ema else nullcontext()

    def save_last(self) -> None:
        if not self.world.is_main:
            return
        tensors, opt_meta = optimizer_to_tensors(self.opt)
        trainer_meta = {"state": asdict(self.state), "optimizer": opt_meta}
        if self.ema:
            tensors |= self.ema.tensors()
            trainer_meta["ema_updates"] = self.ema.updates
        if not self.world.distributed:  # (each process carries its own; not saved under DDP)
            tensors |= {CARRIED + k: v for k, v in self.task.carried_tensors().items()}
        with _writing(self.out / "last"):
            save_checkpoint(
                self.out / "last",
                self.model.state_dict(),
                _checkpoint_meta(self.task, self.cfg, self.state, self.valid),
                {**tensors, **_rng_tensors()},
                trainer_meta,
            )

    def finish(self) -> TrainResult:
        """Evaluate ``best/`` on validation and test data and write results.json."""
        task, state, out = self.task, self.state, self.out
        dist_utils.barrier(self.world)
        best = load_checkpoint(out / "best")
        load_weights(self.model, best.weights, best.path)
        self.model.eval()
        with torch.no_grad(), _autocast(self.cfg, self.device):
            valid = task.evaluate(self.model, "valid", self.device)
            test = task.evaluate(self.model, "test", self.device)
        solved = task.solved(valid)
        self._write("test", step=best.meta["step"], **test)
        if self.tensorboard is not None:
            for name, value in _scalars(test).items():
                self.tensorboard.add_scalar(f"test/{name}", value, best.meta["step"])
        self.close()
        self.draw_curves(force=True)
        if self.world.is_main:
            results = {
                "task": task.name,
                "best_step": best.meta["step"],
                "steps": state.step,
                "sequences": state.sequences,
                "elapsed": round(state.elapsed, 3),
                "stop_reason": state.stop_reason,
                "solved": solved,
                "valid": valid,
                "test": test,
            }
            with _writing(out / "results.json"):
                atomic_write_json(out / "results.json", results)
        return TrainResult(out, state, valid, test, solved, self.history)


class _Progress:
    """A rich progress bar: step, loss, sequences per second, elapsed and remaining time."""

    def __init__(self, cfg: TrainConfig, label: str, enabled: bool, state: TrainState) -> None:
        self.bar = None
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        class TimeLeft(TimeRemainingColumn):
            """The steps' estimate, or the --max-time limit when that comes first."""

            def render(self, task):
                if cfg.max_time and task.elapsed is not None:
                    by_time = max(0.0, cfg.max_time - state.elapsed)
                    by_steps = task.time_remaining
                    if by_steps is None or by_time < by_steps:
                        from rich.text import Text

                        minutes, seconds = divmod(int(by_time), 60)
                        return Text(
                            f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}",
                            style="progress.remaining",
                        )
                return super().render(task)

        self.bar = Progress(
            TextColumn("[bold]{task.description:<6}"),
            BarColumn(bar_width=28),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]} seq/s"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeLeft(),
            transient=False,
        )
        self.id = self.bar.add_task(
            label, total=cfg.steps, completed=state.step, loss="-", speed="-"
        )
        self.bar.start()

    def update(self, state: TrainState, loss: float, speed: float) -> None:
        if self.bar is not None:
            self.bar.update(
                self.id, completed=state.step, loss=f"{loss:.4f}", speed=f"{speed:,.0f}"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
