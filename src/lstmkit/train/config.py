"""The trainer's options: one frozen dataclass; every field becomes a ``lstmkit train`` flag."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from lstmkit.utils.device import DEVICES
from lstmkit.utils.meta import help_meta as _help

SCHEDULES = ("constant", "cosine", "linear")
AMP_MODES = ("none", "bf16", "fp16")
RESUMABLE = (
    "steps",
    "max_time",
    "max_cpu_time",
    "eval_every",
    "save_every",
    "log_every",
    "patience",
    "stop_when_solved",
    "progress",
    "curves",
    "tensorboard",
    "device",
    "nproc",
    "threads",
)
"""Options that ``--resume`` takes from the command line; every other option of a resumed run
is the run's own (its saved configuration), and giving another value for it is an error. These
change when or where training runs, not what is learned at each step."""
RESUMABLE_TASK = ("backend", "enc_backend", "dec_backend", "cv_jobs", "decode_batch")
"""Task and model options that ``--resume`` also takes anew: where the recurrence runs and how
many processes or sentences work at once, not what the model is."""
UNCHECKED = ("out", "resume", "overwrite")
"""Options that name the run or how to open it, not part of its configuration."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimiser, schedule, stopping, checkpoints, devices and processes."""

    steps: int = field(default=5000, metadata=_help("maximum optimiser steps"))
    batch_size: int = field(
        default=64,
        metadata=_help(
            "sequences per step, over all processes (the global batch); training memory grows "
            "in proportion to batch x sequence length x hidden size x layers (about 20 floats "
            "per unit and step for an LSTM with its gradients), and a batch that does not fit "
            "ends in one 'out of memory' line"
        ),
    )
    lr: float = field(default=1e-3, metadata=_help("peak learning rate of AdamW"))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW decoupled weight decay"))
    clip_norm: float = field(
        default=1.0, metadata=_help("clip the global gradient norm to this; 0 turns clipping off")
    )
    schedule: str = field(
        default="constant",
        metadata=_help("learning-rate schedule after warm-up", choices=SCHEDULES),
    )
    warmup_steps: int = field(default=0, metadata=_help("linear warm-up steps from 0 to --lr"))
    ema: float = field(
        default=0.0,
        metadata=_help(
            "keep an exponential moving average of the weights with this decay per step (e.g. "
            "0.999) and evaluate, save best/ and predict with it; 0: off"
        ),
    )
    min_lr_ratio: float = field(
        default=0.1, metadata=_help("final learning rate of cosine/linear, as a share of --lr")
    )
    eval_every: int = field(
        default=200, metadata=_help("evaluate on the validation set every N steps")
    )
    patience: int = field(
        default=0,
        metadata=_help("stop after N evaluations without improvement of the validation metric"),
    )
    stop_when_solved: bool = field(
        default=True, metadata=_help("stop once the task's success criterion is met")
    )
    max_time: float = field(
        default=0.0, metadata=_help("stop after this many seconds of training; 0 means no limit")
    )
    max_cpu_time: float = field(
        default=0.0,
        metadata=_help(
            "stop after this many seconds of the process's CPU time in this session (a fair "
            "budget on a shared machine); 0 means no limit"
        ),
    )
    amp: str = field(
        default="none",
        metadata=_help("autocast precision (bf16 or fp16 on GPU)", choices=AMP_MODES),
    )
    device: str = field(default="auto", metadata=_help("where to train", choices=DEVICES))
    seed: int = field(default=0, metadata=_help("seed of weights, data order and dropout"))
    out: str = field(
        default="", metadata=_help("output folder (default runs/TASK); holds checkpoints and logs")
    )
    resume: bool = field(
        default=False,
        metadata=_help(
            "continue the run in --out from its last checkpoint, with the options it was "
            "started with (task, model and training); only these may be given anew: "
            + ", ".join("--" + n.replace("_", "-") for n in RESUMABLE)
            + " (--train and the other options the run was started with need not be given again)"
        ),
    )
    overwrite: bool = field(
        default=False, metadata=_help("replace a previous run in --out instead of refusing")
    )
    save_every: int = field(
        default=0, metadata=_help("write the resumable checkpoint every N steps; 0: at evaluations")
    )
    log_every: int = field(default=20, metadata=_help("log the training loss every N steps"))
    progress: bool = field(default=True, metadata=_help("show a live progress bar"))
    curves: bool = field(
        default=True,
        metadata=_help(
            "draw OUT/curves.png (training and validation metrics against steps) at the "
            "evaluations, while drawing takes under 5% of the training time, and at the end"
        ),
    )
    tensorboard: bool = field(
        default=False,
        metadata=_help(
            "also write TensorBoard event files to OUT/tensorboard (training loss, learning "
            "rate, validation metrics); needs pip install 'lstmkit[tensorboard]'"
        ),
    )
    nproc: int = field(
        default=1,
        metadata=_help("data-parallel processes to launch on this machine (torch.distributed)"),
    )
    threads: int = field(
        default=0,
        metadata=_help("CPU threads per process; 0 splits the cores between processes", max=4096),
    )

    def to_dict(self) -> dict[str, object]:
        return asdict(self)
