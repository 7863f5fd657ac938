"""Every recurrence backend checks its tensors before any kernel reads them."""

import pytest
import torch

from lstmkit.kernels import dispatch
from lstmkit.kernels.cpu import recurrence as cpu_recurrence
from lstmkit.reference.lstm import CellOptions
from tests.recurrence_args import make_args

BACKENDS = [
    "python",
    "reference",
    pytest.param(
        "cpu",
        marks=pytest.mark.skipif(not cpu_recurrence.is_available(), reason="no fused CPU kernel"),
    ),
]


def replaced(args, **new):
    return args._replace(**new)


def bad_cases():
    """(label, args, batch_sizes, opts, exception, message) with T=4, B=3, H=4, P=3."""
    args, _ = make_args(proj=True, peephole=True, layer_norm=True, zoneout=True, grad=False)
    ok = CellOptions()
    bs = torch.tensor([3, 2, 2, 1])
    return [
        ("xg 2-D", replaced(args, xg=args[0][0]), None, ok, ValueError, r"xg must be \(T, B, 4H\)"),
        ("H = 0", replaced(args, xg=torch.zeros(4, 3, 0, dtype=torch.float64)), None, ok,
         ValueError, "H >= 1"),
        ("xg int", replaced(args, xg=args[0].long()), None, ok, TypeError, "floating-point"),
        ("h0 B", replaced(args, h0=args[1][:2]), None, ok, ValueError,
         r"h0 must have shape \(3, 3\)"),
        ("c0 H", replaced(args, c0=args[2][:, :3]), None, ok, ValueError,
         r"c0 must have shape \(3, 4\)"),
        ("weight_hh", replaced(args, weight_hh=args[3].t()), None, ok, ValueError,
         r"weight_hh must have shape \(16, 3\)"),
        ("weight_hh None", replaced(args, weight_hh=None), None, ok, TypeError, "is required"),
        ("bias dtype", replaced(args, bias_hh=args[4].float()), None, ok, TypeError,
         "bias_hh is torch.float32 on cpu, but xg is torch.float64"),
        ("weight_ci device", replaced(args, weight_ci=torch.empty(4, dtype=torch.float64,
         device="meta")), None, ok, TypeError, "weight_ci is torch.float64 on meta"),
        ("weight_hr None, P != H", replaced(args, weight_hr=None), None, ok, ValueError,
         "without weight_hr"),
        ("zoneout T", replaced(args, zoneout_h=args[12][:2]), None, ok, ValueError,
         r"zoneout_h must have shape \(4, 3, 3\)"),
        ("sparse", replaced(args, bias_hh=args[4].to_sparse()), None, ok, TypeError,
         "dense"),
        ("not a tensor", replaced(args, weight_co=[0.0] * 4), None, ok, TypeError,
         "weight_co must be a tensor or None"),
        ("bs float", args, bs.double(), ok, ValueError, "batch_sizes must be a 1-D int64"),
        ("bs length", args, bs[:3], ok, ValueError, r"shape \(T,\) = \(4,\)"),
        ("bs > B", args, torch.tensor([4, 2, 2, 1]), ok, ValueError, r"in \[0, B = 3\]"),
        ("bs < 0", args, torch.tensor([3, 2, 2, -1]), ok, ValueError, r"in \[0, B = 3\]"),
        ("eps 0", args, None, CellOptions(layer_norm_eps=0.0), ValueError, "layer_norm_eps"),
        ("eps inf", args, None, CellOptions(layer_norm_eps=float("inf")), ValueError,
         "layer_norm_eps"),
    ]  # fmt: skip


CASES = bad_cases()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_recurrence_rejects_bad_tensors(backend, case):
    _, args, bs, opts, exc, match = case
    with pytest.raises(exc, match=match):
        dispatch.recurrence(backend)(args, bs, False, opts)


@pytest.mark.parametrize("backend", BACKENDS)
def test_recurrence_accepts_strided_views(backend):
    """Non-contiguous inputs are fine (every backend copies them): same numbers as contiguous."""
    args, bs = make_args(proj=True, peephole=True, packed=True, grad=False)
    wide = torch.randn(16, 6, dtype=torch.float64)
    wide[:, ::2] = args[3]
    strided = replaced(args, weight_hh=wide[:, ::2])
    assert not strided[3].is_contiguous()
    ref = dispatch.recurrence(backend)(args, bs, False, CellOptions())
    got = dispatch.recurrence(backend)(strided, bs, False, CellOptions())
    for a, b in zip(ref, got, strict=True):
        torch.testing.assert_close(b, a, atol=1e-12, rtol=0)
