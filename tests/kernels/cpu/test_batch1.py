"""The fused kernel's small-batch path (B <= 4 rows: the hand-written GEMV with W_hh and W_hr,
AVX-512, AVX2 or portable, and its split over threads) against the reference, every variant.

Sizes are chosen so that every edge of the vector code runs: H=20 and H=33 leave a partial
vector at the end of each weight row (masked loads), 4H = 132 leaves output rows after the last
group of eight, P = 3 (projection) is shorter than one vector.
"""

import pytest
import torch

from lstmkit.kernels.cpu import recurrence
from lstmkit.reference.backward import LSTMRecurrenceFunction
from lstmkit.reference.lstm import CellOptions
from lstmkit.reference.recurrence import N_GRAD_ARGS, RecurrenceInputs
from tests.recurrence_args import make_args

# float32 kernel against the float32 reference, as tests/kernels/cpu/test_recurrence.py.
TOL = dict(atol=1e-5, rtol=1e-5)
GRAD_TOL = dict(atol=2e-4, rtol=1e-4)

if not recurrence.is_available():
    pytest.skip(
        f"fused CPU extension unavailable: {recurrence.build_error()}", allow_module_level=True
    )
EXT = recurrence.load_extension()
ORDER = ("generic", "avx2", "avx512")
ISAS = ORDER[: ORDER.index(EXT.best_gemv_isa()) + 1]

VARIANTS = {
    "vanilla": ({}, CellOptions()),
    "peephole": ({"peephole": True}, CellOptions()),
    "layer_norm": ({"layer_norm": True}, CellOptions()),
    "projection": ({"proj": True}, CellOptions()),
    "zoneout": ({"zoneout": True}, CellOptions()),
    "recurrent_dropout": ({"dropout": True}, CellOptions()),
    "coupled": ({}, CellOptions(coupled=True)),
    "no_forget": ({"peephole": True}, CellOptions(forget_gate=False)),
    "all_packed": (
        dict(proj=True, peephole=True, layer_norm=True, zoneout=True, dropout=True, packed=True),
        CellOptions(),
    ),
}


@pytest.fixture
def isa(request):
    previous = EXT._set_gemv_isa(request.param)
    assert EXT.gemv_isa() == request.param
    yield request.param
    EXT._set_gemv_isa(previous)


@pytest.fixture
def split_everything():
    """Two threads, and every small-batch GEMV split over them, however small its weights."""
    threads = torch.get_num_threads()
    previous = EXT._set_split_bytes(0)
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)
    EXT._set_split_bytes(previous)


def forward_and_grads(fn, args, bs, reverse, opts):
    outs = fn.apply(bs, reverse, opts, *args)
    g = torch.Generator().manual_seed(3)
    weights = [torch.randn(o.shape, generator=g) for o in outs]
    inputs = [a for a in args[:N_GRAD_ARGS] if a is not None and a.requires_grad]
    loss = sum((o * w).sum() for o, w in zip(outs, weights, strict=True))
    return [o.detach() for o in outs], torch.autograd.grad(loss, inputs)


def assert_matches_reference(args, bs, reverse, opts):
    ref, gref = forward_and_grads(LSTMRecurrenceFunction, args, bs, reverse, opts)
    got, ggot = forward_and_grads(recurrence.FusedLSTMRecurrenceFunction, args, bs, reverse, opts)
    for name, a, b in zip(("out", "h_n", "c_n"), ref, got, strict=True):
        torch.testing.assert_close(b, a, **TOL, msg=lambda m, n=name: f"{n}: {m}")
    for k, (a, b) in enumerate(zip(gref, ggot, strict=True)):
        torch.testing.assert_close(b, a, **GRAD_TOL, msg=lambda m, k=k: f"grad {k}: {m}")


@pytest.mark.parametrize("isa", ISAS, indirect=True)
@pytest.mark.parametrize("B", [1, 2, 3, 4, 5], ids=lambda b: f"B{b}")
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_small_batch_matches_reference(variant, B, isa):
    """Forward and every input grad (the backward's GEMVs take the same path) at B=1..4, and at
    B=5, the first batch the BLAS GEMM takes instead."""
    flags, opts = VARIANTS[variant]
    H = 33 if B % 2 else 20
    args, bs = make_args(torch.float32, **flags, T=5, B=B, H=H)
    assert_matches_reference(args, bs, B == 2, opts)


@pytest.mark.parametrize("isa", ISAS, indirect=True)
def test_rows_do_not_depend_on_their_batch(isa):
    """Each row's dot products run in the same order whether it is alone (B=1) or grouped with
    others (B=2..4 read the weights once for all rows): the outputs are bitwise those of B=1."""
    args, _ = make_args(torch.float32, proj=True, layer_norm=True, T=4, B=4, H=33, grad=False)
    opts = CellOptions()
    out4, h4, c4, _ = recurrence.fused_forward(args, None, False, opts, False)
    for b in range(4):
        one = RecurrenceInputs(
            *(a if a is None or a.dim() < 2 else a[..., b : b + 1, :] for a in args)
        )
        # the (4H, P) weights are 2-D too: take them whole
        one = one._replace(weight_hh=args.weight_hh, weight_hr=args.weight_hr)
        out1, h1, c1, _ = recurrence.fused_forward(one, None, False, opts, False)
        assert torch.equal(out1[:, 0], out4[:, b])
        assert torch.equal(h1[0], h4[b]) and torch.equal(c1[0], c4[b])


@pytest.mark.parametrize("isa", ISAS, indirect=True)
@pytest.mark.parametrize("B", [1, 3], ids=lambda b: f"B{b}")
def test_thread_split_is_exact(split_everything, B, isa):
    """The GEMV split over two threads gives every output bitwise as one thread computes it
    (each row's dot product runs in one order, whichever rows it is grouped with)."""
    args, bs = make_args(torch.float32, proj=True, peephole=True, T=4, B=B, H=33)
    opts = CellOptions()
    split, gsplit = forward_and_grads(recurrence.FusedLSTMRecurrenceFunction, args, bs, False, opts)
    torch.set_num_threads(1)
    one, gone = forward_and_grads(recurrence.FusedLSTMRecurrenceFunction, args, bs, False, opts)
    for a, b in zip(split + list(gsplit), one + list(gone), strict=True):
        assert torch.equal(a, b)
    torch.set_num_threads(2)
    assert_matches_reference(args, bs, False, opts)


@pytest.mark.parametrize("isa", ISAS, indirect=True)
def test_matches_torch_lstm_at_batch_1(isa):
    """A whole layer at B=1, H=64 (four full vectors per row) against torch.nn.LSTM."""
    torch.manual_seed(0)
    ref = torch.nn.LSTM(16, 64)
    x = torch.randn(30, 1, 16)
    with torch.no_grad():
        want, (h_want, c_want) = ref(x)
        xg = x @ ref.weight_ih_l0.t() + ref.bias_ih_l0
        inputs = RecurrenceInputs(
            xg, torch.zeros(1, 64), torch.zeros(1, 64), ref.weight_hh_l0, ref.bias_hh_l0
        )
        out, h, c, _ = recurrence.fused_forward(inputs, None, False, CellOptions(), False)
    torch.testing.assert_close(out, want, **TOL)
    torch.testing.assert_close(h, h_want[0], **TOL)
    torch.testing.assert_close(c, c_want[0], **TOL)


def test_isa_names():
    assert EXT.gemv_isa() in ORDER
    assert EXT.best_gemv_isa() in ORDER
    with pytest.raises(RuntimeError, match="isa must be avx512, avx2 or generic, got sse"):
        EXT._set_gemv_isa("sse")
    with pytest.raises(RuntimeError, match="split bytes must be >= 0"):
        EXT._set_split_bytes(-1)
