"""The reference step and scan against torch's own LSTM cell."""

import pytest
import torch

from lstmkit.reference.lstm import (
    GATE_ORDER,
    CellOptions,
    RecurrenceInputs,
    lstm_gates_pre,
    lstm_recurrence,
    lstm_recurrent_step,
    recorded_gates,
    recurrence_forward,
)
from lstmkit.reference.variants import apply_zoneout, layer_norm

DT = torch.float64


def test_gate_order_matches_torch_docs():
    assert GATE_ORDER == ("i", "f", "g", "o")


def test_step_matches_torch_lstm_cell():
    cell = torch.nn.LSTMCell(5, 7).double()
    x, h, c = torch.randn(3, 5, dtype=DT), torch.randn(3, 7, dtype=DT), torch.randn(3, 7, dtype=DT)
    h_ref, c_ref = cell(x, (h, c))
    xg = x @ cell.weight_ih.T + cell.bias_ih
    st = lstm_recurrent_step(RecurrenceInputs(xg, h, c, cell.weight_hh, cell.bias_hh))
    torch.testing.assert_close(st.h, h_ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(st.c, c_ref, atol=1e-12, rtol=0)
    gates = lstm_gates_pre(x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    i, f, g, o = gates.chunk(4, 1)
    torch.testing.assert_close(st.f, torch.sigmoid(f))
    torch.testing.assert_close(st.g, torch.tanh(g))


def test_scan_matches_torch_lstm_with_projection():
    lstm = torch.nn.LSTM(4, 6, proj_size=3).double()
    x = torch.randn(9, 2, 4, dtype=DT)
    out_ref, (h_ref, c_ref) = lstm(x)
    xg = x @ lstm.weight_ih_l0.T + lstm.bias_ih_l0
    h0, c0 = torch.zeros(2, 3, dtype=DT), torch.zeros(2, 6, dtype=DT)
    out, h, c = lstm_recurrence(
        RecurrenceInputs(xg, h0, c0, lstm.weight_hh_l0, lstm.bias_hh_l0, lstm.weight_hr_l0)
    )
    torch.testing.assert_close(out, out_ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(h, h_ref[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(c, c_ref[0], atol=1e-12, rtol=0)


def test_coupled_and_no_forget_gate_values():
    xg = torch.randn(1, 2, 12, dtype=DT)
    w = torch.randn(12, 3, dtype=DT)
    h0, c0 = torch.randn(2, 3, dtype=DT), torch.randn(2, 3, dtype=DT)

    def record(opts):
        inputs = RecurrenceInputs(xg, h0, c0, w)
        out, _, c, saved = recurrence_forward(inputs, opts=opts, save=True)
        return c, recorded_gates(inputs, saved, out)

    c, rec = record(CellOptions(coupled=True))
    torch.testing.assert_close(rec["f"][0], 1 - rec["i"][0])
    torch.testing.assert_close(c, (1 - rec["i"][0]) * c0 + rec["i"][0] * rec["g"][0])
    c, rec = record(CellOptions(forget_gate=False))
    torch.testing.assert_close(c, c0 + rec["i"][0] * rec["g"][0])


def test_layer_norm_matches_torch():
    x = torch.randn(4, 10, dtype=DT)
    w, b = torch.randn(10, dtype=DT), torch.randn(10, dtype=DT)
    ref = torch.nn.functional.layer_norm(x, (10,), w, b, eps=1e-5)
    torch.testing.assert_close(layer_norm(x, w, b, 1e-5), ref)


def test_zoneout_eval_is_expectation_of_train():
    new, prev = torch.randn(2000, 8, dtype=DT), torch.randn(2000, 8, dtype=DT)
    rate = 0.3
    mask = torch.bernoulli(torch.full_like(new, rate))
    train = apply_zoneout(new, prev, mask)
    ev = apply_zoneout(new, prev, torch.full_like(new, rate))
    # train picks prev with probability rate: its mean over many draws is the eval value
    assert set(torch.unique(mask).tolist()) <= {0.0, 1.0}
    assert ((train == prev) | (train == new)).all()
    torch.testing.assert_close(ev, rate * prev + (1 - rate) * new)
    assert abs(mask.mean().item() - rate) < 0.02


@pytest.mark.parametrize("reverse", [False, True])
def test_packed_rows_keep_state(reverse):
    T, B, H = 5, 3, 2
    xg = torch.randn(T, B, 4 * H, dtype=DT)
    w = torch.randn(4 * H, H, dtype=DT)
    h0, c0 = torch.randn(B, H, dtype=DT), torch.randn(B, H, dtype=DT)
    bs = torch.tensor([3, 3, 2, 1, 1])
    out, h, c = lstm_recurrence(RecurrenceInputs(xg, h0, c0, w), batch_sizes=bs, reverse=reverse)
    lengths = [5, 3, 2]
    for b, n in enumerate(lengths):
        o1, h1, c1 = lstm_recurrence(
            RecurrenceInputs(xg[:n, b : b + 1], h0[b : b + 1], c0[b : b + 1], w), reverse=reverse
        )
        torch.testing.assert_close(out[:n, b : b + 1], o1)
        assert (out[n:, b] == 0).all()
        torch.testing.assert_close(h[b : b + 1], h1)
        torch.testing.assert_close(c[b : b + 1], c1)
