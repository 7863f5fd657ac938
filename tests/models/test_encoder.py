"""The task models: the encoder config mirrors LSTMConfig, the encoder factory, and the
read-out at each sequence's last valid step."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, fields

import pytest
import torch
from torch import nn

import lstmkit
from lstmkit.models.encoder import CELLS, RecurrentConfig, SequenceModel, build_encoder
from lstmkit.nn import LSTMConfig
from lstmkit.utils.errors import UserError

TASK_OWNED = {"input_size", "batch_first", "bias"}


# ---------------------------------------------------------------------------------------------
# RecurrentConfig
# ---------------------------------------------------------------------------------------------


def test_recurrent_config_has_every_lstm_option_but_the_task_owned_ones():
    lstm = {f.name: f for f in fields(LSTMConfig)}
    rec = {f.name: f for f in fields(RecurrentConfig)}
    assert set(rec) == (set(lstm) - TASK_OWNED) | {"cell"}
    for name, f in rec.items():
        if name == "cell":
            continue
        assert f.type == lstm[name].type, name
        assert f.metadata == lstm[name].metadata, name
        assert f.metadata["help"], name
        if name not in ("hidden_size", "forget_bias"):
            assert f.default == lstm[name].default, name


def test_recurrent_config_defaults_and_cell_field():
    cfg = RecurrentConfig()
    assert cfg.hidden_size == 128 and cfg.forget_bias == 1.0 and cfg.cell == "lstm"
    cell = next(f for f in fields(RecurrentConfig) if f.name == "cell")
    assert tuple(cell.metadata["choices"]) == CELLS == ("lstm", "rnn", "gru")
    assert "lstm" in cell.metadata["help"]
    with pytest.raises(FrozenInstanceError):
        cfg.hidden_size = 3


# ---------------------------------------------------------------------------------------------
# build_encoder
# ---------------------------------------------------------------------------------------------


def test_build_encoder_lstm_passes_every_option_through():
    cfg = RecurrentConfig(
        hidden_size=12,
        num_layers=2,
        bidirectional=True,
        proj_size=5,
        layer_norm=True,
        peephole=True,
        zoneout_h=0.1,
        forget_bias=2.0,
        backend="python",
    )
    enc = build_encoder(cfg, input_size=3)
    assert isinstance(enc, lstmkit.LSTM)
    assert enc.batch_first and enc.bias and enc.input_size == 3
    want = {f.name: getattr(cfg, f.name) for f in fields(RecurrentConfig) if f.name != "cell"}
    got = {k: getattr(enc.config, k) for k in want}
    assert got == want
    assert enc.layer_norm is True and enc.proj_size == 5
    # the forget-gate bias really is initialised to forget_bias (b_ih + b_hh over the f block)
    f_bias = (enc.bias_ih_l0 + enc.bias_hh_l0)[12:24]
    assert torch.allclose(f_bias, torch.full((12,), 2.0))


@pytest.mark.parametrize(("cell", "cls"), [("rnn", nn.RNN), ("gru", nn.GRU)])
def test_build_encoder_baselines_are_torch_modules(cell, cls):
    cfg = RecurrentConfig(cell=cell, hidden_size=6, num_layers=2, dropout=0.25, bidirectional=True)
    enc = build_encoder(cfg, input_size=3)
    assert type(enc) is cls
    assert (enc.input_size, enc.hidden_size, enc.num_layers) == (3, 6, 2)
    assert enc.batch_first and enc.bidirectional and enc.dropout == 0.25
    if cell == "rnn":
        assert enc.nonlinearity == "tanh"


@pytest.mark.parametrize(
    ("options", "flags"),
    [
        ({"layer_norm": True}, "--layer-norm"),
        ({"proj_size": 2}, "--proj-size"),
        ({"peephole": True, "zoneout_c": 0.1}, "--peephole, --zoneout-c"),
        ({"forget_bias": 0.0}, "--forget-bias"),
    ],
)
@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_build_encoder_refuses_lstm_options_for_the_baselines(cell, options, flags):
    with pytest.raises(UserError) as err:
        build_encoder(RecurrentConfig(cell=cell, hidden_size=4, **options), input_size=2)
    assert str(err.value) == f"{flags}: LSTM options, not available with --cell {cell}"


def test_build_encoder_unknown_cell_and_bad_lstm_option_are_user_errors():
    with pytest.raises(UserError, match="--cell must be one of lstm, rnn, gru, got 'tcn'"):
        build_encoder(RecurrentConfig(cell="tcn"), input_size=2)
    with pytest.raises(UserError, match="proj_size must be smaller than hidden_size"):
        build_encoder(RecurrentConfig(hidden_size=4, proj_size=4), input_size=2)


# ---------------------------------------------------------------------------------------------
# SequenceModel
# ---------------------------------------------------------------------------------------------

ENCODERS = [
    pytest.param({}, id="lstm"),
    pytest.param({"num_layers": 2, "proj_size": 3}, id="lstm-2layer-proj"),
    pytest.param({"layer_norm": True}, id="lstm-layer-norm"),
    pytest.param({"cell": "gru"}, id="gru"),
    pytest.param({"cell": "rnn"}, id="rnn"),
]


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("options", ENCODERS)
def test_last_step_readout_equals_each_sequence_run_alone(options, bidirectional):
    cfg = RecurrentConfig(hidden_size=5, bidirectional=bidirectional, **options)
    model = SequenceModel(cfg, input_size=3, output_size=2).eval()
    lengths = torch.tensor([4, 7, 1, 5])
    # junk past each length: it must not reach the read-out in either direction
    x = torch.randn(4, 7, 3) * 3
    with torch.no_grad():
        out = model(x, lengths)
        assert out.shape == (4, 2)
        for k, n in enumerate(lengths.tolist()):
            alone = model(x[k : k + 1, :n])
            torch.testing.assert_close(out[k], alone[0], rtol=1e-5, atol=1e-6)
        # without lengths the read-out is the last padded step, which the junk does change
        assert not torch.allclose(model(x)[2], out[2])


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_per_step_output_shape_and_values(bidirectional):
    cfg = RecurrentConfig(hidden_size=5, bidirectional=bidirectional)
    model = SequenceModel(cfg, input_size=3, output_size=4, per_step=True).eval()
    x = torch.randn(2, 6, 3)
    with torch.no_grad():
        out = model(x)
        y, _ = model.encoder(x)
        assert out.shape == (2, 6, 4)
        torch.testing.assert_close(out, model.head(y))


@pytest.mark.parametrize(("bidirectional", "size"), [(False, 3), (True, 6)])
def test_projection_sets_the_readout_input_size(bidirectional, size):
    cfg = RecurrentConfig(hidden_size=8, proj_size=3, bidirectional=bidirectional)
    model = SequenceModel(cfg, input_size=2, output_size=4)
    assert model.head.in_features == size
    out = model(torch.randn(2, 5, 2), torch.tensor([5, 2]))
    assert out.shape == (2, 4)
