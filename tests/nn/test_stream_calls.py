"""The cheap per-step paths of lstmkit.LSTM (bench/stream_calls.py): a vanilla one-step call on
torch's fused cell, a no-grad call without an autograd node, the cached plan. Each gives what
torch.nn.LSTM / the autograd path gives."""

import pytest
import torch

import lstmkit
from tests.nn.helpers import backends

I, H = 3, 5


@pytest.mark.parametrize(
    "kw, batched",
    [
        ({}, True),
        ({"bidirectional": True, "num_layers": 2}, True),
        ({"batch_first": True, "bias": False}, True),
        ({"num_layers": 2}, False),
    ],
)
def test_vanilla_one_step_equals_torch(kw, batched):
    torch.manual_seed(0)
    ref = torch.nn.LSTM(I, H, **kw)
    ours = lstmkit.LSTM(I, H, **kw)
    ours.load_state_dict(ref.state_dict())
    LD = ref.num_layers * (2 if ref.bidirectional else 1)
    shape = ((2, 1, I) if ref.batch_first else (1, 2, I)) if batched else (1, I)
    x = torch.randn(*shape, requires_grad=True)
    hx = tuple(torch.randn(LD, 2, H) if batched else torch.randn(LD, H) for _ in range(2))
    for state in (None, hx):
        want = ref(x, state)
        got = ours(x, state)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
        g_want = torch.autograd.grad(want[0].sum() + want[1][1].sum(), [x, ref.weight_hh_l0])
        g_got = torch.autograd.grad(got[0].sum() + got[1][1].sum(), [x, ours.weight_hh_l0])
        torch.testing.assert_close(g_got, g_want, atol=1e-6, rtol=1e-6)


def test_vanilla_one_step_keeps_weight_drop_and_dropout_in_training():
    torch.manual_seed(0)
    m = lstmkit.LSTM(I, H, num_layers=2, dropout=0.5, weight_drop=0.5).train()
    x = torch.randn(1, 4, I)
    outs = {tuple(m(x)[0].flatten().tolist()) for _ in range(3)}
    assert len(outs) == 3  # fresh masks at every call
    m.eval()
    torch.testing.assert_close(m(x)[0], m(x)[0])


@pytest.mark.parametrize("backend", backends())
def test_no_grad_call_equals_the_autograd_call(backend):
    torch.manual_seed(0)
    m = lstmkit.LSTM(I, H, layer_norm=True, peephole=True, backend=backend).eval()
    x = torch.randn(4, 2, I)
    with torch.no_grad():
        fast = m(x)
    slow = m(x)
    assert slow[0].requires_grad and not fast[0].requires_grad
    # (the C++ kernel rounds a little differently when it saves for the backward: ~2e-7)
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=1e-6)


def test_the_plan_is_cached_per_call_kind_and_not_pickled():
    import copy

    m = lstmkit.LSTM(I, H, layer_norm=True)
    m(torch.randn(2, 1, I))
    m(torch.randn(2, 1, I))
    assert len(m._plans) == 1
    m(torch.randn(2, 1, I, dtype=torch.float64).float(), return_gates=True)
    assert len(m._plans) == 2  # recording is another plan
    assert copy.deepcopy(m)._plans == {}
