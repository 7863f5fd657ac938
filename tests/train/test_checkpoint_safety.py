"""Checkpoints that cannot hurt: only regular files inside the folder are read, with bounded
sizes; every file's checksum must be present and match; the configuration is checked against sane
types and against the weight file's header before anything is built or allocated."""

import contextlib
import hashlib
import json
import os
import signal
import time

import pytest
import torch
from safetensors.torch import save_file

from lstmkit.infer.load import load_trained
from lstmkit.models.encoder import RecurrentConfig
from lstmkit.tasks.lm import LanguageModelTask
from lstmkit.tasks.longlag import AddingConfig, AddingTask
from lstmkit.tasks.sentiment import SentimentTask
from lstmkit.train import checkpoint as ck
from lstmkit.utils.errors import UserError

CPU = torch.device("cpu")


@contextlib.contextmanager
def deadline(seconds=5):
    """Fail instead of hanging (a FIFO, /dev/zero) on the code before the fix."""

    def expired(*_):
        raise TimeoutError(f"still loading after {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _task(hidden=4):
    return AddingTask(AddingConfig(), RecurrentConfig(hidden_size=hidden))


def _trained(path, hidden=4, trainer=False):
    """A real (untrained) adding-task checkpoint; with trainer state when ``trainer``."""
    torch.manual_seed(0)
    task = _task(hidden)
    model = task.build_model()
    extra = {}
    if trainer:
        opt = torch.optim.AdamW(model.parameters())
        tensors, opt_meta = ck.optimizer_to_tensors(opt)
        extra = {
            "trainer_tensors": {**tensors, "rng.cpu": torch.get_rng_state()},
            "trainer_meta": {"optimizer": opt_meta, "state": {"step": 3}},
        }
    ck.save_checkpoint(path, model.state_dict(), {**task.describe(), "step": 3}, **extra)
    return model


def _meta(path):
    return json.loads((path / ck.MODEL_META).read_text())


def _reseal(path, meta=None, weights=None):
    """Rewrite model.json (and the weights) with checksums that match: a consistent checkpoint
    whose content is wrong, to reach the checks past the checksums."""
    meta = _meta(path) if meta is None else meta
    if weights is not None:
        save_file(weights, str(path / ck.MODEL_FILE))
    meta["sha256"] = hashlib.sha256((path / ck.MODEL_FILE).read_bytes()).hexdigest()
    meta["meta_sha256"] = ck._content_sha256(meta)
    (path / ck.MODEL_META).write_text(json.dumps(meta))


def _one_line_error(call, *patterns):
    with deadline():
        with pytest.raises(UserError) as e:
            call()
    msg = str(e.value)
    assert "\n" not in msg, msg
    for p in patterns:
        assert p in msg, msg
    return msg


# ----------------------------------------------------------------------------- 1. files


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
@pytest.mark.parametrize("name", [ck.MODEL_META, ck.MODEL_FILE])
def test_a_link_to_a_device_is_refused_without_reading_it(tmp_path, name, device):
    c = tmp_path / "c"
    _trained(c)
    (c / name).unlink()
    (c / name).symlink_to(device)
    _one_line_error(lambda: ck.load_checkpoint(c), str(c / name))


def test_a_fifo_is_never_opened(tmp_path):
    c = tmp_path / "c"
    _trained(c)
    (c / ck.MODEL_META).unlink()
    os.mkfifo(c / ck.MODEL_META)
    _one_line_error(lambda: ck.load_checkpoint(c), str(c / ck.MODEL_META), "FIFO")
    _one_line_error(lambda: ck.load_checkpoint(c / ck.MODEL_META), "FIFO")


def test_links_may_stay_inside_the_folder_but_not_leave_it(tmp_path):
    c = tmp_path / "c"
    _trained(c)
    (c / ck.MODEL_FILE).rename(c / "weights.bin")
    (c / ck.MODEL_FILE).symlink_to("weights.bin")
    assert ck.load_checkpoint(c).meta["step"] == 3
    (c / "weights.bin").rename(tmp_path / "outside.bin")
    (c / ck.MODEL_FILE).unlink()
    (c / ck.MODEL_FILE).symlink_to(tmp_path / "outside.bin")
    _one_line_error(lambda: ck.load_checkpoint(c), "symbolic link out of its checkpoint folder")


def test_oversized_json_is_refused_before_reading(tmp_path):
    c = tmp_path / "c"
    _trained(c)
    with open(c / ck.MODEL_META, "r+b") as f:  # sparse: nothing written to disk
        f.truncate(ck.MAX_JSON_BYTES + 1)
    _one_line_error(lambda: ck.load_checkpoint(c), str(c / ck.MODEL_META), "more than")


def test_a_weight_file_longer_than_its_header_says_is_refused(tmp_path):
    c = tmp_path / "c"
    _trained(c)
    with open(c / ck.MODEL_FILE, "ab") as f:
        f.write(b"\0" * 1000)
    _one_line_error(lambda: ck.load_checkpoint(c), "declares", "holds")


# ----------------------------------------------------------------------------- 2. configs


@pytest.mark.parametrize(
    "field, value, expect",
    [
        ("num_layers", 1_000_000_000, "more tensors"),
        ("hidden_size", 2**200, "out of range"),
        ("hidden_size", 2**20, "more tensors or values"),
        ("hidden_size", 2**40, "cannot build the model"),
        ("hidden_size", "big", "expected an integer"),
        ("hidden_size", 4.0, "expected an integer"),
        ("bidirectional", 1, "expected true or false"),
        ("hidden_size", -3, "hidden_size"),
        ("cell", "lstm9", "--cell"),
    ],
)
def test_insane_model_configs_fail_fast_with_one_line(tmp_path, field, value, expect):
    c = tmp_path / "c"
    _trained(c)
    meta = _meta(c)
    meta["model_config"][field] = value
    _reseal(c, meta)
    load_trained(_trained(tmp_path / "warm") and tmp_path / "warm", CPU)  # torch's lazy imports
    start = time.perf_counter()
    _one_line_error(lambda: load_trained(c, CPU), expect)
    assert time.perf_counter() - start < 3


def test_config_that_does_not_match_the_weights_is_refused_before_loading(tmp_path):
    c = tmp_path / "c"
    _trained(c, hidden=4)
    meta = _meta(c)
    meta["model_config"]["hidden_size"] = 6
    _reseal(c, meta)
    _one_line_error(
        lambda: load_trained(c, CPU), "does not fit the model", "encoder.weight_hh_l0 (16, 4)"
    )


@pytest.mark.parametrize(
    "edit, expect",
    [
        (lambda m: m.update(format_version="abc"), "format_version"),
        (lambda m: m.update(task_config=[1, 2]), "must be a JSON object"),
        (lambda m: m.update(task_state="x"), "task_state must be a JSON object"),
        (lambda m: m.update(task=7), "names no task"),
        (lambda m: m.update(task="nosuch"), "unknown task"),
        (lambda m: m["task_config"].update(seq_len=[5]), "seq_len"),
    ],
)
def test_malformed_values_are_one_line_errors(tmp_path, edit, expect):
    c = tmp_path / "c"
    _trained(c)
    meta = _meta(c)
    edit(meta)
    _reseal(c, meta)
    _one_line_error(lambda: load_trained(c, CPU), expect)


@pytest.mark.parametrize(
    "content, expect",
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"format": "lstmkit-checkpoint", "x": "\xff\xfe"}', "not UTF-8"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"a": ' + b"1" * 5000 + b"}", "model.json"),
    ],
)
def test_unparseable_model_json_is_one_line(tmp_path, content, expect):
    c = tmp_path / "c"
    _trained(c)
    (c / ck.MODEL_META).write_bytes(content)
    _one_line_error(lambda: ck.load_checkpoint(c), expect, str(c / ck.MODEL_META))


def test_missing_vocabulary_or_labels_are_named():
    lm_meta = {"task_config": {"train": "some.txt"}, "model_config": {}, "task_state": {}}
    with pytest.raises(UserError, match="task_state has no tokenizer"):
        LanguageModelTask.from_checkpoint_meta({**lm_meta, "task": "lm"})
    tok = {"kind": "char", "lowercase": False, "tokens": ["<pad>", "<unk>", "a"]}
    meta = {"task": "sentiment", "task_config": {}, "model_config": {}}
    with pytest.raises(UserError, match="task_state has no labels"):
        SentimentTask.from_checkpoint_meta({**meta, "task_state": {"tokenizer": tok}})
    with pytest.raises(UserError, match="tokenizer is damaged"):
        SentimentTask.from_checkpoint_meta(
            {**meta, "task_state": {"tokenizer": {"kind": 3}, "labels": ["a"]}}
        )
    with pytest.raises(UserError, match="unusable task_state") as e:
        SentimentTask.from_checkpoint_meta({**meta, "task_state": {"tokenizer": tok, "labels": 5}})
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- 3. integrity


@pytest.mark.parametrize("sha", [None, "", "0" * 64, "xyz"])
def test_the_weights_checksum_is_mandatory(tmp_path, sha):
    c = tmp_path / "c"
    _trained(c)
    meta = _meta(c)
    if sha is None:
        del meta["sha256"]
    else:
        meta["sha256"] = sha
    meta["meta_sha256"] = ck._content_sha256(meta)
    (c / ck.MODEL_META).write_text(json.dumps(meta))
    data = bytearray((c / ck.MODEL_FILE).read_bytes())
    data[-3] ^= 0xFF
    (c / ck.MODEL_FILE).write_bytes(bytes(data))
    _one_line_error(lambda: ck.load_checkpoint(c), "sha256" if not sha else "SHA-256")


def test_an_edited_model_json_is_caught(tmp_path):
    c = tmp_path / "c"
    _trained(c)
    text = (c / ck.MODEL_META).read_text()
    (c / ck.MODEL_META).write_text(text.replace('"hidden_size": 4', '"hidden_size": 5'))
    _one_line_error(lambda: ck.load_checkpoint(c), "model.json does not match its SHA-256")
    meta = _meta(c)
    del meta["meta_sha256"]
    (c / ck.MODEL_META).write_text(json.dumps(meta))
    _one_line_error(lambda: ck.load_checkpoint(c), "no checksum 'meta_sha256'")


@pytest.mark.parametrize("name", [ck.TRAINER_FILE, ck.TRAINER_META])
def test_trainer_state_is_checksummed(tmp_path, name):
    c = tmp_path / "c"
    _trained(c, trainer=True)
    got = ck.load_checkpoint(c, trainer=True)
    assert got.trainer_meta["state"] == {"step": 3}
    data = bytearray((c / name).read_bytes())
    data[len(data) // 2 if name == ck.TRAINER_META else -2] ^= 0x01
    (c / name).write_bytes(bytes(data))
    ck.load_checkpoint(c)  # the weights alone are still fine
    _one_line_error(lambda: ck.load_checkpoint(c, trainer=True), str(c / name), "SHA-256")
    meta = _meta(c)
    del meta["checksums"][name]
    _reseal(c, meta)
    _one_line_error(lambda: ck.load_checkpoint(c, trainer=True), f"no checksum '{name}'")


def test_int32_weights_are_refused(tmp_path):
    c = tmp_path / "c"
    model = _trained(c)
    weights = {k: v.to(torch.int32) for k, v in model.state_dict().items()}
    _reseal(c, weights=weights)
    _one_line_error(lambda: load_trained(c, CPU), "int32 vs (16, 2) float32")
    with pytest.raises(UserError, match="dtype .*int32 vs float32"):
        ck.load_weights(model, weights, c)


def test_nonfinite_weights_are_refused_unless_allowed(tmp_path):
    c = tmp_path / "c"
    model = _trained(c)
    weights = dict(model.state_dict())
    weights["head.bias"] = torch.tensor([float("nan")])
    _reseal(c, weights=weights)
    _one_line_error(lambda: load_trained(c, CPU), "'head.bias'", "NaN", "allow_nonfinite")
    _, loaded, _ = load_trained(c, CPU, allow_nonfinite=True)
    assert torch.isnan(loaded.head.bias).all()


def _write_old_layout(path, weights, meta, trainer_tensors=None, trainer_meta=None):
    """A checkpoint exactly as lstmkit wrote it before format 2: one checksum, of the weights."""
    path.mkdir(parents=True)
    save_file(weights, str(path / ck.MODEL_FILE))
    sha = hashlib.sha256((path / ck.MODEL_FILE).read_bytes()).hexdigest()
    full = {
        "format": ck.FORMAT,
        "format_version": 1,
        "lstmkit_version": "0.1.0",
        **meta,
        "sha256": sha,
    }
    (path / ck.MODEL_META).write_text(json.dumps(full, indent=2) + "\n")
    if trainer_tensors is not None:
        save_file(trainer_tensors, str(path / ck.TRAINER_FILE))
        (path / ck.TRAINER_META).write_text(json.dumps(trainer_meta))


def test_checkpoints_of_the_previous_format_still_load(tmp_path):
    torch.manual_seed(1)
    task = _task()
    model = task.build_model()
    c = tmp_path / "old"
    meta = json.loads(json.dumps({**task.describe(), "step": 7}))
    _write_old_layout(c, model.state_dict(), meta, {"x": torch.zeros(2)}, {"state": {}})
    _, loaded, ckpt = load_trained(c, CPU)
    assert ckpt.meta["step"] == 7
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    _one_line_error(lambda: ck.load_checkpoint(c, trainer=True), "cannot be resumed")
    data = bytearray((c / ck.MODEL_FILE).read_bytes())
    data[-3] ^= 0xFF
    (c / ck.MODEL_FILE).write_bytes(bytes(data))
    _one_line_error(lambda: ck.load_checkpoint(c), "SHA-256")


def test_a_loaded_model_predicts_as_the_saved_one(tmp_path):
    c = tmp_path / "c"
    model = _trained(c).eval()
    _, loaded, _ = load_trained(c, CPU)
    x = torch.randn(3, 7, 2)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
