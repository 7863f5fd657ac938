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


# -- the C++ step of the whole stack (StepPlan) ------------------------------------------------

needs_kernel = pytest.mark.skipif(
    not __import__("lstmkit.kernels.cpu.recurrence", fromlist=["x"]).is_available(),
    reason="the fused CPU kernel is not built here",
)

VARIANTS = [
    {},
    {"layer_norm": True},
    {"peephole": True},
    {"coupled": True},
    {"forget_gate": False},
    {"zoneout_h": 0.2, "zoneout_c": 0.1},
    {"layer_norm": True, "peephole": True, "proj_size": 2},
    {"bias": False, "layer_norm": True},
]


def _general(m, x, hx):
    """The general path of the same call (the step plan switched off for it, then put back
    as it was, so that a test sees the plan the module kept)."""
    kept = m.__dict__.get("_step")
    m.__dict__["_step"] = False
    try:
        return m(x, hx)
    finally:
        if kept is None:
            m.__dict__.pop("_step")
        else:
            m.__dict__["_step"] = kept


def _state(m, B, batched, dtype=torch.float32):
    LD = m.num_layers * (2 if m.bidirectional else 1)
    P = m.proj_size or m.hidden_size
    if batched:
        return torch.randn(LD, B, P, dtype=dtype), torch.randn(LD, B, m.hidden_size, dtype=dtype)
    return torch.randn(LD, P, dtype=dtype), torch.randn(LD, m.hidden_size, dtype=dtype)


@needs_kernel
@pytest.mark.parametrize("kw", VARIANTS)
@pytest.mark.parametrize("layers, bi", [(1, False), (2, True), (3, False)])
@pytest.mark.parametrize("batch_first", [False, True])
def test_step_plan_equals_the_general_path(kw, layers, bi, batch_first):
    torch.manual_seed(0)
    m = lstmkit.LSTM(I, H, num_layers=layers, bidirectional=bi, batch_first=batch_first, **kw)
    m.eval()
    for B, batched, with_state in [(1, True, True), (6, True, False), (1, False, True)]:
        shape = ((B, 1, I) if batch_first else (1, B, I)) if batched else (1, I)
        x = torch.randn(*shape)
        hx = _state(m, B, batched) if with_state else None
        with torch.no_grad():
            got = m._make_step()(x, hx)
            want = _general(m, x, hx)
        assert got is not None
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


@needs_kernel
def test_step_plan_is_what_a_streaming_call_runs_and_matches_one_long_call():
    torch.manual_seed(0)
    m = lstmkit.LSTM(I, H, num_layers=2, layer_norm=True, zoneout_h=0.1).eval()
    x = torch.randn(20, 2, I)
    calls = []
    step = m._make_step()
    m.__dict__["_step"] = lambda *a: calls.append(1) or step(*a)
    with torch.no_grad():
        long_out, (h_long, c_long) = _general(m, x, None)
        m.__dict__["_step"] = lambda *a: calls.append(1) or step(*a)
        state, outs = None, []
        for t in range(20):
            o, state = m(x[t : t + 1], state)
            outs.append(o)
    assert len(calls) == 20
    torch.testing.assert_close(torch.cat(outs), long_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state, (h_long, c_long), atol=1e-5, rtol=1e-5)


@needs_kernel
def test_step_plan_float64():
    torch.manual_seed(0)
    m = lstmkit.LSTM(I, H, layer_norm=True, num_layers=2, dtype=torch.float64).eval()
    x = torch.randn(1, 3, I, dtype=torch.float64)
    hx = _state(m, 3, True, torch.float64)
    with torch.no_grad():
        got = m._make_step()(x, hx)
        want = _general(m, x, hx)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)


class _Sub(torch.Tensor):
    pass


@needs_kernel
def test_step_plan_declines_what_it_does_not_take():
    m = lstmkit.LSTM(I, H).eval()
    step = m._make_step()
    x = torch.randn(1, 2, I)
    with torch.no_grad():
        assert step(torch.randn(3, 2, I), None) is None  # T > 1
        assert step(x.double(), None) is None  # another dtype
        assert step(x.as_subclass(_Sub), None) is None  # a subclass
        assert step(torch.randn(1, 2, I + 1), None) is None  # wrong feature count
        assert step(x, (torch.zeros(1, 3, H), torch.zeros(1, 3, H))) is None  # wrong batch
        assert step(x, [torch.zeros(1, 2, H)]) is None  # not a pair
        assert step(x, "state") is None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert step(x, None) is None
    assert step(x, None) is None  # grad mode on
    with torch.no_grad():
        assert step(x, None) is not None


@needs_kernel
def test_bad_input_still_gets_the_general_paths_error():
    m = lstmkit.LSTM(I, H).eval()
    with torch.no_grad(), pytest.raises(ValueError, match="input_size=3"):
        m(torch.randn(1, 2, I + 1))
    with torch.no_grad(), pytest.raises(ValueError, match="hx"):
        m(torch.randn(1, 2, I), (torch.zeros(1, 3, H), torch.zeros(1, 3, H)))


@needs_kernel
def test_step_plan_sees_parameter_updates_and_replacements():
    torch.manual_seed(0)
    m = lstmkit.LSTM(I, H, layer_norm=True).eval()
    x = torch.randn(1, 2, I)
    hx = _state(m, 2, True)

    def check():
        with torch.no_grad():
            got = m(x, hx)
            want = _general(m, x, hx)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
        return got[0]

    first = check()
    plan = m.__dict__["_step"]
    with torch.no_grad():
        m.weight_hh_l0.add_(1)  # in place: the plan holds the parameter itself
    assert not torch.equal(check(), first)
    m.weight_ih_l0.data = torch.randn(4 * H, I)  # .data = keeps the tensor object
    check()
    assert m.__dict__["_step"] is plan  # the same plan saw both changes
    m.ln_weight_ih_l0 = torch.nn.Parameter(torch.rand(4 * H))  # replaced: plan dropped
    assert "_step" not in m.__dict__
    check()
    m.weight_hh_l0.data = torch.randn(4 * H, 2 * H)  # a shape that no longer fits: declined
    with torch.no_grad():
        assert m._make_step()(x, None) is None
    m.weight_hh_l0.data = torch.randn(4 * H, H)
    m.double()  # moved: plan dropped, then rebuilt for float64
    assert "_step" not in m.__dict__
    with torch.no_grad():
        assert m(x.double())[0].dtype == torch.float64
        assert m.__dict__["_step"] is not False


@needs_kernel
def test_step_plan_only_in_eval_without_grad_and_not_for_other_backends():
    m = lstmkit.LSTM(I, H, zoneout_h=0.5).train()
    x = torch.randn(1, 2, I)
    with torch.no_grad():
        outs = {tuple(m(x)[0].flatten().tolist()) for _ in range(3)}
    assert len(outs) > 1  # training: zoneout draws masks, the general path ran
    assert "_step" not in m.__dict__
    assert lstmkit.LSTM(I, H, backend="torch").eval()._make_step() is False
    assert lstmkit.LSTM(I, H, backend="python").eval()._make_step() is False
    p = lstmkit.LSTM(I, H).eval()
    torch.nn.utils.parametrize.register_parametrization(p, "weight_hh_l0", torch.nn.Identity())
    assert p._make_step() is False


@needs_kernel
def test_modules_with_a_step_plan_pickle_and_copy():
    import copy
    import io

    m = lstmkit.LSTM(I, H).eval()
    x = torch.randn(1, 2, I)
    with torch.no_grad():
        want = m(x)
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    for other in (copy.deepcopy(m), torch.load(buf, weights_only=False)):
        with torch.no_grad():
            torch.testing.assert_close(other(x), want)
