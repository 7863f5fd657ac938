"""lstmkit.LSTM equals torch.nn.LSTM: outputs, final states and all gradients (float32, 1e-5)."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lstmkit
from tests.nn.helpers import backends, make_input, out_tensor

ATOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def check_parity(
    backend,
    L,
    bidirectional,
    proj,
    batch_first,
    packed,
    unbatched,
    with_hx,
    dtype=torch.float32,
    T=6,
    B=3,
    I=5,
    H=7,
):
    kw = dict(num_layers=L, bidirectional=bidirectional, proj_size=proj, batch_first=batch_first)
    ref = torch.nn.LSTM(I, H, **kw, dtype=dtype)
    ours = lstmkit.LSTM(I, H, **kw, dtype=dtype, backend=backend)
    ours.load_state_dict(ref.state_dict())
    x = make_input(
        T, B, I, batch_first=batch_first, packed=packed, unbatched=unbatched, dtype=dtype
    )
    hx = None
    if with_hx:
        D, P = (2 if bidirectional else 1), (proj or H)
        shape_b = () if unbatched else (B,)
        hx = (
            torch.randn(L * D, *shape_b, P, dtype=dtype, requires_grad=True),
            torch.randn(L * D, *shape_b, H, dtype=dtype, requires_grad=True),
        )
    out_r, (h_r, c_r) = ref(x, hx)
    out_o, (h_o, c_o) = ours(x, hx)
    atol = ATOL[dtype]
    for a, b in ((out_tensor(out_o), out_tensor(out_r)), (h_o, h_r), (c_o, c_r)):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=atol, rtol=0)
    if packed:
        assert torch.equal(out_o.batch_sizes, out_r.batch_sizes)
        assert torch.equal(out_o.unsorted_indices, out_r.unsorted_indices)
    w = [torch.randn_like(t) for t in (out_tensor(out_r), h_r, c_r)]

    def grads(module, o, h, c):
        loss = (out_tensor(o) * w[0]).sum() + (h * w[1]).sum() + (c * w[2]).sum()
        inputs = list(module.parameters()) + (list(hx) if hx else [])
        return torch.autograd.grad(loss, inputs)

    for g_o, g_r in zip(grads(ours, out_o, h_o, c_o), grads(ref, out_r, h_r, c_r), strict=True):
        torch.testing.assert_close(g_o, g_r, atol=atol, rtol=0)


configs = st.fixed_dictionaries(
    {
        "L": st.integers(1, 3),
        "bidirectional": st.booleans(),
        "proj": st.sampled_from([0, 3]),
        "batch_first": st.booleans(),
        "packed": st.booleans(),
        "unbatched": st.booleans(),
        "with_hx": st.booleans(),
    }
)


@pytest.mark.parametrize("backend", backends())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs)
def test_random_configurations_match_torch(backend, cfg):
    if cfg["packed"] and cfg["unbatched"]:
        cfg["unbatched"] = False
    check_parity(backend, **cfg)


@pytest.mark.parametrize("backend", ["auto", "reference", *backends()])
@pytest.mark.parametrize("packed", [False, True])
def test_three_layer_bidirectional_projection(backend, packed):
    check_parity(backend, 3, True, 4, False, packed, False, True)


@pytest.mark.parametrize("backend", backends())
def test_float64_parity_is_exact_to_roundoff(backend):
    check_parity(backend, 2, True, 0, True, False, False, True, dtype=torch.float64)


def test_same_seed_same_init_as_torch():
    torch.manual_seed(3)
    ref = torch.nn.LSTM(4, 6, 2, bidirectional=True, proj_size=2)
    torch.manual_seed(3)
    ours = lstmkit.LSTM(4, 6, 2, bidirectional=True, proj_size=2)
    for (n1, p1), (n2, p2) in zip(ref.named_parameters(), ours.named_parameters(), strict=True):
        assert n1 == n2
        assert torch.equal(p1, p2)
    assert isinstance(ours, torch.nn.LSTM)


def test_state_dict_round_trips_both_ways():
    ref = torch.nn.LSTM(4, 6, 2, bidirectional=True, proj_size=3)
    ours = lstmkit.LSTM(4, 6, 2, bidirectional=True, proj_size=3)
    ours.load_state_dict(ref.state_dict())
    back = torch.nn.LSTM(4, 6, 2, bidirectional=True, proj_size=3)
    back.load_state_dict(ours.state_dict())
    for k, v in ref.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)
    x = torch.randn(5, 2, 4)
    torch.testing.assert_close(back(x)[0], ref(x)[0])


def test_variant_state_dict_names_and_strictness():
    ours = lstmkit.LSTM(4, 6, 2, layer_norm=True, peephole=True, bidirectional=True)
    names = set(ours.state_dict())
    for sfx in ("_l0", "_l1_reverse"):
        assert {
            f"weight_ci{sfx}",
            f"weight_cf{sfx}",
            f"weight_co{sfx}",
            f"ln_weight_ih{sfx}",
            f"ln_weight_hh{sfx}",
            f"ln_weight_c{sfx}",
            f"ln_bias_c{sfx}",
        } <= names
    plain = torch.nn.LSTM(4, 6, 2, bidirectional=True)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        plain.load_state_dict(ours.state_dict())
    # the torch weights still load into the variant model (strict=False leaves the variants)
    ours.load_state_dict(plain.state_dict(), strict=False)
    assert torch.equal(ours.weight_hh_l1_reverse, plain.weight_hh_l1_reverse)
