"""weight_drop: DropConnect on W_hh (AWD-LSTM), on every backend and on torch's fast path.

The reference is an LSTM whose W_hh is replaced by the masked matrix ``F.dropout(W_hh, p)``
drawn from the same seed: one mask for the whole sequence, scaled by 1 / (1 - p).
"""

import pytest
import torch
import torch.nn.functional as F

import lstmkit
from lstmkit.nn import LSTMConfig
from tests.nn.helpers import backends

P = 0.4


def _masked_reference(lstm: lstmkit.LSTM, seed: int) -> torch.nn.LSTM:
    """torch.nn.LSTM with the W_hh masks that ``lstm`` draws after ``manual_seed(seed)``."""
    ref = torch.nn.LSTM(
        lstm.input_size, lstm.hidden_size, lstm.num_layers, dtype=lstm.weight_hh_l0.dtype
    )
    ref.load_state_dict(lstm.state_dict())
    torch.manual_seed(seed)
    with torch.no_grad():
        for k in range(lstm.num_layers):
            w = getattr(lstm, f"weight_hh_l{k}")
            getattr(ref, f"weight_hh_l{k}").copy_(F.dropout(w, lstm.weight_drop, True))
    return ref


@pytest.mark.parametrize("backend", ["auto", "reference", *backends()])
def test_training_forward_uses_one_masked_w_hh_for_the_sequence(backend):
    lstm = lstmkit.LSTM(3, 5, 2, weight_drop=P, backend=backend, dtype=torch.float64).train()
    x = torch.randn(7, 4, 3, dtype=torch.float64)
    torch.manual_seed(11)
    out, (h, c) = lstm(x)
    ref = _masked_reference(lstm, 11)
    ref_out, (ref_h, ref_c) = ref(x)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(h, ref_h)
    torch.testing.assert_close(c, ref_c)


def test_torch_fast_path_is_taken_and_weights_restored(monkeypatch):
    lstm = lstmkit.LSTM(3, 5, 2, weight_drop=P).train()
    calls = []
    original = torch.nn.LSTM.forward

    def spy(self, *args, **kw):
        calls.append([w.data_ptr() for w in self._flat_weights])
        return original(self, *args, **kw)

    monkeypatch.setattr(torch.nn.LSTM, "forward", spy)
    lstm(torch.randn(4, 2, 3))
    params = [getattr(lstm, n).data_ptr() for n in lstm._flat_weights_names]
    assert len(calls) == 1, "the vanilla LSTM with weight_drop must run on torch's kernel"
    lent = dict(zip(lstm._flat_weights_names, calls[0], strict=True))
    assert lent["weight_hh_l0"] != lstm.weight_hh_l0.data_ptr()  # the masked copy was lent
    assert lent["weight_ih_l0"] == lstm.weight_ih_l0.data_ptr()
    assert [w.data_ptr() for w in lstm._flat_weights] == params  # and given back


@pytest.mark.parametrize("backend", ["auto", *backends()])
def test_eval_is_the_plain_lstm(backend):
    lstm = lstmkit.LSTM(3, 5, 2, weight_drop=0.9, backend=backend).eval()
    ref = torch.nn.LSTM(3, 5, 2)
    ref.load_state_dict(lstm.state_dict())
    x = torch.randn(6, 2, 3)
    torch.testing.assert_close(lstm(x)[0], ref(x)[0])


def test_mask_scaling_and_rate():
    lstm = lstmkit.LSTM(8, 64, weight_drop=0.3).train()
    w = lstm.weight_hh_l0
    dropped = lstm._dropped_weight_hh()["weight_hh_l0"]
    kept = dropped != 0
    torch.testing.assert_close(dropped[kept], w[kept] / 0.7)
    assert abs((~kept).float().mean().item() - 0.3) < 0.02  # 16384 entries: std 0.004
    again = lstm._dropped_weight_hh()["weight_hh_l0"]
    assert not torch.equal(dropped != 0, again != 0), "a new mask each forward call"


@pytest.mark.parametrize("backend", ["auto", *backends()])
def test_gradients_reach_w_hh_through_the_mask(backend):
    lstm = lstmkit.LSTM(3, 5, weight_drop=P, backend=backend, dtype=torch.float64).train()
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    torch.manual_seed(5)
    lstm(x)[0].pow(2).sum().backward()
    # reference: the gradient with respect to the masked matrix, times the mask's scale
    torch.manual_seed(5)
    mask = F.dropout(torch.ones_like(lstm.weight_hh_l0), P, True)
    ref = torch.nn.LSTM(3, 5, dtype=torch.float64)
    ref.load_state_dict(lstm.state_dict())
    with torch.no_grad():
        ref.weight_hh_l0.mul_(mask)
    ref(x)[0].pow(2).sum().backward()
    torch.testing.assert_close(lstm.weight_hh_l0.grad, ref.weight_hh_l0.grad * mask)
    torch.testing.assert_close(lstm.weight_ih_l0.grad, ref.weight_ih_l0.grad)
    assert (lstm.weight_hh_l0.grad[mask == 0] == 0).all()
    assert lstm.weight_hh_l0.grad.abs().sum() > 0


def test_cell_draws_a_mask_per_call_in_training_only():
    cell = lstmkit.LSTMCell(3, 4, weight_drop=P, dtype=torch.float64)
    ref = torch.nn.LSTMCell(3, 4, dtype=torch.float64)
    ref.load_state_dict(cell.state_dict())
    x = torch.randn(2, 3, dtype=torch.float64)
    torch.testing.assert_close(cell.eval()(x)[0], ref(x)[0])
    cell.train()
    torch.manual_seed(3)
    h, c = cell(x)
    torch.manual_seed(3)
    with torch.no_grad():
        ref.weight_hh.copy_(F.dropout(cell.weight_hh, P, True))
    torch.testing.assert_close(h, ref(x)[0])


def test_config_and_bad_values():
    lstm = lstmkit.LSTM(3, 5, weight_drop=0.25)
    assert lstm.config.weight_drop == 0.25
    assert lstmkit.LSTM.from_config(lstm.config).weight_drop == 0.25
    assert LSTMConfig(3, 5).weight_drop == 0.0
    assert "weight_drop=0.25" in repr(lstm)
    assert lstm.config.is_vanilla  # the recurrence is torch's; only W_hh is masked
    with pytest.raises(ValueError, match="weight_drop"):
        lstmkit.LSTM(3, 5, weight_drop=1.0)
    with pytest.raises(ValueError, match="weight_drop"):
        lstmkit.LSTMCell(3, 5, weight_drop=-0.1)
