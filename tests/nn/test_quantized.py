"""QuantizedLSTM and lstmkit.quantize: the composition (layers, directions, packing, lengths,
batch_first, unbatched, hx) against lstmkit.LSTM carrying the dequantized weights, the
accuracy against the float model within a derived bound, and the state dict round trip; the
int8-activation mode against the integer reference composed over layers and directions."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstmkit
from lstmkit.kernels.cpu import quant
from lstmkit.nn.quantized import QuantizedLSTM, quantize
from lstmkit.reference.lstm import CellOptions, RecurrenceInputs, recurrence_forward

if not quant.is_available():
    pytest.skip(f"quantized CPU kernel unavailable: {quant.build_error()}", allow_module_level=True)

# Same weights, float rounding only (see tests/kernels/cpu/test_quant.py); layer norm 5e-5.
TOL = dict(atol=5e-5, rtol=5e-5)

CONFIGS = {
    "vanilla": {},
    "bi_proj_2layers": dict(num_layers=2, bidirectional=True, proj_size=3),
    "layer_norm_peephole": dict(layer_norm=True, peephole=True),
    "coupled_zoneout": dict(coupled=True, zoneout_h=0.1, zoneout_c=0.2, recurrent_dropout=0.3),
    "no_forget_bias": dict(forget_gate=False, forget_bias=1.0, weight_drop=0.2),
}


def fake_quantized(model: lstmkit.LSTM, mode: str) -> lstmkit.LSTM:
    """A float copy of ``model`` whose weight matrices hold the dequantized values."""
    import copy

    out = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in out.named_parameters():
            if name.startswith(("weight_ih", "weight_hh", "weight_hr")):
                p.copy_(quant.dequantize_weight(*quant.quantize_weight(p, mode)))
    return out


def lstm(cfg: dict, seed: int = 0, **kw) -> lstmkit.LSTM:
    torch.manual_seed(seed)
    return lstmkit.LSTM(4, 8, **cfg, **kw).eval()


@pytest.mark.parametrize("mode", quant.MODES)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_the_float_lstm_with_dequantized_weights(mode, name):
    m = lstm(CONFIGS[name], batch_first=True)
    q, ref = quantize(m, mode, "float"), fake_quantized(m, mode)
    x = torch.randn(3, 6, 4)
    D = 2 if m.bidirectional else 1
    P = m.proj_size or m.hidden_size
    hx = (torch.randn(m.num_layers * D, 3, P), torch.randn(m.num_layers * D, 3, 8))
    for args in ((x,), (x, hx), (x[:, :1], hx)):  # T = 1: the folded input projection
        got, want = q(*args), ref(*args)
        torch.testing.assert_close(got[0], want[0], **TOL)
        torch.testing.assert_close(got[1], want[1], **TOL)
    # unbatched
    got, want = q(x[0]), ref(x[0])
    torch.testing.assert_close(got[0], want[0], **TOL)
    # packed (unsorted lengths) and padded lengths agree with the float LSTM on the packing
    lengths = torch.tensor([4, 6, 2])
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    (gp, gs), (wp, ws) = q(packed), ref(packed)
    torch.testing.assert_close(gp.data, wp.data, **TOL)
    torch.testing.assert_close(gs, ws, **TOL)
    out, (h, c) = q(x, lengths=lengths)
    want_out, _ = pad_packed_sequence(wp, batch_first=True, total_length=6)
    torch.testing.assert_close(out, want_out, **TOL)
    torch.testing.assert_close(h, ws[0], **TOL)


@pytest.mark.parametrize("mode", quant.MODES)
def test_one_step_from_rest_within_the_quantization_bound(mode):
    """One step from h = c = 0 (vanilla): each pre-activation moves by at most
    ``delta = max_j |dW_j| . |x|``, with ``|dW_jk| <= s_j / 2`` (int8: half a step) or
    ``<= |W_jk| 2^-9`` (bf16: half an ulp of 8 bits); ``h = o tanh(i g)`` then moves by at most
    ``delta/4 (o) + delta/4 (i) + delta (g) = 1.5 delta`` (sigmoid' <= 1/4, tanh' <= 1)."""
    m = lstm({})
    x = torch.randn(1, 5, 4) * 3
    w = m.weight_ih_l0.detach()
    if mode == "int8":
        dw = (w.abs().amax(1) / 127 / 2)[:, None].expand_as(w)
    else:
        dw = w.abs() * 2**-9
    delta = (x[0].abs() @ dw.T).max().item()
    err = (quantize(m, mode, "float")(x)[0] - m(x)[0]).abs().max().item()
    assert err <= 1.5 * delta + 1e-6
    assert err > 0  # it did quantize


def test_torch_lstm_and_models_quantize():
    torch.manual_seed(0)
    t = nn.LSTM(4, 8, num_layers=2, bidirectional=True, proj_size=2).eval()
    x = torch.randn(5, 2, 4)
    q = quantize(t, "int8")
    assert isinstance(q, QuantizedLSTM) and q.weight_hh_l1_reverse.dtype == torch.int8
    k = lstmkit.LSTM(4, 8, num_layers=2, bidirectional=True, proj_size=2).eval()
    k.load_state_dict(t.state_dict())
    torch.testing.assert_close(q(x)[0], quantize(k, "int8")(x)[0], atol=0, rtol=0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = lstmkit.LSTM(4, 8, batch_first=True)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    net = Net().eval()
    qnet = quantize(net, "bf16")
    assert isinstance(qnet.rnn, QuantizedLSTM) and isinstance(net.rnn, lstmkit.LSTM)
    assert qnet.rnn.weight_ih_l0.dtype == torch.bfloat16
    y = torch.randn(2, 3, 4)
    torch.testing.assert_close(qnet(y), net(y), atol=1e-2, rtol=0)


@pytest.mark.parametrize("mode", quant.MODES)
def test_state_dict_round_trip(mode, tmp_path):
    from safetensors.torch import load_file, save_file

    m = lstm(CONFIGS["bi_proj_2layers"] | {"layer_norm": True, "peephole": True})
    q = quantize(m, mode)
    path = tmp_path / "q.safetensors"
    save_file(q.state_dict(), str(path))
    fresh = QuantizedLSTM(**q.config())
    fresh.load_state_dict(load_file(str(path)))
    sd = fresh.state_dict()
    assert sd.keys() == q.state_dict().keys()
    for k, v in q.state_dict().items():
        assert sd[k].dtype == v.dtype and torch.equal(sd[k], v), k
    assert fresh.activations == q.activations == ("int8" if mode == "int8" else "float")
    x = torch.randn(4, 2, 4)
    torch.testing.assert_close(fresh(x)[0], q(x)[0], atol=0, rtol=0)
    want = torch.int8 if mode == "int8" else torch.bfloat16
    assert sd["weight_hh_l0"].dtype == want and ("scale_hh_l0" in sd) == (mode == "int8")


def test_bad_input_is_named():
    m = lstmkit.LSTM(4, 8)  # train mode
    with pytest.raises(ValueError, match=r"eval mode \(call model.eval\(\) first\)"):
        quantize(m, "int8")
    with pytest.raises(ValueError, match="mode must be one of int8, bf16, got 'fp8'"):
        quantize(m.eval(), "fp8")
    q = quantize(m, "int8")
    with pytest.raises(ValueError, match="inference only"):
        q.train()
    with pytest.raises(ValueError, match="input_size=4"):
        q(torch.randn(3, 2, 5))
    with pytest.raises(ValueError, match="lengths must be 2 values"):
        q(torch.randn(3, 2, 4), lengths=torch.tensor([4, 1]))
    with pytest.raises(ValueError, match="has no LSTM"):
        quantize(nn.Linear(2, 2).eval(), "int8")


# -- int8 activations ---------------------------------------------------------------------------

# Same integer math, float rounding of the gate math and layer norms only (see
# tests/kernels/cpu/test_quant.py, TOL_I8); two layers pass it on.
TOL_I8 = dict(atol=5e-6, rtol=5e-6)


class Int8Matmul:
    """``a @ W.T`` with ``a`` quantized per row (quant.quantize_activation), exact integer sums,
    rescaled by ``s_a * s_w`` in float32 (the kernel's int8-activation product)."""

    def __init__(self, q, s):
        self.q, self.s = q, s

    @property
    def T(self):  # noqa: N802
        return self

    def __rmatmul__(self, a):
        qa, sa = quant.quantize_activation(a)
        return (sa * self.s) * (qa.double() @ self.q.double().T).float()


def int8_reference(q: QuantizedLSTM, x, hx=None):
    """The int8-activation LSTM composed from lstmkit.reference: every layer and direction is
    recurrence_forward with Int8Matmul for W_ih, W_hh, W_hr; x (T, B, I)."""
    T, B = x.shape[:2]
    D = 2 if q.bidirectional else 1
    H, P = q.hidden_size, q.proj_size or q.hidden_size
    if hx is None:
        hx = (x.new_zeros(q.num_layers * D, B, P), x.new_zeros(q.num_layers * D, B, H))
    opts = CellOptions(coupled=q.coupled, forget_gate=q.forget_gate)
    layer_in, hs, cs = x, [], []
    for k in range(q.num_layers):
        outs = []
        for d in range(D):
            sfx = q._sfx(k, d)
            g = lambda n: getattr(q, n + sfx, None)  # noqa: E731, B023
            mm = lambda n: Int8Matmul(g("weight_" + n), g("scale_" + n))  # noqa: E731, B023
            xg = layer_in @ mm("ih").T
            if g("ln_weight_ih") is not None:
                xg = torch.nn.functional.layer_norm(xg, (4 * H,), g("ln_weight_ih"), g("bias_ih"))
            elif g("bias_ih") is not None:
                xg = xg + g("bias_ih")
            zone = {}
            if q.zoneout_h or q.zoneout_c:
                zone = dict(
                    zoneout_h=torch.full((T, B, P), q.zoneout_h),
                    zoneout_c=torch.full((T, B, H), q.zoneout_c),
                )
            inputs = RecurrenceInputs(
                xg=xg,
                h0=hx[0][k * D + d],
                c0=hx[1][k * D + d],
                weight_hh=mm("hh"),
                bias_hh=g("bias_hh"),
                weight_hr=mm("hr") if q.proj_size else None,
                weight_ci=g("weight_ci"),
                weight_cf=g("weight_cf"),
                weight_co=g("weight_co"),
                ln_weight_hh=g("ln_weight_hh"),
                ln_weight_c=g("ln_weight_c"),
                ln_bias_c=g("ln_bias_c"),
                **zone,
            )
            out, h, c, _ = recurrence_forward(inputs, None, d == 1, opts)
            outs.append(out)
            hs.append(h)
            cs.append(c)
        layer_in = torch.cat(outs, -1)
    return layer_in, (torch.stack(hs), torch.stack(cs))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_int8_activations_match_the_integer_reference(name):
    m = lstm(CONFIGS[name])
    q = quantize(m, "int8")  # int8 activations: the int8 default
    assert q.activations == "int8"
    D = 2 if m.bidirectional else 1
    P = m.proj_size or m.hidden_size
    x = torch.randn(6, 3, 4)
    hx = (torch.randn(m.num_layers * D, 3, P), torch.randn(m.num_layers * D, 3, 8))
    for args in ((x,), (x, hx), (x[:1], hx)):
        got, want = q(*args), int8_reference(q, *args)
        torch.testing.assert_close(got[0], want[0], **TOL_I8)
        torch.testing.assert_close(got[1], want[1], **TOL_I8)


def test_int8_activations_rows_steps_and_packing_are_independent():
    """Each row and step is quantized on its own: a row of a padded batch (lengths, or packed)
    equals that row run alone, and T one-step calls equal one T-step call, bitwise."""
    m = lstm(CONFIGS["bi_proj_2layers"] | {"layer_norm": True, "peephole": True})
    q = quantize(m, "int8")
    x = torch.randn(6, 3, 4)
    lengths = torch.tensor([4, 6, 2])
    out, (h, c) = q(x, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        o, (hb, cb) = q(x[:n, b : b + 1])
        assert torch.equal(out[:n, b : b + 1], o) and bool((out[n:, b] == 0).all())
        assert torch.equal(h[:, b : b + 1], hb) and torch.equal(c[:, b : b + 1], cb)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    pout, (ph, pc) = q(packed)
    assert torch.equal(pad_packed_sequence(pout, total_length=6)[0], out)
    assert torch.equal(ph, h) and torch.equal(pc, c)
    uni = quantize(lstm({"layer_norm": True, "proj_size": 3}), "int8")
    full, state = uni(x)
    s = None
    for t in range(6):
        o, s = uni(x[t : t + 1], s)
        assert torch.equal(o[0], full[t])
    assert torch.equal(s[0], state[0]) and torch.equal(s[1], state[1])


def test_int8_activations_one_step_from_rest_within_the_quantization_bound():
    """One step from h = c = 0 against the float LSTM: x is quantized (|dx_k| <= s_a / 2) and
    W too (|dW_jk| <= s_j / 2), so a pre-activation moves by at most
    delta = max_j sum_k (|W_jk| s_a / 2 + |x_k| s_j / 2 + s_j s_a / 4), and h by 1.5 delta
    (as in test_one_step_from_rest_within_the_quantization_bound)."""
    m = lstm({})
    x = torch.randn(1, 5, 4) * 3
    w = m.weight_ih_l0.detach()
    s_w = w.abs().amax(1) / 127
    s_a = x[0].abs().amax(1, keepdim=True) / 127  # (B, 1)
    delta = (
        (s_a / 2) * w.abs().sum(1) + (x[0].abs() @ (s_w / 2)[:, None].expand_as(w).T)
    ) + w.shape[1] * s_a * s_w / 4
    err = (quantize(m, "int8")(x)[0] - m(x)[0]).abs().max().item()
    assert err <= 1.5 * delta.max().item() + 1e-6
    assert err > 0


def test_activations_option_is_checked_and_kept():
    m = lstm({})
    assert quantize(m, "int8").activations == "int8"
    assert quantize(m, "int8", "float").activations == "float"
    assert quantize(m, "bf16").activations == "float"
    with pytest.raises(ValueError, match="needs int8 weights"):
        quantize(m, "bf16", "int8")
    with pytest.raises(ValueError, match="activations must be one of int8, float, got 'u8'"):
        quantize(m, "int8", "u8")
    q = quantize(m, "int8", "float")
    assert QuantizedLSTM(**q.config()).activations == "float"
    assert "activations=float" in repr(q)
    # the packs follow the weights: a state dict loaded in place repacks them
    q8, other = quantize(m, "int8"), quantize(lstm({}, seed=1), "int8")
    x = torch.randn(3, 2, 4)
    q8(x)
    q8.load_state_dict(other.state_dict())
    assert torch.equal(q8(x)[0], other(x)[0])


# -- the one-step fast path (streaming calls) ----------------------------------------------------


@pytest.mark.parametrize(
    "mode, activations", [("int8", "int8"), ("int8", "float"), ("bf16", "float")]
)
@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"layer_norm": True, "proj_size": 3},
        {"peephole": True, "num_layers": 2, "bidirectional": True},
        {"coupled": True, "zoneout_h": 0.2, "zoneout_c": 0.1, "batch_first": True},
    ],
)
def test_one_step_fast_path_equals_the_general_path(mode, activations, kw):
    torch.manual_seed(0)
    q = lstmkit.quantize(lstmkit.LSTM(5, 6, **kw).eval(), mode, activations=activations)
    D = 2 if q.bidirectional else 1
    LD, P = q.num_layers * D, q.proj_size or 6
    for B, batched in [(1, True), (3, True), (1, False)]:
        x = torch.randn((B, 1, 5) if q.batch_first else (1, B, 5)) if batched else torch.randn(1, 5)
        shape = (LD, B) if batched else (LD,)
        hx = (torch.randn(*shape, P), torch.randn(*shape, 6))
        for state in (None, hx):
            fast = q._step(x, state)
            assert fast is not None
            ones = torch.ones(B, dtype=torch.int64)  # lengths: the general path runs
            want = q.forward(x, state, lengths=ones) if batched else None
            if want is None:  # unbatched: the general path through a batch of one
                xb = x.unsqueeze(1)
                sb = None if state is None else tuple(s.unsqueeze(1) for s in state)
                o, (h, c) = q.forward(xb, sb, lengths=torch.ones(1, dtype=torch.int64))
                want = (o[:, 0], (h[:, 0], c[:, 0]))
            torch.testing.assert_close(fast, want, atol=1e-6, rtol=1e-6)


def test_one_step_fast_path_declines_and_follows_state_dict_changes():
    torch.manual_seed(0)
    q = lstmkit.quantize(lstmkit.LSTM(5, 6).eval(), "int8")
    x = torch.randn(1, 2, 5)
    assert q._step(torch.randn(3, 2, 5), None) is None  # T > 1
    assert q._step(torch.randn(1, 2, 4), None) is None  # features
    assert q._step(x, (torch.zeros(1, 3, 6), torch.zeros(1, 3, 6))) is None  # batch
    assert q._step(x, [torch.zeros(1, 2, 6)]) is None
    before = q(x)[0]
    other = lstmkit.quantize(lstmkit.LSTM(5, 6).eval(), "int8")
    q.load_state_dict(other.state_dict())  # new weights: the cached arguments and packs go
    torch.testing.assert_close(q(x)[0], other(x)[0])
    assert not torch.equal(q(x)[0], before)
    with pytest.raises(ValueError, match="input_size=5"):
        q(torch.randn(1, 2, 4))
