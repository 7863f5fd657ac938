"""The fused CPU recurrence against the reference backward, variant by variant, and gradcheck."""

import itertools

import pytest
import torch

from lstmkit.kernels.cpu import recurrence
from lstmkit.reference.backward import LSTMRecurrenceFunction
from lstmkit.reference.lstm import CellOptions, recurrence_forward
from lstmkit.reference.recurrence import N_GRAD_ARGS, RecurrenceInputs
from tests.recurrence_args import make_args

RECURRENCE_ARGS = RecurrenceInputs._fields

# Per-dtype tolerances (atol, rtol) of the fused kernel against the reference, for the outputs
# and for the grads. In float32 the grads sum rounding over all steps and rows and the layer
# norms over 4 features amplify it: the float32 reference itself is up to 1e-4 away from the
# float64 one here, so its grads cannot be held to the outputs' 1e-5.
TOL = {torch.float64: (1e-10, 1e-10), torch.float32: (1e-5, 1e-5)}
GRAD_TOL = {torch.float64: (1e-10, 1e-10), torch.float32: (2e-4, 1e-4)}

if not recurrence.is_available():
    pytest.skip(
        f"fused CPU extension unavailable: {recurrence.build_error()}", allow_module_level=True
    )

FLAGS = ("proj", "peephole", "layer_norm", "zoneout", "dropout", "packed")
GATES = ("forget", "coupled", "no_forget")


def opts_for(gate):
    return CellOptions(coupled=gate == "coupled", forget_gate=gate != "no_forget")


def run_both(args, bs, reverse, opts):
    """Forward and every input grad through the reference Function and the fused one."""
    results = []
    for fn in (LSTMRecurrenceFunction, recurrence.FusedLSTMRecurrenceFunction):
        outs = fn.apply(bs, reverse, opts, *args)
        results.append(outs)
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(o.shape, dtype=o.dtype, generator=g) for o in results[0]]
    inputs = [a for a in args[:N_GRAD_ARGS] if a is not None and a.requires_grad]
    grads = []
    for outs in results:
        loss = sum((o * w).sum() for o, w in zip(outs, weights, strict=True))
        grads.append(torch.autograd.grad(loss, inputs))
    return results, grads, inputs


def assert_matches(args, bs, reverse, opts, dtype):
    atol, rtol = TOL[dtype]
    (ref, fused), (gref, gfused), _ = run_both(args, bs, reverse, opts)
    for name, a, b in zip(("out", "h_n", "c_n"), ref, fused, strict=True):
        torch.testing.assert_close(b, a, atol=atol, rtol=rtol, msg=lambda m, n=name: f"{n}: {m}")
    atol, rtol = GRAD_TOL[dtype]
    names = [
        n
        for n, a in zip(RECURRENCE_ARGS[:N_GRAD_ARGS], args, strict=False)
        if a is not None and a.requires_grad
    ]
    for name, a, b in zip(names, gref, gfused, strict=True):
        torch.testing.assert_close(
            b, a, atol=atol, rtol=rtol, msg=lambda m, n=name: f"grad of {n}: {m}"
        )


COMBOS = [
    dict(zip(FLAGS, combo, strict=True)) for combo in itertools.product([False, True], repeat=6)
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize(
    "flags", COMBOS, ids=lambda f: "-".join(k for k, v in f.items() if v) or "vanilla"
)
def test_matches_reference(flags, gate, reverse, dtype):
    args, bs = make_args(dtype, **flags)
    assert_matches(args, bs, reverse, opts_for(gate), dtype)


@pytest.mark.parametrize(
    "shape",
    [
        dict(T=5, B=1, H=8),  # one row: the GEMV path
        dict(T=3, B=2, H=8),
        dict(T=3, B=40, H=64),  # rows split over threads, BLAS for the step GEMMs
    ],
    ids=lambda d: "T{T}-B{B}-H{H}".format(**d),
)
@pytest.mark.parametrize("flags", [{}, dict.fromkeys(FLAGS, True)], ids=["vanilla", "all"])
def test_shapes(shape, flags):
    args, bs = make_args(torch.float64, **flags, **shape)
    assert_matches(args, bs, False, CellOptions(), torch.float64)
    assert_matches(args, bs, True, CellOptions(coupled=True), torch.float64)


@pytest.mark.parametrize("flags", [{}, dict.fromkeys(FLAGS, True)], ids=["vanilla", "all"])
def test_saved_tensors_mirror_reference(flags):
    args, bs = make_args(torch.float64, **flags, grad=False)
    opts = CellOptions()
    *ref, saved_ref = recurrence_forward(args, bs, False, opts, True)
    *fused, saved = recurrence.fused_forward(args, bs, False, opts, True)
    saved_ref, saved = saved_ref.present(), saved.present()
    assert set(saved) == set(saved_ref)
    for name in saved_ref:
        torch.testing.assert_close(saved[name], saved_ref[name], atol=1e-12, rtol=0, msg=name)
    for a, b in zip(ref, fused, strict=True):
        torch.testing.assert_close(b, a, atol=1e-12, rtol=0)
    assert recurrence.fused_forward(args, bs, False, opts, False)[3] is None


def test_fused_backward_direct_matches_reference():
    from lstmkit.reference.backward import recurrence_backward

    args, bs = make_args(torch.float64, **dict.fromkeys(FLAGS, True), grad=False)
    opts = CellOptions()
    _, _, _, s_ref = recurrence_forward(args, bs, True, opts, True)
    out, h, c, s = recurrence.fused_forward(args, bs, True, opts, True)
    dout, dh, dc = torch.randn_like(out), torch.randn_like(h), torch.randn_like(c)
    ref = recurrence_backward(args, s_ref, dout, dh, dc, bs, True, opts)
    got = recurrence.fused_backward(args, s, dout, dh, dc, bs, True, opts)
    assert len(got) == N_GRAD_ARGS
    for name, a, b in zip(RECURRENCE_ARGS, ref, got, strict=False):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(b, a, atol=1e-10, rtol=1e-10, msg=name)
    only_dxg = recurrence.fused_backward(
        args, s, dout, dh, dc, bs, True, opts, needs_grad=(True,) + (False,) * (N_GRAD_ARGS - 1)
    )
    torch.testing.assert_close(only_dxg[0], ref[0], atol=1e-10, rtol=1e-10)
    assert all(g is None for g in only_dxg[1:])


def test_grads_only_where_needed():
    args, bs = make_args(torch.float64, peephole=True, grad=False)
    args = list(args)
    args[0].requires_grad_()  # only xg
    out, h, c = recurrence.FusedLSTMRecurrenceFunction.apply(bs, False, CellOptions(), *args)
    (g,) = torch.autograd.grad(out.sum() + h.sum() + c.sum(), [args[0]])
    (ref,) = torch.autograd.grad(
        sum(o.sum() for o in LSTMRecurrenceFunction.apply(bs, False, CellOptions(), *args)),
        [args[0]],
    )
    torch.testing.assert_close(g, ref, atol=1e-10, rtol=1e-10)
    with torch.no_grad():
        out2, _, _ = recurrence.FusedLSTMRecurrenceFunction.apply(bs, False, CellOptions(), *args)
    torch.testing.assert_close(out2, out.detach(), atol=0, rtol=0)


def test_non_contiguous_inputs():
    args, bs = make_args(torch.float64, proj=True, layer_norm=True, grad=False)
    args = list(args)
    args[0] = args[0].transpose(0, 1).contiguous().transpose(0, 1).requires_grad_()
    args[3] = args[3].t().contiguous().t().requires_grad_()
    assert not args[0].is_contiguous() and not args[3].is_contiguous()
    assert_matches(RecurrenceInputs(*args), bs, False, CellOptions(), torch.float64)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_saturated_gates(dtype):
    """Pre-activations far into the flat tails of sigmoid and tanh (exp overflows there)."""
    args, bs = make_args(dtype, peephole=True, grad=False)
    xg = (args[0] * 100).requires_grad_()
    args = RecurrenceInputs(xg, *(a.requires_grad_() if a is not None else None for a in args[1:]))
    assert_matches(args, bs, False, CellOptions(), dtype)


GRADCHECK = {
    "vanilla": ({}, "forget"),
    "all": (dict.fromkeys(FLAGS, True), "forget"),
    "all_coupled": (dict.fromkeys(FLAGS, True), "coupled"),
    "peephole_no_forget": ({"peephole": True, "packed": True}, "no_forget"),
    "layer_norm_zoneout": ({"layer_norm": True, "zoneout": True}, "forget"),
}


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("name", list(GRADCHECK))
def test_gradcheck(name, reverse):
    flags, gate = GRADCHECK[name]
    args, bs = make_args(torch.float64, **flags, T=3, B=2, H=2)
    opts = opts_for(gate)
    assert torch.autograd.gradcheck(
        lambda *a: recurrence.FusedLSTMRecurrenceFunction.apply(bs, reverse, opts, *a), tuple(args)
    )
