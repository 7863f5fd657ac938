"""The Triton recurrence against the reference backward, variant by variant and per dtype.

Without a CUDA device the kernels run in Triton's interpreter on the CPU, one program owning
every hidden unit (the interpreter runs programs one after another, so the grid-wide step
barrier only passes with one); the stepwise tests at the end run several programs, one launch
per step. Shapes stay tiny so the interpreter is fast.
"""

import importlib.util
import os

import pytest
import torch

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed (pip install triton)", allow_module_level=True)
if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported

from lstmkit.kernels.triton import _common, recurrence  # noqa: E402
from lstmkit.kernels.triton.lstm_bwd import triton_backward  # noqa: E402
from lstmkit.kernels.triton.lstm_fwd import triton_forward  # noqa: E402
from lstmkit.reference.backward import LSTMRecurrenceFunction, recurrence_backward  # noqa: E402
from lstmkit.reference.lstm import CellOptions, recurrence_forward  # noqa: E402
from lstmkit.reference.recurrence import N_GRAD_ARGS, RecurrenceInputs  # noqa: E402
from tests.recurrence_args import make_args  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
RECURRENCE_ARGS = RecurrenceInputs._fields

# (atol, rtol) of the kernel against the float32 reference run on the same (rounded) inputs.
# float32: as for the CPU kernel. bfloat16/float16: the kernel keeps float32 inside and rounds
# h, m and the adjoints to the dtype only as matmul operands and at the outputs; measured here
# it is within 1.5e-2 (bf16) and 1.5e-3 (fp16) of the float32 reference, closer than the
# reference run in the dtype itself (up to 4e-2 and 4e-3).
TOL = {
    torch.float32: (1e-5, 1e-5),
    torch.bfloat16: (2e-2, 2e-2),
    torch.float16: (2e-3, 2e-3),
}
GRAD_TOL = {
    torch.float32: (2e-4, 1e-4),
    torch.bfloat16: (4e-2, 2e-2),
    torch.float16: (4e-3, 4e-3),
}
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}

ALL = dict(proj=True, peephole=True, layer_norm=True, zoneout=True, dropout=True, packed=True)
VARIANTS = {  # tensor flags for make_args, CellOptions
    "vanilla": ({}, CellOptions()),
    "layer_norm": ({"layer_norm": True}, CellOptions()),
    "peephole": ({"peephole": True}, CellOptions()),
    "coupled": ({}, CellOptions(coupled=True)),
    "no_forget": ({}, CellOptions(forget_gate=False)),
    "proj": ({"proj": True}, CellOptions()),
    "zoneout": ({"zoneout": True}, CellOptions()),  # train mode: 0/1 masks per step
    "dropout": ({"dropout": True}, CellOptions()),
    "packed": ({"packed": True}, CellOptions()),
    "all": (ALL, CellOptions()),
    "all_coupled": (ALL, CellOptions(coupled=True)),
    "all_no_forget": (ALL, CellOptions(forget_gate=False)),
}


def cast_args(args, dtype, grad=True):
    """The same values in ``dtype`` on the test device, the differentiable ones as leaves."""

    def cast(k, a):
        return a.detach().to(DEVICE, dtype).requires_grad_(grad and k < N_GRAD_ARGS)

    return RecurrenceInputs(*(None if a is None else cast(k, a) for k, a in enumerate(args)))


def forward_and_grads(fn, args, bs, reverse, opts):
    """Outputs and the grads of a random linear loss w.r.t. every differentiable argument."""
    outs = fn.apply(bs, reverse, opts, *args)
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(o.shape, generator=g).to(DEVICE) for o in outs]
    loss = sum((o.float() * w).sum() for o, w in zip(outs, weights, strict=True))
    inputs = [a for a in args[:N_GRAD_ARGS] if a is not None and a.requires_grad]
    return outs, torch.autograd.grad(loss, inputs)


def assert_matches(args32, bs, reverse, opts, dtype):
    """The Triton Function in ``dtype`` against the reference Function in float32."""
    kern = cast_args(args32, dtype)
    ref = cast_args(kern, torch.float32)  # the reference sees the same rounded values
    fn = recurrence.TritonLSTMRecurrenceFunction
    outs, grads = forward_and_grads(fn, kern, bs, reverse, opts)
    ref_outs, ref_grads = forward_and_grads(LSTMRecurrenceFunction, ref, bs, reverse, opts)
    atol, rtol = TOL[dtype]
    for name, a, b in zip(("out", "h_n", "c_n"), ref_outs, outs, strict=True):
        assert b.dtype == dtype, name
        torch.testing.assert_close(
            b.float(), a, atol=atol, rtol=rtol, msg=lambda m, n=name: f"{n}: {m}"
        )
    names = [n for n, a in zip(RECURRENCE_ARGS[:N_GRAD_ARGS], kern, strict=False) if a is not None]
    atol, rtol = GRAD_TOL[dtype]
    for name, a, b in zip(names, ref_grads, grads, strict=True):
        assert b.dtype == dtype, name
        torch.testing.assert_close(
            b.float(), a, atol=atol, rtol=rtol, msg=lambda m, n=name: f"grad of {n}: {m}"
        )


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_matches_reference_f32(variant, reverse):
    flags, opts = VARIANTS[variant]
    torch.manual_seed(0)
    args, bs = make_args(torch.float32, **flags, grad=False)
    assert_matches(args, bs, reverse, opts, torch.float32)


@pytest.mark.parametrize("dtype", ["bf16", "f16"])
@pytest.mark.parametrize("variant", ["vanilla", "layer_norm", "proj", "all", "all_coupled"])
def test_matches_reference_half(variant, dtype):
    flags, opts = VARIANTS[variant]
    torch.manual_seed(0)
    args, bs = make_args(torch.float32, **flags, grad=False)
    assert_matches(args, bs, variant.startswith("all"), opts, DTYPES[dtype])


@pytest.mark.parametrize(
    "shape",
    [dict(T=5, B=1, H=5), dict(T=2, B=17, H=3)],  # odd sizes; B past one 16-row tile
    ids=lambda d: "T{T}-B{B}-H{H}".format(**d),
)
def test_shapes(shape):
    torch.manual_seed(0)
    args, bs = make_args(torch.float32, **ALL, **shape, grad=False)
    assert_matches(args, bs, False, CellOptions(), torch.float32)


@pytest.mark.parametrize("variant", ["vanilla", "all"])
def test_saved_tensors_and_direct_backward(variant):
    """triton_forward/backward against recurrence_forward/backward: names, shapes, values."""
    flags, opts = VARIANTS[variant]
    torch.manual_seed(0)
    args, bs = make_args(torch.float32, **flags, grad=False)
    args = cast_args(args, torch.float32, grad=False)
    *ref, s_ref = recurrence_forward(args, bs, True, opts, True)
    *got, s = triton_forward(args, bs, True, opts)
    s_ref_all, s_all = s_ref, s
    s_ref, s = s_ref.present(), s.present()
    assert set(s) == set(s_ref)
    for name in s_ref:
        assert s[name].shape == s_ref[name].shape, name
        torch.testing.assert_close(s[name], s_ref[name], atol=1e-5, rtol=1e-5, msg=name)
    for a, b in zip(ref, got, strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    assert triton_forward(args, bs, True, opts, save=False)[3] is None
    dout, dh, dc = (torch.randn_like(x) for x in ref)
    g_ref = recurrence_backward(args, s_ref_all, dout, dh, dc, bs, True, opts)
    g = triton_backward(args, s_all, dout, dh, dc, bs, True, opts)
    assert len(g) == N_GRAD_ARGS
    for name, a, b in zip(RECURRENCE_ARGS, g_ref, g, strict=False):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(b, a, atol=2e-4, rtol=1e-4, msg=name)
    only_dxg = triton_backward(
        args, s_all, dout, dh, dc, bs, True, opts, needs_grad=(True,) + (False,) * (N_GRAD_ARGS - 1)
    )
    torch.testing.assert_close(only_dxg[0], g_ref[0], atol=2e-4, rtol=1e-4)
    assert all(x is None for x in only_dxg[1:])


def test_no_grad_forward_saves_nothing():
    torch.manual_seed(0)
    args, bs = make_args(torch.float32, peephole=True)
    args = cast_args(args, torch.float32)
    out, _, _ = recurrence.TritonLSTMRecurrenceFunction.apply(bs, False, CellOptions(), *args)
    with torch.no_grad():
        out2, _, _ = recurrence.TritonLSTMRecurrenceFunction.apply(bs, False, CellOptions(), *args)
    torch.testing.assert_close(out2, out.detach(), atol=0, rtol=0)


@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")  # interpreter
def test_saturated_gates():
    """Pre-activations far into the flat tails of sigmoid and tanh (exp overflows there)."""
    torch.manual_seed(0)
    args, bs = make_args(torch.float32, peephole=True, grad=False)
    args = (args[0] * 100, *args[1:])
    assert_matches(args, bs, False, CellOptions(), torch.float32)


def test_is_available():
    assert recurrence.is_available()
    assert recurrence.unavailable_reason() is None


def test_rejects_unsupported_dtype():
    args, bs = make_args(torch.float64, grad=False)
    with pytest.raises(ValueError, match="supports"):
        triton_forward(cast_args(args, torch.float64, grad=False), bs, False, CellOptions())


@pytest.mark.skipif(torch.cuda.is_available(), reason="interpreter-only restriction")
def test_interpreter_needs_one_program():
    with pytest.raises(ValueError, match="programs=1"):
        _common.resolve_programs(2, 8, False, torch.device("cpu"))


def test_layer_norm_needs_one_program(monkeypatch):
    monkeypatch.setattr(_common, "interpreting", lambda: False)
    with pytest.raises(NotImplementedError, match="layer norm"):
        _common.resolve_programs(2, 8, True, torch.device("cpu"))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_layers=2, bidirectional=True),
        dict(layer_norm=True, peephole=True, proj_size=3),
        dict(coupled=True, zoneout_h=0.2, zoneout_c=0.1, recurrent_dropout=0.1),
    ],
)
def test_lstm_module_on_the_triton_backend_matches_python(kwargs):
    import lstmkit

    torch.manual_seed(0)
    ref = lstmkit.LSTM(4, 6, batch_first=True, backend="python", **kwargs).to(DEVICE)
    tri = lstmkit.LSTM(4, 6, batch_first=True, backend="triton", **kwargs).to(DEVICE)
    tri.load_state_dict(ref.state_dict())
    x = torch.randn(3, 5, 4, device=DEVICE, requires_grad=True)
    outs = []
    for m in (ref, tri):
        torch.manual_seed(1)  # the same zoneout and dropout masks
        y, (h, c) = m(x)
        grads = torch.autograd.grad((y.sum() + h.sum() + c.sum()), [x, *m.parameters()])
        outs.append((y, h, c, *grads))
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(b, a, atol=2e-4, rtol=1e-4)


# Stepwise mode: one launch per step (or phase), the launch boundary as the barrier, so the
# interpreter can run several programs and check the multi-program paths: slices of H and P,
# h and dh exchanged through the global double buffers, per-program partial sums of the peephole
# weight gradients, the projection's second phase. H=8 splits unevenly over 3 programs (3+3+2)
# and, with the projection, P=3 over 2 (2+1) and over 3 (1+1+1).
STEPWISE = {  # tensor flags for make_args, CellOptions, reverse
    "vanilla": ({}, CellOptions(), False),
    "peephole": ({"peephole": True}, CellOptions(), False),
    "coupled": ({"peephole": True}, CellOptions(coupled=True), False),
    "no_forget": ({}, CellOptions(forget_gate=False), False),
    "proj": ({"proj": True}, CellOptions(), False),
    "zoneout": ({"zoneout": True, "proj": True}, CellOptions(), False),
    "dropout": ({"dropout": True}, CellOptions(), False),
    "packed_rev": ({"packed": True, "zoneout": True}, CellOptions(), True),
}


def direct_run(args, bs, reverse, opts, **kw):
    """triton_forward then triton_backward (or the reference's): outputs, saved, grads."""
    torch.manual_seed(2)
    if kw:
        *outs, saved = triton_forward(args, bs, reverse, opts, **kw)
    else:
        *outs, saved = recurrence_forward(args, bs, reverse, opts, True)
    douts = [torch.randn(o.shape) for o in outs]
    if kw:
        grads = triton_backward(args, saved, *douts, bs, reverse, opts, **kw)
    else:
        grads = recurrence_backward(args, saved, *douts, bs, reverse, opts)
    return outs, saved, grads


def assert_runs_close(ref, got, atol, rtol, grad_atol, grad_rtol):
    (ref_outs, ref_saved, ref_grads), (outs, saved, grads) = ref, got
    for name, a, b in zip(("out", "h_n", "c_n"), ref_outs, outs, strict=True):
        torch.testing.assert_close(b, a, atol=atol, rtol=rtol, msg=lambda m, n=name: f"{n}: {m}")
    saved, ref_saved = saved.present(), ref_saved.present()
    assert set(saved) == set(ref_saved)
    for name in ref_saved:
        torch.testing.assert_close(
            saved[name], ref_saved[name], atol=atol, rtol=rtol, msg=lambda m, n=name: f"{n}: {m}"
        )
    for name, a, b in zip(RECURRENCE_ARGS, ref_grads, grads, strict=False):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(
                b, a, atol=grad_atol, rtol=grad_rtol, msg=lambda m, n=name: f"grad of {n}: {m}"
            )


@pytest.mark.parametrize("programs", [2, 3])
@pytest.mark.parametrize("variant", list(STEPWISE))
def test_stepwise_programs_match_reference(variant, programs):
    flags, opts, reverse = STEPWISE[variant]
    torch.manual_seed(0)
    args, bs = make_args(torch.float32, **flags, T=3, H=8, grad=False)
    args = cast_args(args, torch.float32, grad=False)
    ref = direct_run(args, bs, reverse, opts)
    got = direct_run(args, bs, reverse, opts, programs=programs, mode="stepwise")
    assert_runs_close(ref, got, *TOL[torch.float32], *GRAD_TOL[torch.float32])


@pytest.mark.parametrize("variant", ["all", "all_coupled"])
def test_stepwise_one_program_equals_persistent(variant):
    flags, opts = VARIANTS[variant]
    torch.manual_seed(0)
    args, bs = make_args(torch.float32, **flags, T=3, grad=False)
    args = cast_args(args, torch.float32, grad=False)
    persistent = direct_run(args, bs, True, opts, programs=1)
    stepwise = direct_run(args, bs, True, opts, programs=1, mode="stepwise")
    assert_runs_close(persistent, stepwise, 1e-6, 0, 1e-6, 0)


def test_stepwise_layer_norm_needs_one_program():
    torch.manual_seed(0)
    args, bs = make_args(torch.float32, layer_norm=True, grad=False)
    args = cast_args(args, torch.float32, grad=False)
    with pytest.raises(NotImplementedError, match="programs=2 with layer norm"):
        triton_forward(args, bs, False, CellOptions(), programs=2, mode="stepwise")
    *outs, saved = triton_forward(args, bs, False, CellOptions())
    with pytest.raises(NotImplementedError, match="programs=3 with layer norm"):
        triton_backward(args, saved, *outs, bs, False, CellOptions(), programs=3, mode="stepwise")


def test_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode must be one of"):
        _common.resolve_programs(1, 8, False, torch.device("cpu"), mode="chunked")
