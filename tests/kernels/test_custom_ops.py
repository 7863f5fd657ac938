"""The recurrences as torch.library custom ops (lstmkit.kernels.ops): torch.library.opcheck
(schema, fake kernels under dynamic shapes, autograd registration, AOT dispatch), and the ops
against the eager autograd Functions they stand in for while tracing."""

import importlib.util
import os

import pytest
import torch

if importlib.util.find_spec("triton") is not None and not torch.cuda.is_available():
    # As tests/kernels/triton does: the Triton op runs in the interpreter, set before triton
    # is imported (by this module's tests or by torch.compile's machinery).
    os.environ["TRITON_INTERPRET"] = "1"

from torch._subclasses.fake_tensor import FakeTensorMode  # noqa: E402

from lstmkit.kernels import dispatch, ops  # noqa: E402
from lstmkit.kernels.cpu import recurrence as cpu_recurrence  # noqa: E402
from lstmkit.reference.backward import LSTMRecurrenceFunction  # noqa: E402
from lstmkit.reference.options import CellOptions  # noqa: E402
from lstmkit.reference.recurrence import N_GRAD_ARGS  # noqa: E402
from tests.recurrence_args import make_args  # noqa: E402

needs_cpu = pytest.mark.skipif(
    not cpu_recurrence.is_available(),
    reason=f"fused CPU kernel unavailable: {cpu_recurrence.build_error()}",
)
BACKENDS = [pytest.param("cpu", marks=needs_cpu), "python"]

# Each combination of the recurrence's tensors once; coupled/forget_gate are scalar switches.
VARIANTS = {
    "vanilla": ({}, CellOptions()),
    "layer_norm+proj": ({"layer_norm": True, "proj": True}, CellOptions()),
    "peephole+zoneout+dropout": (
        {"peephole": True, "zoneout": True, "dropout": True},
        CellOptions(coupled=True),
    ),
    "packed+peephole": ({"packed": True, "peephole": True}, CellOptions(forget_gate=False)),
}


def _op_args(args, bs, opts, reverse=False, save=True):
    return (*args, bs, reverse, opts.coupled, opts.forget_gate, opts.layer_norm_eps, save)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_opcheck(backend, variant):
    kw, opts = VARIANTS[variant]
    args, bs = make_args(torch.float64, T=3, B=2, H=3, **kw)
    torch.library.opcheck(ops.forward_op(backend), _op_args(args, bs, opts, reverse=True))


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck_without_save(backend):
    args, bs = make_args(torch.float64, T=3, B=2, H=3, layer_norm=True, grad=False)
    out = ops.forward_op(backend)(*_op_args(args, bs, CellOptions(), save=False))
    assert all(t.numel() == 0 for t in out[3:])  # nothing kept when nobody differentiates
    torch.library.opcheck(ops.forward_op(backend), _op_args(args, bs, CellOptions(), save=False))


@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_opcheck(backend):
    args, bs = make_args(torch.float64, T=3, B=2, H=3, layer_norm=True, proj=True, grad=False)
    opts = CellOptions()
    res = ops.forward_op(backend)(*_op_args(args, bs, opts))
    saved = [t if t.numel() else None for t in res[3:]]
    douts = [torch.randn_like(t) for t in res[:3]]
    needs = [True] * N_GRAD_ARGS
    needs[3] = False  # weight_hh: a gradient not asked for comes back empty
    bwd = (*args, *saved, *douts, bs, False, False, True, 1e-5, needs)
    grads = ops.backward_op(backend)(*bwd)
    assert grads[3].numel() == 0 and grads[0].shape == args.xg.shape
    torch.library.opcheck(ops.backward_op(backend), bwd)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", ["layer_norm+proj", "packed+peephole"])
def test_op_matches_the_eager_function(backend, variant):
    """ops.run (what a traced module calls) against the hand-written Function, output and every
    gradient, float64."""
    kw, opts = VARIANTS[variant]
    args, bs = make_args(torch.float64, **kw)
    want = LSTMRecurrenceFunction.run(args, bs, True, opts)
    got = ops.run(backend, args, bs, True, opts)
    w = [torch.randn_like(t) for t in want]
    diff = [t for t in args[:N_GRAD_ARGS] if t is not None]
    g_want = torch.autograd.grad(sum((a * b).sum() for a, b in zip(want, w, strict=True)), diff)
    g_got = torch.autograd.grad(sum((a * b).sum() for a, b in zip(got, w, strict=True)), diff)
    for a, b in zip((*got, *g_got), (*want, *g_want), strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@needs_cpu
def test_fake_tensors_reach_the_op_not_the_extension():
    """The old failure: fake tensors went into the C++ extension ("data is not allocated
    yet"). The dispatch's cpu recurrence now gives fake results of the right shapes."""
    args, _ = make_args(torch.float32, T=5, B=2, H=4, proj=True, layer_norm=True, grad=False)
    run = dispatch.recurrence("cpu")
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        fake = type(args)(*(None if t is None else mode.from_tensor(t) for t in args))
        out, h, c = run(fake, None, False, CellOptions())
    assert (out.shape, h.shape, c.shape) == ((5, 2, 3), (2, 3), (2, 4))


@needs_cpu
def test_double_backward_through_the_op_is_refused():
    args, _ = make_args(torch.float64, T=2, B=1, H=2)
    out, _, _ = ops.run("cpu", args, None, False, CellOptions())
    (g,) = torch.autograd.grad(out.sum(), args.weight_hh, create_graph=True)
    with pytest.raises(RuntimeError, match="(?i)autograd|derivative"):
        g.sum().backward()


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
def test_triton_op_in_the_interpreter():
    """The Triton op's fake kernel (float32 saved tensors) against a real run, on CPU tensors in
    Triton's interpreter (no GPU here); a CUDA machine runs the same check on the GPU."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    args, _ = make_args(torch.float32, T=2, B=1, H=4, layer_norm=True, grad=False)
    args = type(args)(*(None if t is None else t.to(device) for t in args))
    torch.library.opcheck(
        ops.forward_op("triton"),
        _op_args(args, None, CellOptions()),
        test_utils=("test_schema", "test_faketensor"),
    )
