"""Checkpoints: round trip, atomic replacement, and a clear error for every kind of damage."""

import json
import os
import pickle

import pytest
import torch

from lstmkit.train import checkpoint as ck
from lstmkit.utils.errors import UserError


def _weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"a.weight": torch.randn(3, 4, generator=g), "b.bias": torch.randn(5, generator=g)}


def _save(path, seed=0, **meta):
    return ck.save_checkpoint(path, _weights(seed), {"task": "adding", "step": seed, **meta})


def test_round_trip(tmp_path):
    _save(tmp_path / "c", seed=3, metrics={"mse": 0.5})
    got = ck.load_checkpoint(tmp_path / "c")
    for k, v in _weights(3).items():
        assert torch.equal(got.weights[k], v)
    assert got.meta["format"] == ck.FORMAT and got.meta["step"] == 3
    assert got.meta["metrics"] == {"mse": 0.5}
    assert len(got.meta["sha256"]) == 64
    # ordinary file permissions, not mkstemp's 0600
    assert (tmp_path / "c" / ck.MODEL_FILE).stat().st_mode & 0o044


def test_tied_weights_are_saved(tmp_path):
    w = torch.randn(4, 4)
    ck.save_checkpoint(tmp_path / "c", {"emb": w, "out": w}, {})
    got = ck.load_checkpoint(tmp_path / "c").weights
    assert torch.equal(got["emb"], w) and torch.equal(got["out"], w)


def test_replacement_is_atomic_when_the_write_fails(tmp_path, monkeypatch):
    _save(tmp_path / "c", seed=1)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ck, "save_file", boom)
    with pytest.raises(OSError):
        _save(tmp_path / "c", seed=2)
    assert ck.load_checkpoint(tmp_path / "c").meta["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c"]  # no temporary folder left


def test_crash_between_the_two_renames_is_recovered(tmp_path):
    _save(tmp_path / "run" / "best", seed=4)
    (tmp_path / "run" / "best").rename(tmp_path / "run" / ".best.old-1234abcd")
    assert ck.resolve_checkpoint(tmp_path / "run").name == ".best.old-1234abcd"


def test_the_aside_copy_of_the_preferred_checkpoint_comes_before_the_other(tmp_path):
    # killed between the two renames of last/ (a run with a best/): --resume must continue from
    # the aside last/ (which holds the trainer state), not fall back to best/ (which has none)
    _save(tmp_path / "run" / "best", seed=6)
    _save(tmp_path / "run" / "last", seed=7)
    (tmp_path / "run" / "last").rename(tmp_path / "run" / ".last.old-1234abcd")
    assert ck.resolve_checkpoint(tmp_path / "run", prefer="last").name == ".last.old-1234abcd"
    assert ck.load_checkpoint(tmp_path / "run", prefer="last").meta["step"] == 7
    assert ck.resolve_checkpoint(tmp_path / "run").name == "best"  # best/ itself is in place


def test_run_folder_prefers_best_then_last(tmp_path):
    _save(tmp_path / "run" / "last", seed=5)
    assert ck.load_checkpoint(tmp_path / "run").meta["step"] == 5
    _save(tmp_path / "run" / "best", seed=6)
    assert ck.load_checkpoint(tmp_path / "run").meta["step"] == 6
    assert ck.load_checkpoint(tmp_path / "run", prefer="last").meta["step"] == 5
    assert ck.load_checkpoint(tmp_path / "run" / "last" / ck.MODEL_META).meta["step"] == 5


def _damage(path, how):
    meta, weights = path / ck.MODEL_META, path / ck.MODEL_FILE
    if how == "truncated weights":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    elif how == "flipped byte":
        data = bytearray(weights.read_bytes())
        data[-3] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif how == "garbage json":
        meta.write_text('{"format": "lstmkit-checkpoint",\n "step": }')
    elif how == "foreign json":
        meta.write_text(json.dumps({"model_type": "bert"}))
    elif how == "newer format":
        m = json.loads(meta.read_text())
        meta.write_text(json.dumps({**m, "format_version": 99}))
    elif how == "missing weights":
        weights.unlink()
    elif how == "missing metadata":
        meta.unlink()


@pytest.mark.parametrize(
    "how, message",
    [
        ("truncated weights", "truncated or damaged"),
        ("flipped byte", "SHA-256"),
        ("garbage json", "line 2"),
        ("foreign json", "not an lstmkit checkpoint"),
        ("newer format", "newer lstmkit"),
        ("missing weights", "missing"),
        ("missing metadata", "incomplete checkpoint"),
    ],
)
def test_damaged_checkpoints_give_one_clear_error(tmp_path, how, message):
    _save(tmp_path / "c")
    _damage(tmp_path / "c", how)
    with pytest.raises(UserError, match=message) as e:
        ck.load_checkpoint(tmp_path / "c")
    assert str(tmp_path / "c") in str(e.value)
    assert "\n" not in str(e.value)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(UserError, match="not found"):
        ck.load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no lstmkit checkpoint"):
        ck.load_checkpoint(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UserError, match="not an lstmkit checkpoint"):
        ck.load_checkpoint(tmp_path / "notes.txt")


def test_load_path_never_unpickles(tmp_path, monkeypatch):
    _save(tmp_path / "c")

    def forbidden(*a, **k):
        raise AssertionError("unpickling on the load path")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    ck.load_checkpoint(tmp_path / "c")


def test_load_weights_names_what_does_not_fit(tmp_path):
    model = torch.nn.Linear(4, 3)
    good = {"weight": torch.zeros(3, 4), "bias": torch.zeros(3)}
    ck.load_weights(model, good, tmp_path)
    assert torch.equal(model.weight, torch.zeros(3, 4))
    with pytest.raises(UserError, match=r"shape weight \(5, 4\) vs \(3, 4\)"):
        ck.load_weights(model, {**good, "weight": torch.zeros(5, 4)}, tmp_path)
    with pytest.raises(UserError, match="missing bias"):
        ck.load_weights(model, {"weight": torch.zeros(3, 4)}, tmp_path)
    with pytest.raises(UserError, match="unexpected extra"):
        ck.load_weights(model, {**good, "extra": torch.zeros(1)}, tmp_path)


def test_optimizer_state_round_trip(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, betas=(0.8, 0.95))
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 4)).pow(2).sum().backward()
        opt.step()
    tensors, meta = ck.optimizer_to_tensors(opt)
    ck.save_checkpoint(tmp_path / "c", model.state_dict(), {}, tensors, {"optimizer": meta})
    got = ck.load_checkpoint(tmp_path / "c", trainer=True)
    model2 = torch.nn.Linear(4, 3)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=0.5)
    ck.optimizer_from_tensors(opt2, got.trainer_tensors, got.trainer_meta["optimizer"])
    a, b = opt.state_dict(), opt2.state_dict()
    assert b["param_groups"][0]["lr"] == 0.01 and b["param_groups"][0]["betas"] == (0.8, 0.95)
    for idx in a["state"]:
        for name, v in a["state"][idx].items():
            assert torch.equal(v, b["state"][idx][name])


def test_a_checkpoint_replaced_while_it_is_read_is_read_again(tmp_path, monkeypatch):
    """A live trainer's save renames a new folder into place between a reader's reads of
    model.json and model.safetensors (make fuzz's two-trainer rounds saw "does not match its
    SHA-256"): the reader retries on the folder now in place, and gets the new save whole."""
    _save(tmp_path / "run" / "last", seed=1)
    _save(tmp_path / "next", seed=2)
    real = ck._read_tensors
    swaps = []

    def swap_then_read(folder, *args, **kwargs):
        if not swaps:  # the save lands after model.json was read
            swaps.append(1)
            os.rename(tmp_path / "run" / "last", tmp_path / "old")
            os.rename(tmp_path / "next", tmp_path / "run" / "last")
        return real(folder, *args, **kwargs)

    monkeypatch.setattr(ck, "_read_tensors", swap_then_read)
    got = ck.load_checkpoint(tmp_path / "run")
    assert got.meta["step"] == 2
    for k, v in _weights(2).items():
        assert torch.equal(got.weights[k], v)


def test_a_truly_corrupted_checkpoint_is_still_reported(tmp_path):
    _save(tmp_path / "c", seed=1)
    data = bytearray((tmp_path / "c" / ck.MODEL_FILE).read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "c" / ck.MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(UserError, match="does not match its SHA-256"):
        ck.load_checkpoint(tmp_path / "c")
