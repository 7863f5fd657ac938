"""What a task is, and the registry that the command line reads.

A task is one module in ``lstmkit/tasks/`` holding a :class:`Task` subclass decorated with
:func:`register`. It declares its options as frozen dataclasses (``Config`` for the data and the
task, ``ModelConfig`` for the network); the CLI turns their fields into flags, the trainer calls
the methods below, and checkpoints store the configs and :meth:`Task.state` as JSON. Nothing else
needs to change to add a task.

Batches are any nesting of tuples, lists, dicts and NamedTuples of tensors; the trainer moves
them to the device. Training batches are a pure function of ``(seed, step)``: that makes an
interrupted and resumed run identical to an uninterrupted one, and lets each data-parallel
process take its own slice of the same global batch.
"""

from __future__ import annotations

import abc
import importlib
import pkgutil
import types
import typing
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from lstmkit.utils.config import CONFIG_SCHEMA, section_default, sections
from lstmkit.utils.errors import UserError

TASKS: dict[str, type[Task]] = {}
_NOT_TASK_MODULES = {"base"}


VERBS = (
    "predict",
    "evaluate",
    "inspect",
    "generate",
    "translate",
    "transcribe",
    "export",
    "quantize",
)
"""The use verbs of a trained run (``lstmkit VERB RUN``, ``Run.VERB`` of the Python API)."""
CAPABILITIES = (*VERBS, "cross-validate")
"""What a task may declare in :attr:`Task.capabilities`: the verbs, and ``cross-validate``
(``lstmkit train TASK --cv K``; its ``Config`` then has ``cv`` and ``fold``)."""
NEEDED_METHODS = {
    "predict": ("predict",),
    "inspect": ("inspect",),
    "generate": ("encode_prompt", "generate", "echo", "piece"),
    "translate": ("translate",),
    "transcribe": ("transcribe",),
}
"""The methods a task declaring each verb implements (:func:`register` checks them)."""


def check_capabilities(cls: type[Task]) -> None:
    """A declared capability must be known and implemented: the verb's methods overridden,
    ``cross-validate``'s ``cv`` and ``fold`` options present. A ``TypeError`` names what is
    missing (a programming error, found when the task registers, not when a user runs it)."""
    unknown = sorted(set(cls.capabilities) - set(CAPABILITIES))
    if unknown:
        raise TypeError(
            f"task {cls.name!r} declares unknown capabilities {unknown}; known: "
            f"{', '.join(CAPABILITIES)}"
        )
    for verb in cls.capabilities:
        for method in NEEDED_METHODS.get(verb, ()):
            if getattr(cls, method, None) in (None, getattr(Task, method, None)):
                raise TypeError(f"task {cls.name!r} declares {verb} but has no {method}()")
    if "cross-validate" in cls.capabilities:
        missing = {"cv", "fold"} - {f.name for f in fields(cls.Config)}
        if missing:
            raise TypeError(
                f"task {cls.name!r} declares cross-validate but its Config has no "
                f"{', '.join(sorted(missing))}"
            )


def register(cls: type[Task]) -> type[Task]:
    """Class decorator: make a task known to ``lstmkit train`` under ``cls.name``, its
    declared :attr:`~Task.capabilities` checked."""
    if cls.name in TASKS and TASKS[cls.name] is not cls:
        raise ValueError(f"task name {cls.name!r} is registered twice")
    check_capabilities(cls)
    TASKS[cls.name] = cls
    return cls


def discover() -> dict[str, type[Task]]:
    """Import every module of ``lstmkit.tasks`` once, so that their tasks register."""
    import lstmkit.tasks as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_") and info.name not in _NOT_TASK_MODULES:
            importlib.import_module(f"{pkg.__name__}.{info.name}")
    return TASKS


def get_task(name: str) -> type[Task]:
    tasks = discover()
    if name not in tasks:
        raise UserError(f"unknown task {name!r}; known tasks: {', '.join(sorted(tasks))}")
    return tasks[name]


READ_OPTIONS = ("format", "text_column", "label_column", "header", "quoting", "encoding")
"""Options of ``predict --input`` and ``evaluate --data`` that say how to read a file. A task
takes those of its ``Config`` (sentiment all of them, lm and translation ``encoding``); left
out, each is the run's own (the file is read as the training data was)."""


@dataclass
class InputRecords:
    """Inputs to predict read from a file, each with the file's own fields (its CSV row or
    JSON object), which predict writes back beside the prediction."""

    inputs: list[str]
    columns: list[dict]
    summary: str = ""
    """What reading found (``800 examples from 881 lines: 1 header, ...``), said on stderr."""


MAX_CONFIG_INT = 2**53
"""Largest integer a stored configuration may hold (JSON's exact-integer range)."""


def _type_problem(value: Any, tp: Any) -> str | None:
    """Why ``value`` (read from JSON) cannot be a ``tp``; None when it can, or when ``tp`` is
    not one of the simple types configs use."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        return None if isinstance(value, bool) else "expected true or false"
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            return "expected an integer"
        return None if abs(value) <= MAX_CONFIG_INT else "integer out of range"
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else "expected a number"
    if tp is str:
        return None if isinstance(value, str) else "expected a string"
    if origin in (typing.Union, types.UnionType):
        problems = [_type_problem(value, a) for a in args]
        return None if any(p is None for p in problems) else problems[0]
    if tp is type(None):
        return None if value is None else "expected null"
    if origin is typing.Literal:
        return None if value in args else f"expected one of {', '.join(map(repr, args))}"
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return "expected a list"
        item = args[0] if args else Any
        for v in value:
            problem = _type_problem(v, item)
            if problem:
                return problem
    return None


def config_from_dict(cls: type, values: dict[str, Any], what: str) -> Any:
    """Rebuild a config dataclass from JSON, naming unknown or missing fields and values of the
    wrong type (before any of them sizes a model)."""
    if not isinstance(values, dict):
        raise UserError(
            f"{what}: {cls.__name__} must be a JSON object, got {type(values).__name__}"
        )
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    subs = sections(cls)
    values = dict(values)
    for name, (sub, _) in subs.items():
        if name in values:  # a section: its own fields checked, over the section's default
            given = values[name]
            if isinstance(given, dict):  # (checked over the default: a part may need the rest)
                given = {**asdict(section_default(cls, name)), **given}
            values[name] = config_from_dict(sub, given, f"{what}: {name}")
    if unknown:
        raise UserError(f"{what}: unknown option(s) {', '.join(unknown)} for {cls.__name__}")
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation this module cannot resolve: check none
        hints = {}
    for name, value in values.items():
        if name in subs:
            continue
        problem = _type_problem(value, hints.get(name, Any))
        if problem:
            shown = repr(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise UserError(f"{what}: {cls.__name__}.{name} = {shown}: {problem}")
    try:
        return cls(**values)
    except (TypeError, ValueError, UserError) as e:  # UserError: a config's own checks
        raise UserError(f"{what}: {e}") from None


class Task(abc.ABC):
    """A trainable problem: its data, its model, its loss and metrics, and its CLI verbs."""

    name: ClassVar[str]
    summary: ClassVar[str]
    Config: ClassVar[type]
    ModelConfig: ClassVar[type]
    metric: ClassVar[str] = "loss"
    """Validation metric that picks the best checkpoint and drives early stopping."""
    mode: ClassVar[str] = "min"
    """``min`` or ``max``: the better direction of :attr:`metric`."""
    train_defaults: ClassVar[dict[str, Any]] = {}
    """TrainConfig defaults that suit this task (learning rate, steps...)."""
    split_options: ClassVar[str] = "--test"
    """The training options that give a run its test set, for the message of an evaluation
    with none."""
    checkpoint_state: ClassVar[tuple[str, ...]] = ()
    """Keys of :meth:`state` that a checkpoint must hold to rebuild the task (its vocabulary,
    its labels): without them the task would quietly make new ones from the training data."""
    prints_data_summary: ClassVar[bool] = False
    """True where the task says what it read in a line of its own (lm), so that the trainer
    logs :meth:`data_report` without printing it a second time."""
    metrics_note: ClassVar[str] = ""
    """One line ``lstmkit evaluate`` prints under the metrics table where a metric needs
    saying how it is measured (forecast: on which scale); empty for none."""
    capabilities: ClassVar[frozenset[str]] = frozenset({"evaluate"})
    """What a trained run of this task can do (:data:`CAPABILITIES`): the use verbs it has
    (``predict``, ``inspect``, ``generate``...) and ``cross-validate``. The command line, the
    Python API and their error messages read this set, never ``hasattr``; :func:`register`
    checks that each declared verb's methods exist (:data:`NEEDED_METHODS`)."""

    @classmethod
    def verbs(cls) -> tuple[str, ...]:
        """The use verbs this task has, in the order of :data:`VERBS`."""
        return tuple(v for v in VERBS if v in cls.capabilities)

    def __init__(self, cfg: Any, model_cfg: Any, state: dict | None = None) -> None:
        self.cfg = cfg
        self.model_cfg = model_cfg

    # ----- what a checkpoint stores besides the weights
    def state(self) -> dict:
        """JSON-able data the task needs to be rebuilt (vocabularies...); saved in checkpoints."""
        return {}

    def describe(self) -> dict:
        return {
            "task": self.name,
            "config_schema": CONFIG_SCHEMA,
            "task_config": asdict(self.cfg),
            "model_config": asdict(self.model_cfg),
            "task_state": self.state(),
        }

    @classmethod
    def from_checkpoint_meta(cls, meta: dict) -> Task:
        """Rebuild the task that wrote a checkpoint from its metadata."""
        where = f"checkpoint task {meta.get('task')!r}"
        cfg = config_from_dict(cls.Config, meta.get("task_config", {}), where)
        model_cfg = config_from_dict(cls.ModelConfig, meta.get("model_config", {}), where)
        state = meta.get("task_state") or {}
        if not isinstance(state, dict):
            raise UserError(f"{where}: task_state must be a JSON object")
        missing = [k for k in cls.checkpoint_state if k not in state]
        if missing:
            raise UserError(f"{where}: task_state has no {', '.join(missing)}")
        try:
            return cls(cfg, model_cfg, state=state)
        except UserError as e:
            raise UserError(f"{where}: {e}") from None
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as e:
            # a damaged vocabulary or label list: name it in one line, not a traceback
            detail = f"no {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
            raise UserError(f"{where}: unusable task_state: {detail}") from None

    # ----- training
    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """A fresh model, initialised from torch's global RNG (the trainer seeds it)."""

    @abc.abstractmethod
    def train_batch(self, step: int, seed: int, batch_size: int, rank: int, world: int) -> Any:
        """This process's slice of the global training batch number ``step``."""

    @abc.abstractmethod
    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        """Mean training loss of ``batch`` (a scalar with a graph)."""

    @abc.abstractmethod
    def evaluate(self, model: nn.Module, split: str, device: torch.device) -> dict[str, float]:
        """Metrics on ``split`` (``valid`` or ``test``), with ``model`` in eval mode."""

    def train_config(self, cfg: Any) -> Any:
        """The :class:`~lstmkit.train.config.TrainConfig` to train with: ``cfg`` with any
        options the task derives from its data filled in (the trainer calls this first). Most
        tasks change nothing; sentiment sets its default schedule from the training set."""
        return cfg

    def data_report(self) -> dict:
        """What was read (examples per split, skipped or cut examples, vocabulary size...);
        the trainer logs it as a ``data`` event and prints it, so nothing is dropped unseen."""
        return {}

    def batch_tokens(self, batch: Any) -> int:
        """Tokens (time steps that count) in this process's ``batch``, for the tokens-per-second
        figure of the log; 0 where the task does not count tokens."""
        return 0

    def carried_tensors(self) -> dict[str, Tensor]:
        """Tensors the task carries from one training step to the next (a language model's
        recurrent state): saved with the resumable checkpoint, so that ``--resume`` continues
        exactly where the run stopped. Most tasks carry nothing."""
        return {}

    def load_carried_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Restore what :meth:`carried_tensors` returned (on ``--resume``)."""
        return None

    def solved(self, metrics: dict[str, float]) -> bool:
        """The paper's success criterion on validation metrics, where the task has one."""
        return False

    def evaluation_plots(
        self, model: nn.Module, split: str, out: Path, device: torch.device
    ) -> list[Path]:
        """PNG files that explain the metrics of ``split`` (a confusion matrix...); none here."""
        return []

    # ----- using a trained model
    def predict(self, model: nn.Module, inputs: list[str], device: torch.device) -> list[dict]:
        raise UserError(f"task {self.name!r} has no predict")

    def inspect(
        self, model: nn.Module, inputs: list[str], out: Path, device: torch.device
    ) -> list[Path]:
        raise UserError(f"task {self.name!r} has no inspect")

    def examples(self) -> list[str]:
        """A few inputs in the format that :meth:`predict` reads, for help texts and demos."""
        return []

    # ----- the user's own files: predict --input, evaluate --data
    def read_config(self, options: dict[str, Any]) -> Any:
        """The task's ``Config`` with the read options given (:data:`READ_OPTIONS`, ``None`` or
        ``""`` for not given) in place of the run's; one the task does not take is an error
        naming it."""
        given = {k: v for k, v in options.items() if v is not None and v != ""}
        names = {f.name for f in fields(self.cfg)}
        for key in given:
            if key not in READ_OPTIONS or key not in names:
                takes = [f"--{k.replace('_', '-')}" for k in READ_OPTIONS if k in names]
                raise UserError(
                    f"--{key.replace('_', '-')}: task {self.name!r} does not take it when reading "
                    f"a file (it takes {', '.join(takes) or 'no read options'})"
                )
        return replace(self.cfg, **given)

    def read_input_file(self, path: str, **options: Any) -> InputRecords | None:
        """Inputs to :meth:`predict` from ``path`` in the formats the task trains from (a CSV
        read with the run's columns, a manifest, a folder), each with its own fields. None (the
        default): the file holds one input per line, in :meth:`predict`'s text format."""
        self.read_config(options)
        return None

    def split_source(self, split: str) -> str:
        """Where the run's ``split`` (``valid`` or ``test``) comes from, in words; ``""`` when
        the run has none (``evaluate`` then says so, and how to give one)."""
        return f"the {split} set of the run"

    def use_data(self, path: str, **options: Any) -> str:
        """Read the labelled file ``path`` (the formats the task trains from, read with the
        run's options or ``options``) as a new evaluation set; returns its split name, for
        :meth:`evaluate` and :meth:`evaluation_plots`."""
        raise UserError(
            f"evaluate --data: task {self.name!r} reads no data files; it is evaluated on "
            f"{self.split_source('test') or 'its own sets'}"
        )


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a nested batch to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(to_device(x, device) for x in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(x, device) for x in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def chunks(n: int, size: int) -> Iterable[slice]:
    """Slices covering ``range(n)`` in pieces of at most ``size``."""
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))
