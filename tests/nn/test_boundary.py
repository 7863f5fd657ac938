"""Memory safety and clear errors where user input meets torch and the kernels.

Inputs that used to crash the process (heap corruption inside torch's unpacking) run in a
subprocess, so that a crash fails the test instead of killing pytest.
"""

import math
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence

import lstmkit
from lstmkit.kernels.cpu import recurrence as cpu_recurrence
from lstmkit.nn.config import LSTMConfig
from tests.nn.helpers import backends

BACKENDS = ["auto", "reference", *backends()]
# The same, as plain names, for the subprocesses; the fused one only where it builds.
BACKEND_NAMES = ["auto", "reference", "python"] + (["cpu"] if cpu_recurrence.is_available() else [])
VARIANTS = [{}, {"peephole": True}, {"layer_norm": True, "proj_size": 2}]


def run_isolated(code: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; a native crash shows as a negative return code."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# (batch_sizes, rows of data, message): each is not a packing of those rows.
BAD_PACKINGS = [
    # a zero, then an increase: heap corruption in torch's pad_packed_sequence
    ([2, 0, 1], 3, r"non-increasing \(sequences sorted by length\), got \[2, 0, 1\]"),
    ([1, 2], 3, "non-increasing"),
    ([0, 3], 3, "non-increasing"),
    ([3, 0], 3, r">= 1 at every step, got \[3, 0\]"),
    ([1, 1], 3, "sums to 2 but input.data has 3 rows"),  # fewer rows than the data has
    ([4], 3, "sums to 4 but input.data has 3 rows"),  # more
    ([2, 2], 3, "sums to 4"),
    ([], 0, "is empty"),
]


def test_bad_batch_sizes_raise_instead_of_crashing():
    code = f"""
        import re, torch, lstmkit
        from torch.nn.utils.rnn import PackedSequence
        for backend in {BACKEND_NAMES!r}:
            for variant in {VARIANTS!r}:
                m = lstmkit.LSTM(4, 6, backend=backend, **variant)
                for bs, n, match in {BAD_PACKINGS!r}:
                    p = PackedSequence(torch.randn(n, 4), torch.tensor(bs, dtype=torch.int64))
                    try:
                        m(p)
                    except ValueError as e:
                        assert re.search("input.batch_sizes .*" + match, str(e)), (
                            backend, variant, bs, str(e))
                        print("ValueError", backend, bs, flush=True)
                    else:
                        raise AssertionError(f"no error for batch_sizes={{bs}} on {{backend}}")
        print("done")
    """
    r = run_isolated(code)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    assert r.stdout.rstrip().endswith("done")
    assert r.stdout.count("ValueError") == len(BACKEND_NAMES) * len(VARIANTS) * len(BAD_PACKINGS)


@pytest.mark.parametrize(
    "batch_sizes, match",
    [
        (torch.tensor([2.0, 1.0]), "1-D int64 tensor on the CPU, got 1-D torch.float32"),
        (torch.tensor([2, 1], dtype=torch.int32), "got 1-D torch.int32"),
        (torch.tensor([[2, 1]]), "got 2-D torch.int64"),
    ],
)
def test_bad_batch_sizes_type(batch_sizes, match):
    """Wrong types; the wrong values are in the subprocess test above (they crashed)."""
    m = lstmkit.LSTM(4, 6, peephole=True)
    p = PackedSequence._make((torch.randn(3, 4), batch_sizes, None, None))  # as _replace does
    with pytest.raises(ValueError, match="input.batch_sizes .*" + match):
        m(p)


@pytest.mark.parametrize("variant", [{}, {"peephole": True}])
def test_bad_sorted_indices(variant):
    m = lstmkit.LSTM(4, 6, **variant)
    data, bs = torch.randn(3, 4), torch.tensor([2, 1])
    h0 = (torch.zeros(1, 2, 6), torch.zeros(1, 2, 6))
    cases = [
        ((torch.tensor([0, 5]), torch.tensor([0, 1])), r"sorted_indices must hold indices in"),
        ((torch.tensor([0, 0]), torch.tensor([0, 1])), "inverse permutation"),
        ((torch.tensor([1, 0, 2]), torch.tensor([1, 0, 2])), "batch_sizes\\[0\\] = 2 indices"),
        ((torch.tensor([1, 0]), None), "both be given or both be None"),
    ]
    for (s, u), match in cases:
        p = PackedSequence._make((data, bs, s, u))  # as _replace builds them: no checks
        with pytest.raises(ValueError, match=match):
            m(p, h0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_valid_packing_still_matches_torch(backend):
    """The checks reject only invalid packings: a real one still gives torch's numbers."""
    torch.manual_seed(1)
    ref = torch.nn.LSTM(4, 6)
    m = lstmkit.LSTM(4, 6, backend=backend)
    m.load_state_dict(ref.state_dict())
    seqs = [torch.randn(n, 4) for n in (2, 5, 3)]
    p = torch.nn.utils.rnn.pack_sequence(seqs, enforce_sorted=False)
    out, (h, c) = m(p)
    out_r, (h_r, c_r) = ref(p)
    torch.testing.assert_close(out.data, out_r.data)
    torch.testing.assert_close(h, h_r)
    torch.testing.assert_close(c, c_r)


@pytest.mark.parametrize("variant", [{}, {"peephole": True}])
@pytest.mark.parametrize("packed", [False, True])
def test_meta_input_is_a_value_error(variant, packed):
    for m in (lstmkit.LSTM(4, 6, **variant), lstmkit.LSTM(4, 6, **variant).to("meta")):
        x = torch.empty(5, 2, 4, device="meta")
        if packed:
            x = PackedSequence._make(
                (torch.empty(3, 4, device="meta"), torch.tensor([2, 1]), None, None)
            )
        name = "input.data" if packed else "input"
        with pytest.raises(ValueError, match=f"{name} is on the meta device"):
            m(x)
    cell = lstmkit.LSTMCell(4, 6, **variant)
    with pytest.raises(ValueError, match="input is on the meta device"):
        cell(torch.empty(2, 4, device="meta"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a build without CUDA")
@pytest.mark.parametrize("cls", [lstmkit.LSTM, lstmkit.LSTMCell])
def test_cuda_device_on_cpu_only_build(cls):
    with pytest.raises(ValueError, match="device='cuda', but this PyTorch build has no usable"):
        cls(4, 6, device="cuda")


@pytest.mark.parametrize("cls", [lstmkit.LSTM, lstmkit.LSTMCell])
def test_non_floating_dtype(cls):
    with pytest.raises(TypeError, match="dtype must be a floating-point dtype, got torch.int64"):
        cls(4, 6, dtype=torch.int64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", [{}, {"peephole": True}])
def test_input_errors_are_lstmkit_errors(backend, variant):
    m = lstmkit.LSTM(4, 6, backend=backend, **variant)
    p = torch.nn.utils.rnn.pack_sequence([torch.randn(2, 4), torch.randn(1, 4)])
    cases = [
        (lambda: m(torch.ones(5, 2, 4, dtype=torch.long)), TypeError, "floating-point"),
        (lambda: m(p._replace(data=p.data.long())), TypeError, "input.data must be a floating"),
        (lambda: m(torch.randn(5, 2, 4).double()), TypeError, "dtype torch.float64 but"),
        (lambda: m(p._replace(data=p.data.double())), TypeError, "input.data has dtype"),
        (lambda: m(torch.randn(5, 2, 4, 1)), ValueError, "input must be 3-D"),
        (lambda: m(torch.randn(5, 2, 3)), ValueError, "input_size=4 features"),
        (lambda: m(p._replace(data=p.data[:, :3])), ValueError, r"shape \(N, input_size=4\)"),
        (
            lambda: m(p, (torch.zeros(1, 3, 6), torch.zeros(1, 2, 6))),
            ValueError,
            r"hx\[0\] \(h_0\) must have shape \(1, 2, 6\)",
        ),
        (
            lambda: m(torch.randn(5, 2, 4), (torch.zeros(1, 2, 6), torch.zeros(2, 2, 6))),
            ValueError,
            r"hx\[1\] \(c_0\) must have shape \(1, 2, 6\)",
        ),
    ]
    for call, exc, match in cases:
        with pytest.raises(exc, match=match):
            call()


def test_cell_dropout_mask_is_checked():
    cell = lstmkit.LSTMCell(4, 6, recurrent_dropout=0.5)
    x = torch.randn(2, 4)
    with pytest.raises(ValueError, match=r"dropout_mask must have shape \(2, 6\), got \(3, 6\)"):
        cell(x, dropout_mask=torch.ones(3, 6))
    with pytest.raises(TypeError, match="dropout_mask has dtype torch.float64"):
        cell(x, dropout_mask=torch.ones(2, 6, dtype=torch.float64))
    h, _ = cell(torch.randn(4), dropout_mask=cell.recurrent_dropout_mask(1))  # (1, H) unbatched
    assert h.shape == (6,)


NON_FINITE = [
    ({"forget_bias": math.nan}, "forget_bias must be a finite number, got nan"),
    ({"forget_bias": math.inf}, "forget_bias must be a finite number, got inf"),
    ({"layer_norm_eps": math.inf}, "layer_norm_eps must be a positive finite float, got inf"),
    ({"layer_norm_eps": math.nan}, "layer_norm_eps must be a positive finite float, got nan"),
    ({"layer_norm_eps": 0.0}, "layer_norm_eps must be a positive finite float, got 0.0"),
    ({"layer_norm_eps": -1e-5}, "layer_norm_eps must be a positive finite float"),
    ({"zoneout_h": math.nan}, r"zoneout_h must be in \[0, 1\), got nan"),
    ({"zoneout_c": math.nan}, r"zoneout_c must be in \[0, 1\), got nan"),
    ({"recurrent_dropout": math.nan}, r"recurrent_dropout must be in \[0, 1\), got nan"),
    ({"weight_drop": math.nan}, r"weight_drop must be in \[0, 1\), got nan"),
]


@pytest.mark.parametrize("kwargs, match", NON_FINITE)
def test_non_finite_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lstmkit.LSTM(4, 6, **kwargs)
    with pytest.raises(ValueError, match=match):
        lstmkit.LSTMCell(4, 6, **kwargs)
    with pytest.raises(ValueError, match=match):
        LSTMConfig(4, 6, **kwargs)


def test_config_rejects_nan_dropout():
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got nan"):
        LSTMConfig(4, 6, num_layers=2, dropout=math.nan)
    assert LSTMConfig(4, 6, forget_bias=1.0, layer_norm_eps=1e-3).forget_bias == 1.0


FIRST_ORDER = [*backends()]  # python and cpu: hand-written backwards, first-order only


@pytest.mark.parametrize("backend", FIRST_ORDER)
@pytest.mark.parametrize("allow_unused", [False, True])
@pytest.mark.parametrize("variant", [{}, {"peephole": True, "proj_size": 2}])
def test_double_backward_raises_the_promised_error(backend, allow_unused, variant):
    # README: "the fused and python backends are first-order and say so with an error"
    m = lstmkit.LSTM(3, 4, backend=backend, **variant).double()
    x = torch.randn(5, 2, 3, dtype=torch.double, requires_grad=True)
    y, _ = m(x)
    (g,) = torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)
    with pytest.raises(
        RuntimeError, match=f"double backward is not supported on backend='{backend}'.*reference"
    ):
        torch.autograd.grad(g.sum(), [x, m.weight_hh_l0], allow_unused=allow_unused)


@pytest.mark.parametrize("backend", FIRST_ORDER)
def test_create_graph_keeps_first_order_grads(backend):
    """create_graph=True changes nothing in the first derivative, only forbids the second."""
    m = lstmkit.LSTM(3, 4, backend=backend, peephole=True).double()
    x = torch.randn(5, 2, 3, dtype=torch.double, requires_grad=True)
    params = [x, *m.parameters()]
    plain = torch.autograd.grad(m(x)[0].pow(2).sum(), params)
    graph = torch.autograd.grad(m(x)[0].pow(2).sum(), params, create_graph=True)
    for a, b in zip(plain, graph, strict=True):
        torch.testing.assert_close(b, a, atol=0, rtol=0)
    assert graph[
        0
    ].requires_grad  # tied to the inputs, so that differentiating it reaches the error


def test_reference_double_backward_still_works():
    """The reference backend's second derivative, against finite differences of the first."""
    m = lstmkit.LSTM(2, 3, backend="reference", peephole=True, coupled=True).double()
    x = torch.randn(3, 1, 2, dtype=torch.double, requires_grad=True)

    def first(x):
        (g,) = torch.autograd.grad(m(x)[0].pow(2).sum(), x, create_graph=True)
        return g

    assert torch.autograd.gradcheck(first, (x,))


@pytest.mark.parametrize(
    "variant", [{"coupled": True, "peephole": True}, {"forget_gate": False, "peephole": True}]
)
def test_unused_weight_cf_gets_zero_grad_on_every_backend(variant):
    """f ignores w_cf there; every backend gives it a zero gradient (not None), and the other
    gradients agree."""
    torch.manual_seed(3)
    x = torch.randn(4, 2, 3, dtype=torch.double)
    grads = {}
    for backend in [b for b in BACKEND_NAMES if b != "auto"]:
        torch.manual_seed(4)
        m = lstmkit.LSTM(3, 5, backend=backend, **variant).double()
        m(x)[0].sum().backward()
        grads[backend] = {n: p.grad for n, p in m.named_parameters()}
        assert grads[backend]["weight_cf_l0"] is not None, backend
        assert (grads[backend]["weight_cf_l0"] == 0).all(), backend
    ref = grads.pop("reference")
    for backend, g in grads.items():
        for name, v in ref.items():
            torch.testing.assert_close(g[name], v, msg=f"{backend} {name}")
    cell = lstmkit.LSTMCell(3, 5, **variant).double()
    h, c = cell(x[0])
    (h.sum() + c.sum()).backward()
    assert cell.weight_cf.grad is not None and (cell.weight_cf.grad == 0).all()
