"""Declared capabilities (issue 17, part 5): what a trained run of a task can do is the set
``Task.capabilities``, checked when the task registers, never found with ``hasattr``. The
long-time-lag tasks' data generator is ``make_examples``: called ``generate`` it made
``hasattr(task, "generate")`` true for a task that generates no text."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from lstmkit.tasks.base import CAPABILITIES, TASKS, VERBS, Task, discover, register


@dataclass(frozen=True)
class _Config:
    size: int = 1


@dataclass(frozen=True)
class _CvConfig:
    cv: int = 0
    fold: int = -1


def _task(name: str, capabilities: set[str], config: type = _Config, **methods) -> type[Task]:
    body = {
        "name": name,
        "summary": "a test task",
        "Config": config,
        "ModelConfig": _Config,
        "capabilities": frozenset(capabilities),
        "build_model": lambda self: None,
        "train_batch": lambda self, *a: None,
        "loss": lambda self, *a: None,
        "evaluate": lambda self, *a: {},
        **methods,
    }
    return type(f"Task_{name}", (Task,), body)


@pytest.mark.parametrize(
    "capabilities, methods, config, message",
    [
        ({"evaluate", "predcit"}, {}, _Config, "unknown capabilities ['predcit']"),
        ({"evaluate", "generate"}, {}, _Config, "declares generate but has no encode_prompt()"),
        ({"evaluate", "predict"}, {}, _Config, "declares predict but has no predict()"),
        ({"evaluate", "cross-validate"}, {}, _Config, "Config has no cv, fold"),
        ({"evaluate", "transcribe"}, {"transcribe": None}, _Config, "has no transcribe()"),
    ],
)
def test_a_declared_capability_must_exist(capabilities, methods, config, message):
    cls = _task("test-bad", capabilities, config, **methods)
    with pytest.raises(TypeError, match=re.escape(message)):
        register(cls)
    assert "test-bad" not in TASKS


def test_a_complete_declaration_registers():
    cls = _task(
        "test-good",
        {"evaluate", "predict", "cross-validate"},
        _CvConfig,
        predict=lambda self, model, inputs, device: [],
    )
    try:
        assert register(cls) is cls
        assert cls.verbs() == ("predict", "evaluate")  # in the order of VERBS
    finally:
        TASKS.pop("test-good", None)


def test_every_task_declares_evaluate_and_only_known_capabilities():
    for name, cls in discover().items():
        assert "evaluate" in cls.capabilities and set(cls.capabilities) <= set(CAPABILITIES)
        assert set(cls.verbs()) <= set(VERBS), name


def test_no_task_has_a_generate_it_does_not_declare():
    """``generate`` means text generation; a task without it has no attribute of that name."""
    for name, cls in discover().items():
        assert hasattr(cls, "generate") == ("generate" in cls.capabilities), name


def test_the_long_time_lag_data_generator_is_make_examples():
    import torch

    from lstmkit.models.encoder import RecurrentConfig
    from lstmkit.tasks.longlag import AddingConfig, AddingTask

    task = AddingTask(AddingConfig(seq_len=10, n_valid=2, n_test=2), RecurrentConfig(hidden_size=2))
    batch = task.make_examples(3, torch.Generator().manual_seed(0))
    assert batch.inputs.shape[0] == 3


def test_cross_validation_is_the_declared_capability():
    tasks = discover()
    assert [n for n, c in sorted(tasks.items()) if "cross-validate" in c.capabilities] == [
        "sentiment"
    ]
