"""lstmkit.LSTM under torch.compile and torch.export, every variant.

- ``torch._dynamo.explain`` finds one graph and no graph break;
- ``torch.compile(fullgraph=True)`` (backend ``aot_eager``: Dynamo, the fake kernels,
  functionalisation and the registered autograd, without Inductor's C++ compile) equals eager
  to 1e-6 in float32, output, final state and every gradient; one variant with Inductor;
- ``torch.export`` with dynamic batch and time runs at two other shapes and matches eager.

Zoneout and recurrent dropout are checked in their eval form (the masks are random in
training), weight drop likewise (eval uses W_hh as is).
"""

import pytest
import torch
from torch.export import Dim, export

import lstmkit
from lstmkit.kernels.cpu import recurrence as cpu_recurrence

pytestmark = pytest.mark.skipif(
    not cpu_recurrence.is_available(),
    reason=f"fused CPU kernel unavailable: {cpu_recurrence.build_error()}",
)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    # Each model is a new object to guard on: without a reset, Dynamo's recompile limit (8
    # per code object) is reached within this file and fullgraph=True then raises.
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


I, H = 3, 4
VARIANTS = {
    "vanilla": {},
    "layer_norm": {"layer_norm": True},
    "peephole": {"peephole": True},
    "coupled": {"coupled": True, "peephole": True},
    "no_forget_gate": {"forget_gate": False},
    "projection": {"proj_size": 2},
    "bidirectional": {"bidirectional": True, "layer_norm": True},
    "two_layers": {"num_layers": 2, "dropout": 0.5},
    "zoneout_dropout": {"zoneout_h": 0.2, "zoneout_c": 0.3, "recurrent_dropout": 0.4},
    "weight_drop": {"weight_drop": 0.5},
    "python_backend": {"layer_norm": True, "peephole": True, "backend": "python"},
    "reference_backend": {"layer_norm": True, "backend": "reference"},
}


def _model(kw, **extra):
    torch.manual_seed(0)
    return lstmkit.LSTM(I, H, **kw, **extra).eval()


def _loss_and_grads(model, x, hx):
    out, (h, c) = model(x, hx)
    loss = (out * torch.linspace(-1, 1, out.shape[-1])).sum() + h.square().sum() + c.sum()
    params = [p for p in model.parameters()]
    grads = torch.autograd.grad(loss, [x, *hx, *params])
    return (out, h, c, *grads)


def test_no_graph_breaks_in_any_variant():
    x = torch.randn(5, 2, I)
    found = {}
    for name, kw in VARIANTS.items():
        torch._dynamo.reset()
        e = torch._dynamo.explain(_model(kw))(x)
        found[name] = (e.graph_count, e.graph_break_count, [str(r.reason) for r in e.break_reasons])
    assert found == {name: (1, 0, []) for name in VARIANTS}


# The reference backend (eager autograd, unrolled over T by Dynamo) is in the graph-break test
# only: its compile with gradients costs more than all the others together.
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "reference_backend"])
def test_compiled_equals_eager(variant):
    kw = VARIANTS[variant]
    model = _model(kw)
    D = 2 if kw.get("bidirectional") else 1
    L = kw.get("num_layers", 1)
    P = kw.get("proj_size") or H
    x = torch.randn(3, 2, I, requires_grad=True)  # short: the reference backend unrolls T
    hx = (
        torch.randn(L * D, 2, P, requires_grad=True),
        torch.randn(L * D, 2, H, requires_grad=True),
    )
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    want = _loss_and_grads(model, x, hx)
    got = _loss_and_grads(compiled, x, hx)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    with torch.no_grad():  # the inference graph (no saved tensors) too, at another shape
        y = torch.randn(3, 4, I)
        torch.testing.assert_close(compiled(y)[0], model(y)[0], atol=1e-6, rtol=1e-6)


def test_cell_and_gate_recording_compile():
    x = torch.randn(2, I)
    for backend in ("auto", "cpu"):
        torch.manual_seed(0)
        cell = lstmkit.LSTMCell(I, H, layer_norm=True, peephole=True, backend=backend)
        got = torch.compile(cell, backend="aot_eager", fullgraph=True)(x)
        torch.testing.assert_close(got, cell(x), atol=1e-6, rtol=1e-6)
    model = _model({"layer_norm": True})

    def gates(x):
        return model(x, return_gates=True)[2][0, 0].f

    y = torch.randn(4, 2, I)
    got = torch.compile(gates, backend="aot_eager", fullgraph=True)(y)
    torch.testing.assert_close(got, gates(y), atol=1e-6, rtol=1e-6)


def test_inductor_layer_norm():
    """The default backend, inference only (compiling the backward too doubles the C++
    compile time). Inductor's layer norm sums in another order than ATen's: ~1e-7 here."""
    model = _model({"layer_norm": True})
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    with torch.no_grad():
        for T, B in ((6, 2), (3, 5)):  # one compile, dynamic shapes
            x = torch.randn(T, B, I)
            hx = (torch.randn(1, B, H), torch.randn(1, B, H))
            got, want = compiled(x, hx), model(x, hx)
            torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


def _dims(batch_first):
    T, B = Dim("time", min=1, max=4096), Dim("batch", min=1, max=4096)
    return ({0: B, 1: T} if batch_first else {0: T, 1: B}), B


def _shape(T, B, batch_first):
    return (B, T, I) if batch_first else (T, B, I)


@pytest.mark.parametrize(
    "variant, batch_first, with_state",
    [
        ("layer_norm", False, False),  # the regression: it failed on fake tensors
        ("layer_norm", True, True),
        ("vanilla", False, True),  # torch's own LSTM specialised the time dimension
        ("projection", True, False),
    ],
)
def test_export_dynamic_batch_and_time(variant, batch_first, with_state):
    kw = {**VARIANTS[variant], "batch_first": batch_first}
    if variant == "projection":
        kw.update(bidirectional=True, num_layers=2, peephole=True)
    model = _model(kw)
    D = 2 if kw.get("bidirectional") else 1
    LD, P = kw.get("num_layers", 1) * D, kw.get("proj_size") or H

    def state(B):
        return (torch.randn(LD, B, P), torch.randn(LD, B, H))

    spec, B = _dims(batch_first)
    x = torch.randn(*_shape(5, 3, batch_first))
    if with_state:
        ep = export(model, (x, state(3)), dynamic_shapes={"input": spec, "hx": ({1: B}, {1: B})})
    else:
        ep = export(model, (x,), dynamic_shapes={"input": spec})
    run = ep.module()
    for T, Bn in ((9, 2), (1, 6)):
        y = torch.randn(*_shape(T, Bn, batch_first))
        args = (y, state(Bn)) if with_state else (y,)
        got, want = run(*args), model(*args)
        torch.testing.assert_close(got[0], want[0], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(got[1], want[1], atol=1e-6, rtol=1e-6)
