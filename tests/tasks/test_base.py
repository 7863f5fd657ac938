"""The task registry, config rebuilding from checkpoints, and the batch helpers."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError
from typing import NamedTuple

import pytest
import torch

from lstmkit.models.encoder import RecurrentConfig
from lstmkit.tasks import base
from lstmkit.tasks.base import (
    Task,
    chunks,
    config_from_dict,
    discover,
    get_task,
    register,
    to_device,
)
from lstmkit.tasks.longlag import AddingConfig, AddingTask
from lstmkit.utils.errors import UserError

LONGLAG_TASKS = (
    "adding",
    "multiplication",
    "temporal-order",
    "reber",
    "continual-reber",
    "copy-memory",
)

# A setting away from the defaults for each task, so a round trip that dropped a field shows.
NON_DEFAULT = {
    "adding": {"seq_len": 20, "variant": "hochreiter1997", "tolerance": 0.1, "n_valid": 7},
    "multiplication": {"seq_len": 30, "tolerance": 0.2, "solved_share": 0.5},
    "temporal-order": {"variant": "6b", "n_test": 11},
    "reber": {"n_valid": 10, "solved_share": 0.9},
    "continual-reber": {"chunk": 50, "valid_length": 300, "criterion": "gers2000"},
    "copy-memory": {"delay": 7, "n_symbols": 4, "copy_len": 3},
}


def test_discover_finds_the_long_lag_tasks():
    tasks = discover()
    assert set(LONGLAG_TASKS) <= set(tasks)
    for name, cls in tasks.items():
        assert issubclass(cls, Task) and cls.name == name


def test_get_task_returns_the_class_and_names_the_known_tasks_when_unknown():
    assert get_task("adding") is AddingTask
    with pytest.raises(UserError, match="unknown task 'nope'") as err:
        get_task("nope")
    for name in LONGLAG_TASKS:
        assert name in str(err.value)


def test_register_refuses_a_second_class_under_a_taken_name(monkeypatch):
    monkeypatch.setattr(base, "TASKS", dict(discover()))

    class Impostor(AddingTask):
        name = "adding"

    with pytest.raises(ValueError, match="'adding' is registered twice"):
        register(Impostor)
    assert base.TASKS["adding"] is AddingTask
    # the same class again is harmless (a module imported twice)
    assert register(AddingTask) is AddingTask

    class Fresh(AddingTask):
        name = "fresh-test-task"

    register(Fresh)
    assert get_task("fresh-test-task") is Fresh


def test_config_from_dict_fills_defaults_and_names_unknown_fields():
    cfg = config_from_dict(AddingConfig, {"seq_len": 5}, "checkpoint x")
    assert cfg == AddingConfig(seq_len=5)
    with pytest.raises(UserError) as err:
        config_from_dict(AddingConfig, {"seq_len": 5, "zeta": 1, "bogus": 2}, "checkpoint x")
    msg = str(err.value)
    assert msg.startswith("checkpoint x:") and "bogus, zeta" in msg and "AddingConfig" in msg


@pytest.mark.parametrize("name", LONGLAG_TASKS)
def test_from_checkpoint_meta_round_trips_the_configs(name):
    cls = get_task(name)
    model_cfg = RecurrentConfig(cell="gru", hidden_size=8, num_layers=2, dropout=0.1)
    task = cls(cls.Config(**NON_DEFAULT[name]), model_cfg)
    meta = json.loads(json.dumps(task.describe()))  # as a checkpoint stores it
    assert meta["task"] == name
    again = cls.from_checkpoint_meta(meta)
    assert type(again) is cls
    assert again.cfg == task.cfg and again.cfg != cls.Config()
    assert again.model_cfg == model_cfg
    assert again.state() == task.state()


def test_from_checkpoint_meta_names_an_unknown_model_option():
    meta = AddingTask(AddingConfig(), RecurrentConfig()).describe()
    meta["model_config"]["wings"] = 2
    with pytest.raises(UserError, match="checkpoint task 'adding'.*wings"):
        AddingTask.from_checkpoint_meta(meta)


def test_configs_are_frozen():
    with pytest.raises(FrozenInstanceError):
        AddingConfig().seq_len = 3


class Pair(NamedTuple):
    a: torch.Tensor
    b: object


def test_to_device_moves_every_tensor_and_keeps_the_structure():
    t = torch.ones(2)
    batch = {
        "pair": Pair(t, [t, (t, 3)]),
        "list": [t, "text"],
        "tuple": (t, None),
        "n": 5,
    }
    meta = torch.device("meta")  # a device every machine has, unlike cuda
    out = to_device(batch, meta)
    assert type(out) is dict and set(out) == set(batch)
    pair = out["pair"]
    assert type(pair) is Pair and pair.a.device.type == "meta"
    assert type(pair.b) is list and pair.b[0].device.type == "meta"
    assert type(pair.b[1]) is tuple and pair.b[1][0].device.type == "meta" and pair.b[1][1] == 3
    assert type(out["list"]) is list and out["list"][0].device.type == "meta"
    assert out["list"][1] == "text"
    assert type(out["tuple"]) is tuple and out["tuple"][1] is None
    assert out["n"] == 5
    assert t.device.type == "cpu"  # the input is left alone


@pytest.mark.parametrize(
    ("n", "size", "expected"),
    [
        (10, 4, [(0, 4), (4, 8), (8, 10)]),
        (8, 4, [(0, 4), (4, 8)]),
        (3, 5, [(0, 3)]),
        (0, 5, []),
    ],
)
def test_chunks_cover_the_range_in_pieces(n, size, expected):
    pieces = list(chunks(n, size))
    assert [(s.start, s.stop) for s in pieces] == expected
    covered = [i for s in pieces for i in range(n)[s]]
    assert covered == list(range(n))
