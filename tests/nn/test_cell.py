"""lstmkit.LSTMCell against torch.nn.LSTMCell and against lstmkit.LSTM for the variants."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lstmkit


@settings(max_examples=25, deadline=None)
@given(
    B=st.integers(1, 4),
    I=st.integers(1, 6),
    H=st.integers(1, 6),
    bias=st.booleans(),
    batched=st.booleans(),
    with_hx=st.booleans(),
)
def test_cell_matches_torch(B, I, H, bias, batched, with_hx):
    ref = torch.nn.LSTMCell(I, H, bias)
    for backend in ("auto", "reference"):
        # layer_norm=False etc.: "reference" forces our own math for the vanilla cell
        ours = lstmkit.LSTMCell(I, H, bias, backend=backend)
        ours.load_state_dict(ref.state_dict())
        x = torch.randn(B, I) if batched else torch.randn(I)
        shape = (B, H) if batched else (H,)
        hx = (torch.randn(shape), torch.randn(shape)) if with_hx else None
        h_r, c_r = ref(x, hx)
        h_o, c_o = ours(x, hx)
        torch.testing.assert_close(h_o, h_r, atol=1e-5, rtol=0)
        torch.testing.assert_close(c_o, c_r, atol=1e-5, rtol=0)
        g_r = torch.autograd.grad((h_r * 2 + c_r).sum(), list(ref.parameters()))
        g_o = torch.autograd.grad((h_o * 2 + c_o).sum(), list(ours.parameters()))
        for a, b in zip(g_o, g_r, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "kw",
    [
        {"layer_norm": True},
        {"peephole": True},
        {"coupled": True},
        {"forget_gate": False},
        {"zoneout_h": 0.3, "zoneout_c": 0.2},
    ],
)
def test_cell_loop_equals_layer(kw):
    """A manual loop over the cell gives the layer's outputs (eval mode, same parameters)."""
    layer = lstmkit.LSTM(3, 5, **kw).eval()
    cell = lstmkit.LSTMCell(3, 5, **kw).eval()
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in layer.state_dict().items()})
    x = torch.randn(6, 2, 3)
    out, (h_n, c_n) = layer(x)
    hx = None
    for t in range(6):
        hx = cell(x[t], hx)
        torch.testing.assert_close(hx[0], out[t], atol=1e-6, rtol=0)
    torch.testing.assert_close(hx[1], c_n[0], atol=1e-6, rtol=0)


def test_cell_recurrent_dropout_mask():
    cell = lstmkit.LSTMCell(3, 4, recurrent_dropout=0.5)
    m = cell.recurrent_dropout_mask(2)
    assert m.shape == (2, 4)
    assert set(torch.unique(m).tolist()) <= {0.0, 2.0}
    h, c = cell(torch.randn(2, 3), (torch.randn(2, 4), torch.randn(2, 4)), dropout_mask=m)
    assert h.shape == (2, 4)
    with pytest.raises(ValueError, match="dropout_mask was given"):
        lstmkit.LSTMCell(3, 4)(torch.randn(2, 3), dropout_mask=m)


def test_cell_errors():
    cell = lstmkit.LSTMCell(3, 4, layer_norm=True)
    with pytest.raises(ValueError, match="input_size=3"):
        cell(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"hx\[0\] \(h\) must have shape \(2, 4\)"):
        cell(torch.randn(2, 3), (torch.zeros(3, 4), torch.zeros(2, 4)))
    with pytest.raises(ValueError, match="must be 2-D"):
        cell(torch.randn(1, 2, 3))
    with pytest.raises(ValueError, match="zoneout_h"):
        lstmkit.LSTMCell(3, 4, zoneout_h=2.0)


@pytest.fixture
def recurrences_used(monkeypatch):
    """The backends whose recurrence the cell runs, in call order."""
    from lstmkit.kernels import dispatch

    used = []
    real = dispatch.recurrence
    monkeypatch.setattr(dispatch, "recurrence", lambda b: used.append(b) or real(b))
    return used


@pytest.mark.parametrize("backend", ["python", "reference"])
@pytest.mark.parametrize("kw", [{}, {"peephole": True, "zoneout_h": 0.2}])
def test_cell_runs_the_backend_it_names(recurrences_used, backend, kw):
    """A named backend runs its own recurrence for the step, with the eager step's numbers."""
    torch.manual_seed(0)
    ours = lstmkit.LSTMCell(3, 4, backend=backend, **kw).eval().double()
    ref = lstmkit.LSTMCell(3, 4, **kw).eval().double()
    ref.load_state_dict(ours.state_dict())
    x, hx = torch.randn(2, 3).double(), (torch.randn(2, 4).double(), torch.randn(2, 4).double())
    for a, b in zip(ours(x, hx), ref(x, hx), strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    assert recurrences_used[0] == backend


def test_cell_runs_the_fused_cpu_step(recurrences_used):
    from lstmkit.kernels.cpu import recurrence as cpu_recurrence

    if not cpu_recurrence.is_available():
        pytest.skip(f"fused CPU kernel unavailable: {cpu_recurrence.build_error()}")
    cell = lstmkit.LSTMCell(3, 4, layer_norm=True, backend="cpu").double()
    ref = lstmkit.LSTMCell(3, 4, layer_norm=True, backend="reference").double()
    ref.load_state_dict(cell.state_dict())
    x = torch.randn(5, 3, dtype=torch.float64)
    h, c = cell(x)
    h_r, c_r = ref(x)
    torch.testing.assert_close(h, h_r, atol=1e-10, rtol=0)
    torch.testing.assert_close(c, c_r, atol=1e-10, rtol=0)
    g = torch.autograd.grad(h.sum() + c.sum(), list(cell.parameters()))
    g_r = torch.autograd.grad(h_r.sum() + c_r.sum(), list(ref.parameters()))
    for a, b in zip(g, g_r, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    assert recurrences_used == ["cpu", "reference"]


def test_cell_rejects_what_it_cannot_run():
    with pytest.raises(ValueError, match="backend='torch' runs only the vanilla cell"):
        lstmkit.LSTMCell(3, 4, peephole=True, backend="torch")
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'torch'"):
        lstmkit.LSTMCell(3, 4, backend="cudnn")
    cell = lstmkit.LSTMCell(3, 4, backend="cpu").to(torch.float16)
    with pytest.raises(ValueError, match="backend='cpu' supports"):
        cell(torch.randn(2, 3, dtype=torch.float16))
