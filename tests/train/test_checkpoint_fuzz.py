"""Fuzzing the checkpoint loader: whatever happens to the files, a load gives the saved weights
exactly or one UserError line, never another exception and never a hang."""

import json
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstmkit.infer.load import load_trained
from lstmkit.models.encoder import RecurrentConfig
from lstmkit.tasks.longlag import AddingConfig, AddingTask
from lstmkit.train import checkpoint as ck
from lstmkit.utils.errors import UserError

FILES = [ck.MODEL_FILE, ck.MODEL_META, ck.TRAINER_FILE, ck.TRAINER_META]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def saved():
    with tempfile.TemporaryDirectory() as d:
        torch.manual_seed(0)
        task = AddingTask(AddingConfig(), RecurrentConfig(hidden_size=3))
        model = task.build_model()
        opt = torch.optim.AdamW(model.parameters())
        tensors, opt_meta = ck.optimizer_to_tensors(opt)
        path = Path(d) / "c"
        ck.save_checkpoint(
            path,
            model.state_dict(),
            {**task.describe(), "step": 1},
            {**tensors, "rng": torch.get_rng_state()},
            {"optimizer": opt_meta},
        )
        load_trained(path, torch.device("cpu"))  # torch's lazy imports, outside the deadline
        yield path, {k: v.clone() for k, v in model.state_dict().items()}


def _expired(*_):
    raise TimeoutError("a checkpoint load took more than 5 s")


def _damage(folder: Path, data, kind: str) -> None:
    name = data.draw(st.sampled_from(FILES))
    path = folder / name
    raw = bytearray(path.read_bytes())
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif kind == "random file":
        raw = bytearray(data.draw(st.binary(max_size=300)))
        if data.draw(st.booleans()):  # a plausible header length in front
            raw = bytearray(len(raw).to_bytes(8, "little")) + raw
    elif kind == "json value":
        path = folder / ck.MODEL_META
        meta = json.loads(path.read_text())
        section = data.draw(st.sampled_from(["model_config", "task_config", "top"]))
        target = meta if section == "top" else meta[section]
        key = data.draw(st.sampled_from(sorted(target)))
        target[key] = data.draw(JSON_VALUES)
        if data.draw(st.booleans()):  # consistent checksums: reach the checks behind them
            meta["meta_sha256"] = ck._content_sha256(meta)
        raw = bytearray(json.dumps(meta).encode())
    path.write_bytes(bytes(raw))


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), kind=st.sampled_from(["flip", "truncate", "random file", "json value"]))
def test_damaged_checkpoints_load_exactly_or_fail_with_a_user_error(saved, data, kind):
    original, weights = saved
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "c"
        shutil.copytree(original, folder)
        _damage(folder, data, kind)
        old = signal.signal(signal.SIGALRM, _expired)
        signal.alarm(5)
        try:
            _, model, _ = load_trained(folder, torch.device("cpu"))
            ck.load_checkpoint(folder, trainer=True)
        except UserError as e:
            assert "\n" not in str(e)
            return
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
        got = model.state_dict()
        assert set(got) == set(weights)
        for k, v in weights.items():
            assert torch.equal(got[k], v), k
