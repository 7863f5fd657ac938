"""Backend selection: one table, clear errors, a single warning line on fallback."""

import warnings

import pytest
import torch

import lstmkit
from lstmkit.kernels import dispatch
from lstmkit.kernels.cpu import recurrence as cpu_recurrence


def test_unknown_backend_lists_the_supported_ones():
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'torch'"):
        dispatch.resolve_backend("cuda-graphs", torch.device("cpu"))
    with pytest.raises(ValueError, match="no recurrence for backend 'auto'; supported"):
        dispatch.recurrence("auto")


def test_torch_backend_is_vanilla_only():
    with pytest.raises(ValueError, match="runs only the vanilla LSTM"):
        dispatch.resolve_backend("torch", torch.device("cpu"))


def test_cpu_backend_rejects_half_precision():
    with pytest.raises(ValueError, match="backend='cpu' supports"):
        dispatch.resolve_backend("cpu", torch.device("cpu"), torch.float16)


def test_fallback_warns_once_and_still_computes(monkeypatch):
    monkeypatch.setattr(cpu_recurrence, "is_available", lambda: False)
    monkeypatch.setattr(cpu_recurrence, "build_error", lambda: "no compiler (test)")
    monkeypatch.setattr(dispatch, "_warned", set())
    m = lstmkit.LSTM(3, 4, layer_norm=True)
    ref = lstmkit.LSTM(3, 4, layer_norm=True, backend="reference")
    ref.load_state_dict(m.state_dict())
    x = torch.randn(5, 2, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out1 = m(x)[0]
        out2 = m(x)[0]
    msgs = [str(w.message) for w in caught if "lstmkit" in str(w.message)]
    assert msgs == [
        "lstmkit: fused CPU kernel unavailable (no compiler (test)); "
        "using the slower PyTorch reference loop"
    ]
    torch.testing.assert_close(out1, ref(x)[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(out2, out1)


def test_python_backend_refuses_double_backward():
    m = lstmkit.LSTM(3, 4, peephole=True, backend="python", dtype=torch.float64)
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(m(x)[0].sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward is not supported on backend='python'"):
        torch.autograd.grad(g.sum(), x)


def test_reference_backend_supports_double_backward():
    m = lstmkit.LSTM(3, 4, peephole=True, backend="reference", dtype=torch.float64)
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x: m(x)[0], (x,))


def test_triton_backend_is_checked(monkeypatch):
    from lstmkit.kernels.triton import recurrence as triton_recurrence

    if triton_recurrence.unavailable_reason() == "triton is not installed":
        with pytest.raises(RuntimeError, match="triton is not installed"):
            dispatch.resolve_backend("triton", torch.device("cpu"))
        return
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            dispatch.resolve_backend("triton", torch.device("cpu"))
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert dispatch.resolve_backend("triton", torch.device("cpu")) == "triton"
    with pytest.raises(ValueError, match="supports"):
        dispatch.resolve_backend("triton", torch.device("cpu"), torch.float64)
    # auto never picks it until it has been checked on a GPU
    assert dispatch.resolve_backend("auto", torch.device("cpu")) != "triton"


def test_plan_is_the_whole_decision(monkeypatch):
    from lstmkit.reference.options import VariantOptions

    monkeypatch.setattr(cpu_recurrence, "is_available", lambda: True)
    cpu, f32 = torch.device("cpu"), torch.float32
    vanilla, peep = VariantOptions(), VariantOptions(peephole=True)
    assert dispatch.plan(vanilla, "auto", cpu, f32).backend == "torch"
    assert dispatch.plan(vanilla, "auto", cpu, f32).recurrence is None
    assert dispatch.plan(vanilla, "auto", cpu, f32, proj=True).backend == "cpu"
    assert dispatch.plan(vanilla, "auto", cpu, f32, packed=True).backend == "cpu"
    assert dispatch.plan(vanilla, "torch", cpu, f32, packed=True).backend == "torch"
    # torch cannot show the gates: a recording call runs auto's recurrence
    assert dispatch.plan(vanilla, "torch", cpu, f32, recording=True).backend == "cpu"
    assert dispatch.plan(peep, "auto", cpu, f32).backend == "cpu"
    assert dispatch.plan(peep, "auto", cpu, f32, step=True).backend == "reference"
    assert dispatch.plan(vanilla, "auto", cpu, f32, step=True).backend == "torch"
    p = dispatch.plan(peep, "python", cpu, f32, step=True)
    assert p.backend == "python" and p.recurrence is not None
    with pytest.raises(ValueError, match="backend='torch' runs only the vanilla LSTM"):
        dispatch.plan(peep, "torch", cpu, f32)
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'torch'"):
        dispatch.plan(vanilla, "fast", cpu, f32)
