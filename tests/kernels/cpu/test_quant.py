"""The quantized kernel (lstm_quant.cpp) against the reference recurrence run with the weights
quantized and dequantized in PyTorch (fake quantization), every variant, every instruction set;
and its int8-activation path against the same reference doing the same integer math.

Why these tolerances: the kernel and the reference compute with the same weight values
``s_j * q_jk`` (int8) or ``bf16(w)``; they differ only in float rounding: the kernel applies
``s_j`` once to ``sum_k q_jk a_k`` instead of to each term (one rounding, 2^-24 relative), and
sums in another order (at most K * 2^-24 of ``sum_k |w_jk a_k|``, about 1e-6 at these sizes).
Over seven contracting steps that stays under 1e-5, the float kernel's own tolerance; the
layer norms multiply it by 1/std of what they normalise (a few units here), hence 5e-5 there.

Sizes: H = 33 leaves one weight of each row after the last 16- or 8-lane vector (the scalar
tail), 4H = 132 leaves rows after the last block of eight, P = 3 is shorter than one vector.
"""

import pytest
import torch

from lstmkit.kernels.cpu import quant
from lstmkit.reference.lstm import CellOptions, RecurrenceInputs, recurrence_forward

TOL = dict(atol=1e-5, rtol=1e-5)
TOL_LN = dict(atol=5e-5, rtol=5e-5)

if not quant.is_available():
    pytest.skip(f"quantized CPU kernel unavailable: {quant.build_error()}", allow_module_level=True)
ISAS = quant.available_isas()

I, H, P = 5, 33, 3
VARIANTS = {
    "vanilla": {},
    "peephole": {"peephole": True},
    "layer_norm": {"layer_norm": True},
    "projection": {"proj": True},
    "zoneout": {"zoneout": True},
    "coupled": {"coupled": True},
    "no_forget": {"forget_gate": False, "peephole": True},
    "forget_bias": {"forget_bias": True},
    "everything": {"proj": True, "peephole": True, "layer_norm": True, "zoneout": True},
}


def make(variant: dict, T: int, B: int, mode: str, seed: int = 0):
    """(kernel inputs with x folded, kernel inputs with xg, reference inputs, opts)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    Pv = P if variant.get("proj") else H
    x = r(T, B, I)
    w_ih, w_hh = r(4 * H, I) * 0.4, r(4 * H, Pv) * 0.3
    b_ih, b_hh = r(4 * H) * 0.1, r(4 * H) * 0.1
    if variant.get("forget_bias"):
        b_ih[H : 2 * H] += 1.0
    q_ih, s_ih = quant.quantize_weight(w_ih, mode)
    q_hh, s_hh = quant.quantize_weight(w_hh, mode)
    fq_ih, fq_hh = quant.dequantize_weight(q_ih, s_ih), quant.dequantize_weight(q_hh, s_hh)
    h0, c0 = r(B, Pv) * 0.5, r(B, H) * 0.5
    kw: dict = {}
    ref: dict = {}
    if variant.get("proj"):
        w_hr = r(P, H) * 0.3
        q_hr, s_hr = quant.quantize_weight(w_hr, mode)
        kw.update(weight_hr=q_hr, scale_hr=s_hr)
        ref["weight_hr"] = quant.dequantize_weight(q_hr, s_hr)
    if variant.get("peephole"):
        for name in ("weight_ci", "weight_cf", "weight_co"):
            kw[name] = ref[name] = r(H) * 0.3
    ln_ih = None
    if variant.get("layer_norm"):
        ln_ih = 1 + 0.1 * r(4 * H)
        for name, n in (("ln_weight_hh", 4 * H), ("ln_weight_c", H)):
            kw[name] = ref[name] = 1 + 0.1 * r(n)
        kw["ln_bias_c"] = ref["ln_bias_c"] = 0.1 * r(H)
    zh = zc = 0.0
    if variant.get("zoneout"):
        zh, zc = 0.2, 0.3
        ref["zoneout_h"] = torch.full((T, B, Pv), zh)
        ref["zoneout_c"] = torch.full((T, B, H), zc)
    xg = x @ fq_ih.T
    xg = (
        torch.nn.functional.layer_norm(xg, (4 * H,), ln_ih, b_ih)
        if ln_ih is not None
        else xg + b_ih
    )
    common = dict(
        h0=h0, c0=c0, weight_hh=q_hh, scale_hh=s_hh, bias_hh=b_hh, **kw, zoneout_h=zh, zoneout_c=zc
    )
    folded = quant.QuantRecurrenceInputs(
        inp=x, weight_ih=q_ih, scale_ih=s_ih, bias_ih=b_ih, ln_weight_ih=ln_ih, **common
    )
    unfolded = quant.QuantRecurrenceInputs(inp=xg, **common)
    reference = RecurrenceInputs(xg=xg, h0=h0, c0=c0, weight_hh=fq_hh, bias_hh=b_hh, **ref)
    opts = CellOptions(
        coupled=bool(variant.get("coupled")), forget_gate=variant.get("forget_gate", True)
    )
    return folded, unfolded, reference, opts


def run_kernel(inputs, opts, reverse=False, lengths=None, isa=None):
    return quant.quant_recurrence(
        inputs, lengths, reverse, opts.coupled, opts.forget_gate, opts.layer_norm_eps, isa
    )


def close(got, want, tol=TOL):
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("mode", quant.MODES)
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("T,B", [(1, 1), (7, 3)])
def test_kernel_matches_fake_quant_reference(mode, variant, T, B):
    folded, unfolded, reference, opts = make(VARIANTS[variant], T, B, mode)
    tol = TOL_LN if VARIANTS[variant].get("layer_norm") else TOL
    for reverse in (False, True):
        want = recurrence_forward(reference, None, reverse, opts)[:3]
        close(run_kernel(unfolded, opts, reverse), want, tol)
        close(run_kernel(folded, opts, reverse), want, tol)  # W_ih folded into the step


@pytest.mark.parametrize("mode", quant.MODES)
def test_lengths_match_each_row_run_alone(mode):
    """Padded lengths: each row equals the reference run on its own first lengths[b] steps
    (also reversed: a row's reverse pass starts at its own last step); the rest outputs zeros
    and h_n, c_n are the state at the row's last step."""
    variant = VARIANTS["everything"]
    T, B = 7, 3
    folded, unfolded, reference, opts = make(variant, T, B, mode, seed=1)
    lengths = torch.tensor([4, 7, 1])
    for reverse in (False, True):
        out, h_n, c_n = run_kernel(unfolded, opts, reverse, lengths)
        for b, n in enumerate(lengths.tolist()):
            row = reference._replace(
                xg=reference.xg[:n, b : b + 1],
                h0=reference.h0[b : b + 1],
                c0=reference.c0[b : b + 1],
                zoneout_h=reference.zoneout_h[:n, b : b + 1],
                zoneout_c=reference.zoneout_c[:n, b : b + 1],
            )
            o, h, c, _ = recurrence_forward(row, None, reverse, opts)
            torch.testing.assert_close(out[:n, b : b + 1], o, **TOL_LN)
            assert bool((out[n:, b] == 0).all())
            torch.testing.assert_close(h_n[b : b + 1], h, **TOL_LN)
            torch.testing.assert_close(c_n[b : b + 1], c, **TOL_LN)


@pytest.mark.parametrize("mode", quant.MODES)
@pytest.mark.parametrize("B", [1, 2, 3, 4, 5])
def test_every_isa_agrees_with_the_portable_loop(mode, B):
    folded, unfolded, _, opts = make(VARIANTS["everything"], 7, B, mode, seed=2)
    want = run_kernel(folded, opts, isa="portable")
    for isa in ISAS:
        close(run_kernel(folded, opts, isa=isa), want, TOL_LN)


def test_int8_and_bf16_weights_are_what_the_scheme_says():
    w = torch.tensor([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0], [3.0, 1.5, -0.01]])
    q, s = quant.quantize_weight(w, "int8")
    assert q.dtype == torch.int8 and s.dtype == torch.float32
    torch.testing.assert_close(s, torch.tensor([1.0 / 127, 1.0, 3.0 / 127]))
    assert q.tolist() == [[64, -127, 32], [0, 0, 0], [127, 64, 0]]  # round(w / s), by hand
    # every weight within half a step of its row's scale
    assert ((quant.dequantize_weight(q, s) - w).abs() <= s[:, None] / 2 + 1e-7).all()
    b, none = quant.quantize_weight(w, "bf16")
    assert b.dtype == torch.bfloat16 and none is None
    assert ((b.float() - w).abs() <= w.abs() * 2**-8).all()  # 8 significant bits


def test_bad_arguments_are_named():
    folded, unfolded, _, opts = make(VARIANTS["vanilla"], 2, 1, "int8")
    with pytest.raises(ValueError, match="mode must be one of int8, bf16"):
        quant.quantize_weight(torch.ones(2, 2), "int4")
    with pytest.raises(ValueError, match="isa"):
        run_kernel(unfolded, opts, isa="sse2")
    with pytest.raises(RuntimeError, match="w_hh must have shape"):
        run_kernel(unfolded._replace(weight_hh=unfolded.weight_hh[:, :2].contiguous()), opts)
    with pytest.raises(RuntimeError, match="needs its per-row scales"):
        run_kernel(unfolded._replace(scale_hh=None), opts)
    with pytest.raises(RuntimeError, match="lengths must be in"):
        run_kernel(unfolded, opts, lengths=torch.tensor([3]))


def test_a_cpu_without_vector_units_says_so_once(monkeypatch, capsys):
    """Where the CPU has neither AVX-512 nor AVX2+FMA the portable loop runs, with one line."""
    folded, unfolded, reference, opts = make(VARIANTS["vanilla"], 2, 1, "int8")
    monkeypatch.setattr(quant, "best_isa", lambda: "portable")
    monkeypatch.setattr(quant, "available_isas", lambda: ("portable",))
    monkeypatch.setattr(quant, "_warned_portable", False)
    monkeypatch.delenv("LSTMKIT_QUANT_ISA", raising=False)
    for _ in range(2):
        close(run_kernel(unfolded, opts), recurrence_forward(reference, None, False, opts)[:3])
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert lines == [
        "lstmkit: this CPU has neither AVX-512 nor AVX2+FMA: the quantized kernel runs its "
        "portable loop (slower)"
    ]
    with pytest.raises(ValueError, match="isa 'avx2' is not available on this CPU"):
        run_kernel(unfolded, opts, isa="avx2")


# -- int8 activations ---------------------------------------------------------------------------
#
# The reference is recurrence_forward itself with each int8 matrix replaced by Int8Matmul:
# ``a @ W.T`` quantizes a per row with quant.quantize_activation, sums q_a q_w exactly (float64
# holds these integers exactly), then rescales by (s_a * s_w) in float32, the kernel's order.
# Kernel and reference then pick the same q_a and the same integer sums; what differs is the
# float rounding of the gate math (libmvec's expf/tanhf vs torch's, a few 2^-24) and of the
# layer norms. A difference that moved some h_k across a rounding boundary of q_a would change
# one q_a by 1 (a pre-activation by s_a * s_w * |q_w| ~ 1e-4 here): these seeds have none (the
# observed difference is below 4e-7), so the tolerance is float rounding, 2e-6.

TOL_I8 = dict(atol=2e-6, rtol=2e-6)


class Int8Matmul:
    """``a @ W.T`` (what lstm_recurrent_step writes) with dynamic int8 activations."""

    def __init__(self, q: torch.Tensor, s: torch.Tensor):
        self.q, self.s = q, s

    @property
    def T(self):  # noqa: N802 (what the reference calls: a @ weight.T)
        return self

    def __rmatmul__(self, a: torch.Tensor) -> torch.Tensor:
        qa, sa = quant.quantize_activation(a)
        acc = qa.double() @ self.q.double().T  # exact: |acc| <= 127^2 K << 2^53
        return (sa * self.s) * acc.float()


def int8_reference(folded, opts, reverse=False):
    """recurrence_forward with Int8Matmul for W_ih, W_hh and W_hr (the kernel's int8 path)."""
    T, B = folded.inp.shape[:2]
    xg = folded.inp @ Int8Matmul(folded.weight_ih, folded.scale_ih).T
    G = xg.shape[-1]
    if folded.ln_weight_ih is not None:
        xg = torch.nn.functional.layer_norm(xg, (G,), folded.ln_weight_ih, folded.bias_ih)
    else:
        xg = xg + folded.bias_ih
    extra = {}
    if folded.weight_hr is not None:
        extra["weight_hr"] = Int8Matmul(folded.weight_hr, folded.scale_hr)
    if folded.zoneout_h:
        extra["zoneout_h"] = torch.full((T, B, folded.h0.shape[1]), folded.zoneout_h)
        extra["zoneout_c"] = torch.full((T, B, folded.c0.shape[1]), folded.zoneout_c)
    ref = RecurrenceInputs(
        xg=xg,
        h0=folded.h0,
        c0=folded.c0,
        weight_hh=Int8Matmul(folded.weight_hh, folded.scale_hh),
        bias_hh=folded.bias_hh,
        weight_ci=folded.weight_ci,
        weight_cf=folded.weight_cf,
        weight_co=folded.weight_co,
        ln_weight_hh=folded.ln_weight_hh,
        ln_weight_c=folded.ln_weight_c,
        ln_bias_c=folded.ln_bias_c,
        **extra,
    )
    return recurrence_forward(ref, None, reverse, opts)[:3]


def run_i8(inputs, opts, reverse=False, lengths=None, isa=None):
    return quant.quant_recurrence(
        inputs,
        lengths,
        reverse,
        opts.coupled,
        opts.forget_gate,
        opts.layer_norm_eps,
        isa,
        activations="int8",
    )


def assert_equal(got, want):
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b), (a - b).abs().max().item()


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("T,B", [(1, 1), (7, 3), (5, 6)])
def test_int8_activations_match_the_integer_reference(variant, T, B):
    folded, _, _, opts = make(VARIANTS[variant], T, B, "int8")
    for reverse in (False, True):
        want = int8_reference(folded, opts, reverse)
        close(run_i8(folded, opts, reverse), want, TOL_I8)


@pytest.mark.parametrize("B", [1, 2, 3, 4, 5])
def test_int8_activations_every_isa_is_bitwise_equal(B):
    """The integer sums are exact and the quantization and rescale are shared, so every
    instruction set (VNNI 512 / 256 bits, AVX2 vpmaddwd, portable) gives the same bits; with
    lengths and reversed too. H = 33 and P = 3 leave partial blocks of 16 rows and of 4 and 16
    columns."""
    folded, _, _, opts = make(VARIANTS["everything"], 7, B, "int8", seed=2)
    lengths = torch.arange(B) % 7 + 1
    for reverse in (False, True):
        for lens in (None, lengths):
            want = run_i8(folded, opts, reverse, lens, isa="portable")
            for isa in ISAS:
                assert_equal(run_i8(folded, opts, reverse, lens, isa=isa), want)


def test_int8_activations_t_steps_equal_t_one_step_calls():
    """Each x_t and h_t is quantized on its own: a T-step call is T one-step calls, bitwise."""
    folded, _, _, opts = make(VARIANTS["everything"], 6, 3, "int8", seed=3)
    out, h_n, c_n = run_i8(folded, opts)
    h, c = folded.h0, folded.c0
    for t in range(6):
        o, h, c = run_i8(folded._replace(inp=folded.inp[t : t + 1], h0=h, c0=c), opts)
        assert torch.equal(o[0], out[t])
    assert torch.equal(h, h_n) and torch.equal(c, c_n)


def test_int8_activations_edge_cases():
    """All-zero x and h (s_a = 0: no division by zero, the products are 0), large values, and
    the packs passed in or made by the kernel."""
    folded, _, _, opts = make(VARIANTS["projection"], 4, 5, "int8", seed=4)
    zero = folded._replace(
        inp=torch.zeros_like(folded.inp),
        h0=torch.zeros_like(folded.h0),
        c0=torch.zeros_like(folded.c0),
    )
    for isa in ISAS:
        got = run_i8(zero, opts, isa=isa)
        assert all(bool(torch.isfinite(g).all()) for g in got)
        close(got, int8_reference(zero, opts), TOL_I8)
    # the first step from rest: every product is 0, h = o tanh(i g) of the biases alone
    assert torch.equal(quant.quantize_activation(torch.zeros(2, 3))[1], torch.zeros(2, 1))
    big = folded._replace(inp=folded.inp * 1e4, h0=folded.h0 * 1e3)
    want = int8_reference(big, opts)
    for isa in ISAS:
        close(run_i8(big, opts, isa=isa), want, TOL_I8)
    packed = folded._replace(
        pack_ih=quant.pack_int8(folded.weight_ih),
        pack_hh=quant.pack_int8(folded.weight_hh),
        pack_hr=quant.pack_int8(folded.weight_hr),
    )
    assert_equal(run_i8(packed, opts), run_i8(folded, opts))


def test_activation_quantization_and_packing_are_what_the_scheme_says():
    a = torch.tensor([[127.0, 2.5, -3.5, 0.5], [0.5, -1.0, 0.25, 0.0], [0.0, 0.0, 0.0, 0.0]])
    q, s = quant.quantize_activation(a)
    torch.testing.assert_close(s, torch.tensor([[1.0], [1.0 / 127], [0.0]]))
    # by hand: round half to even (2.5 -> 2, -3.5 -> -4, 63.5 -> 64), 31.75 -> 32
    assert q.tolist() == [[127, 2, -4, 0], [64, -127, 32, 0], [0, 0, 0, 0]]
    w = torch.randint(-127, 128, (19, 6), generator=torch.Generator().manual_seed(0))
    w = w.to(torch.int8)
    packed, rowsum = quant.pack_int8(w)
    assert packed.shape == (32 * 2 * 4,) and rowsum.dtype == torch.int32
    assert rowsum[:19].tolist() == w.sum(1).tolist() and rowsum[19:].tolist() == [0] * 13
    blocks = packed.view(2, 2, 16, 4)  # (row block, column group, row, column)
    for j, k in ((0, 0), (5, 3), (17, 5), (18, 4)):
        assert blocks[j // 16, k // 4, j % 16, k % 4].item() == w[j, k].item()
    assert blocks[1, :, 3:].abs().sum().item() == 0  # rows 19..31: padding
    assert blocks[:, 1, :, 2:].abs().sum().item() == 0  # columns 6, 7: padding


def test_int8_activations_bad_arguments_are_named():
    folded, unfolded, _, opts = make(VARIANTS["vanilla"], 2, 1, "bf16")
    with pytest.raises(RuntimeError, match="int8 activations need int8 weights"):
        run_i8(folded, opts)
    with pytest.raises(ValueError, match="activations must be one of int8, float"):
        quant.quant_recurrence(unfolded, activations="int4")
    folded, _, _, opts = make(VARIANTS["vanilla"], 2, 1, "int8")
    bad = folded._replace(pack_hh=quant.pack_int8(folded.weight_hh[:8].contiguous()))
    with pytest.raises(RuntimeError, match="the packed w_hh must be"):
        run_i8(bad, opts)
