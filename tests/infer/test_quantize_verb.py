"""``lstmkit quantize RUN --out OUT``: on the recorded checkpoints of every task, the quantized
checkpoint holds int8 (or bf16) LSTM weights with their scales and says its mode; the commands
load it (predict, evaluate, inspect, translate) and give what the float run gives, up to the
quantization; bad input is one line and status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import lstmkit
from lstmkit.cli.main import cli_main
from lstmkit.kernels.cpu import quant
from lstmkit.nn.quantized import QuantizedLSTM

if not quant.is_available():
    pytest.skip(f"quantized CPU kernel unavailable: {quant.build_error()}", allow_module_level=True)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints"
TASKS = ("adding", "lm", "sentiment", "spoken-words", "translation")


def _quantize(run: Path, out: Path, mode: str, capsys, *extra: str) -> None:
    capsys.readouterr()
    status = cli_main(["quantize", str(run), "--out", str(out), "--mode", mode, *extra])
    outs = capsys.readouterr()
    assert status == 0, outs.err
    assert outs.out.strip() == str(out) and f"wrote {out} ({mode}:" in outs.err


def _json_lines(text: str) -> list[dict]:
    return [json.loads(x) for x in text.splitlines() if x.strip()]


@pytest.mark.parametrize("mode", quant.MODES)
@pytest.mark.parametrize("task", TASKS)
def test_quantized_checkpoint_loads_and_predicts_like_the_float_run(task, mode, tmp_path, capsys):
    run, out = FIXTURES / task, tmp_path / f"{task}-{mode}"
    _quantize(run, out, mode, capsys)
    meta = json.loads((out / "model.json").read_text())
    assert (
        meta["quantized"]["mode"] == mode
        and meta["task"] == json.loads((run / "model.json").read_text())["task"]
    )
    # int8 weights: int8 activations by default; bf16 has float ones only
    assert meta["quantized"]["activations"] == ("int8" if mode == "int8" else "float")
    want = torch.int8 if mode == "int8" else torch.bfloat16
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
        hh = [k for k in keys if ".weight_hh_l0" in k or k.startswith("weight_hh_l0")]
        assert hh and all(f.get_tensor(k).dtype == want for k in hh), keys
        assert any(".scale_hh_l0" in k for k in keys) == (mode == "int8"), keys
    qrun, frun = lstmkit.load(out, device="cpu"), lstmkit.load(run, device="cpu")
    assert any(isinstance(m, QuantizedLSTM) for m in qrun.model.modules())
    enc = next(m for m in qrun.model.modules() if isinstance(m, QuantizedLSTM))
    fenc = next(m for m in frun.model.modules() if isinstance(m, torch.nn.LSTM))
    for name, w in fenc.named_parameters():  # the stored weights are the float run's, rounded
        if name.startswith("weight_hh"):
            back = quant.dequantize_weight(
                getattr(enc, name), getattr(enc, "scale_hh" + name[9:], None)
            )
            step = w.abs().amax(1, keepdim=True) / 254 if mode == "int8" else w.abs() * 2**-8
            assert bool(((back - w).abs() <= step + 1e-7).all()), name
    assert enc.activations == meta["quantized"]["activations"]
    if task == "spoken-words":  # no built-in examples: the encoder against its float form
        x = torch.randn(2, 5, enc.input_size)
        weight_only = QuantizedLSTM(**(enc.config() | {"activations": "float"}))
        weight_only.load_state_dict(enc.state_dict())
        want = enc.to_float()(x)[0]
        # weight-only: the float LSTM with the rounded weights, up to float rounding
        torch.testing.assert_close(weight_only(x)[0], want, atol=5e-5, rtol=5e-5)
        # int8 activations move each product by about as much as the weights' rounding: the
        # few hundredths the predictions below allow
        assert (enc(x)[0] - want).abs().max().item() < 0.05
        return
    capsys.readouterr()
    assert cli_main(["predict", str(out), "--device", "cpu"]) == 0
    got = _json_lines(capsys.readouterr().out)
    assert cli_main(["predict", str(run), "--device", "cpu"]) == 0
    ref = _json_lines(capsys.readouterr().out)
    assert len(got) == len(ref) > 0
    # These recorded models are tiny and barely trained: the quantized outputs are compared
    # with the float ones (int8 moves each weight by at most half its row's step, 1/254 of
    # the row's largest; a few hundredths on these outputs), not with the targets.
    for g, r in zip(got, ref, strict=True):
        if "prediction" in r:
            assert abs(g["prediction"] - r["prediction"]) < 0.05
        if "probabilities" in r:
            for k, p in r["probabilities"].items():
                assert abs(g["probabilities"][k] - p) < 0.05
        if "loss" in r:
            assert abs(g["loss"] - r["loss"]) < 0.05 * abs(r["loss"])


def test_evaluate_inspect_translate_on_a_quantized_run(tmp_path, capsys):
    out = tmp_path / "tr8"
    _quantize(FIXTURES / "translation", out, "int8", capsys)
    assert cli_main(["translate", str(out), "ein hund", "--device", "cpu"]) == 0
    capsys.readouterr()
    out = tmp_path / "add8"
    _quantize(FIXTURES / "adding", out, "int8", capsys)
    assert cli_main(["evaluate", str(out), "--device", "cpu", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["test"]
    assert cli_main(["evaluate", str(FIXTURES / "adding"), "--device", "cpu", "--json"]) == 0
    want = json.loads(capsys.readouterr().out)["test"]
    assert abs(got["mse"] - want["mse"]) < 0.02 * want["mse"]
    assert cli_main(["inspect", str(out), "--device", "cpu", "--out", str(tmp_path / "png")]) == 0
    pngs = [Path(p) for p in capsys.readouterr().out.split()]
    assert pngs and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)


def _one_error(capsys, argv: list[str], match: str) -> None:
    capsys.readouterr()
    assert cli_main(argv) == 2
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(lines) == 1 and match in lines[0], lines


def test_bad_input_is_one_line_and_status_2(tmp_path, capsys):
    run = str(FIXTURES / "adding")
    _one_error(capsys, ["quantize", run], "--out: give the checkpoint folder")
    _one_error(capsys, ["quantize", run, "--out", str(tmp_path / "x"), "--mode", "int4"], "--mode")
    out = tmp_path / "q"
    _quantize(FIXTURES / "adding", out, "int8", capsys)
    _one_error(capsys, ["quantize", run, "--out", str(out)], "exists; pass --overwrite")
    _one_error(capsys, ["quantize", str(out), "--out", str(tmp_path / "qq")], "quantized already")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    _one_error(
        capsys,
        ["quantize", run, "--out", str(tmp_path / "mine"), "--overwrite"],
        "not an lstmkit checkpoint folder",
    )
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    # the quantized checkpoint keeps the integrity checks: a flipped byte is refused
    data = bytearray((out / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (out / "model.safetensors").write_bytes(bytes(data))
    _one_error(capsys, ["predict", str(out), "--device", "cpu"], "does not match its SHA-256")


def test_activations_option_round_trips_and_old_checkpoints_load_as_float(tmp_path, capsys):
    from lstmkit.infer.load import _as_stored
    from lstmkit.utils.errors import UserError

    run = FIXTURES / "adding"
    out = tmp_path / "w8"
    _quantize(run, out, "int8", capsys, "--activations", "float")
    assert json.loads((out / "model.json").read_text())["quantized"]["activations"] == "float"
    qrun = lstmkit.load(out, device="cpu")
    enc = next(m for m in qrun.model.modules() if isinstance(m, QuantizedLSTM))
    assert enc.activations == "float"
    # the same run quantized with int8 activations loads with them, and computes otherwise
    out8 = tmp_path / "a8"
    _quantize(run, out8, "int8", capsys)
    enc8 = next(
        m for m in lstmkit.load(out8, device="cpu").model.modules() if isinstance(m, QuantizedLSTM)
    )
    assert enc8.activations == "int8"
    x = torch.randn(2, 5, enc.input_size)
    assert not torch.equal(enc(x)[0], enc8(x)[0])
    torch.testing.assert_close(enc(x)[0], enc8(x)[0], atol=0.05, rtol=0)
    # a model.json written before the option: {"mode": "int8"} alone means weight-only
    model = torch.nn.Sequential(torch.nn.LSTM(3, 4))
    old = _as_stored(model, {"quantized": {"mode": "int8", "from": "x"}})
    assert old[0].activations == "float"
    new = _as_stored(
        torch.nn.Sequential(torch.nn.LSTM(3, 4)),
        {"quantized": {"mode": "int8", "activations": "int8"}},
    )
    assert new[0].activations == "int8"
    with pytest.raises(UserError, match="quantized.activations must be int8 or float"):
        _as_stored(model, {"quantized": {"mode": "bf16", "activations": "int8"}})


def test_bad_activations_are_one_line(tmp_path, capsys):
    run = str(FIXTURES / "adding")
    _one_error(
        capsys,
        ["quantize", run, "--out", str(tmp_path / "b"), "--mode", "bf16", "--activations", "int8"],
        "--activations int8 needs --mode int8",
    )
    _one_error(
        capsys,
        ["quantize", run, "--out", str(tmp_path / "c"), "--activations", "u8"],
        "activations",
    )


def test_out_names_the_file_system_refuses_are_one_line(tmp_path, capsys):
    """A name too long for the file system, or a folder under a file: status 2, one line,
    nothing written (both raised OSError before)."""
    run = str(FIXTURES / "adding")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out, message in (
        (str(tmp_path / ("q" * 300)), "File name too long"),
        (str(blocker / "sub"), "is a file, not a folder"),
    ):
        capsys.readouterr()
        assert cli_main(["quantize", run, "--out", out]) == 2
        err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
        assert len(err) == 1 and err[0].startswith("lstmkit: error: --out: "), err
        assert message in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_out_never_overwrites_the_source_runs_checkpoints(tmp_path, capsys):
    """--out RUN/best --overwrite replaced the run's own best checkpoint (found by the fuzz)."""
    import shutil

    run = tmp_path / "run"  # a run folder: best/ and last/ checkpoints
    for name in ("best", "last"):
        shutil.copytree(FIXTURES / "adding", run / name)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for out in (run / "best", run / "last", run, run / "best" / "sub"):
        capsys.readouterr()
        assert cli_main(["quantize", str(run), "--out", str(out), "--overwrite"]) == 2
        err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
        assert len(err) == 1 and err[0].startswith("lstmkit: error: --out"), err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
