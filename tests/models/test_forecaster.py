"""Forecast baselines against hand computations, the losses against torch.distributions, CRPS
against its closed form and a sample estimate, and the forecasters' structure."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lstmkit.models import forecast_metrics as fm
from lstmkit.models.encoder import RecurrentConfig
from lstmkit.models.forecast_baselines import DLinear, LastValue, SeasonalNaive, moving_average
from lstmkit.models.forecaster import Forecaster, ForecasterConfig
from lstmkit.utils.errors import UserError


def test_last_value_and_seasonal_naive_by_hand():
    x = torch.arange(30.0).view(1, 30, 1)
    assert LastValue(3)(x)[0, :, 0].tolist() == [29, 29, 29]
    # period 24, L = 30: y_{L+h} = x_{L+h-24} for h <= 24, x_{L+h-48} for 24 < h <= 48
    got = SeasonalNaive(26, 24, 30)(x)[0, :, 0].tolist()
    assert got == [6 + k for k in range(24)] + [6 - 24 + 24, 7]
    with pytest.raises(UserError, match="period 168 needs --lookback >= 168"):
        SeasonalNaive(24, 168, 96)


def test_dlinear_is_two_linear_maps_over_trend_and_remainder():
    torch.manual_seed(1)
    L, H, C, k = 12, 4, 2, 5
    x = torch.randn(3, L, C, dtype=torch.float64)
    # moving average with the ends repeated, by hand
    xn = x.numpy()
    pad = np.concatenate([np.repeat(xn[:, :1], 2, 1), xn, np.repeat(xn[:, -1:], 2, 1)], 1)
    trend = np.stack([pad[:, t : t + k].mean(1) for t in range(L)], 1)
    np.testing.assert_allclose(moving_average(x, k).numpy(), trend, atol=1e-12)
    for individual in (False, True):
        m = DLinear(L, H, C, k, individual).double()
        want = np.zeros((3, H, C))
        for c in range(C):
            j = c if individual else 0
            Wt, bt = m.trend[j].weight.detach().numpy(), m.trend[j].bias.detach().numpy()
            Wr, br = m.remainder[j].weight.detach().numpy(), m.remainder[j].bias.detach().numpy()
            want[:, :, c] = trend[:, :, c] @ Wt.T + bt + (xn - trend)[:, :, c] @ Wr.T + br
        np.testing.assert_allclose(m(x).detach().numpy(), want, atol=1e-10)


def test_likelihoods_against_torch_distributions():
    torch.manual_seed(0)
    y, mu = torch.randn(50, dtype=torch.float64), torch.randn(50, dtype=torch.float64)
    sigma = torch.rand(50, dtype=torch.float64) + 0.1
    df = torch.rand(50, dtype=torch.float64) * 10 + 2.1
    normal = torch.distributions.Normal(mu, sigma)
    t = torch.distributions.StudentT(df, mu, sigma)
    torch.testing.assert_close(fm.gaussian_nll(y, mu, sigma), -normal.log_prob(y))
    torch.testing.assert_close(fm.student_t_nll(y, mu, sigma, df), -t.log_prob(y))
    levels = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    q = torch.tensor([[-1.0, 0.0, 1.0]], dtype=torch.float64)
    got = fm.pinball(torch.tensor([0.5], dtype=torch.float64), q, levels)
    torch.testing.assert_close(got, torch.tensor([[0.15, 0.25, 0.05]], dtype=torch.float64))


def test_crps_closed_form_against_integral_and_samples():
    mu, sigma = torch.tensor([0.3], dtype=torch.float64), torch.tensor([1.7], dtype=torch.float64)
    y = torch.tensor([1.1], dtype=torch.float64)
    # CRPS = int_{-inf}^y F^2 dz + int_y^inf (1 - F)^2 dz, by the trapezoid rule on each side
    normal = torch.distributions.Normal(mu, sigma)
    lo = torch.linspace(-20, float(y), 100001, dtype=torch.float64)
    hi = torch.linspace(float(y), 20, 100001, dtype=torch.float64)
    integral = torch.trapezoid(normal.cdf(lo) ** 2, lo) + torch.trapezoid(
        (1 - normal.cdf(hi)) ** 2, hi
    )
    closed = fm.crps_gaussian(y, mu, sigma)
    assert float(closed) == pytest.approx(float(integral), abs=1e-6)
    g = torch.Generator().manual_seed(0)
    samples = mu + sigma * torch.randn(400000, 1, generator=g, dtype=torch.float64)
    assert float(fm.crps_samples(y, samples)) == pytest.approx(float(closed), rel=0.01)
    # the sorted O(n log n) spread equals the O(n^2) double sum
    s = samples[:300]
    brute = (s - y).abs().mean(0) - 0.5 * (s[:, None] - s[None]).abs().mean((0, 1))
    torch.testing.assert_close(fm.crps_samples(y, s), brute)


def _cfg(**kw):
    return ForecasterConfig(encoder=RecurrentConfig(hidden_size=8), **kw)


@pytest.mark.parametrize("model", ["lstm", "lstm-seq2seq"])
@pytest.mark.parametrize("likelihood", ["point", "gaussian", "student-t", "quantile"])
def test_shapes_and_constraints(model, likelihood):
    m = Forecaster(_cfg(model=model, likelihood=likelihood), 10, 4, 3, 1, 2)
    p = m(torch.randn(5, 10, 3 + 1 + 2), torch.randn(5, 4, 2))
    n = {"point": 1, "gaussian": 2, "student-t": 3, "quantile": 3}[likelihood]
    assert p.shape == (5, 4, 3, n)
    if likelihood in ("gaussian", "student-t"):
        assert (p[..., 1] > 0).all()
    if likelihood == "student-t":
        assert (p[..., 2] > 2).all()
    if likelihood == "quantile":
        assert (p.diff(dim=-1) >= 0).all()


def test_seq2seq_teacher_forcing_on_its_own_forecast_is_the_autoregression():
    m = Forecaster(_cfg(model="lstm-seq2seq"), 10, 5, 2, 0, 0).eval()
    x = torch.randn(3, 10, 2)
    free = m(x)
    forced = m(x, None, free[..., 0])
    torch.testing.assert_close(forced, free)


def test_channel_independence_is_one_model_per_channel():
    m = Forecaster(_cfg(channel_independent=True), 10, 4, 3, 0, 0)
    x = torch.randn(2, 10, 3)
    both = m(x)
    # channel 1 alone, through the same shared network, gives the same forecast
    inner = m.net(x[:, :, 1:2])
    torch.testing.assert_close(both[:, :, 1:2], inner)


@pytest.mark.parametrize("likelihood", ["point", "gaussian", "quantile"])
def test_revin_makes_the_forecast_shift_and_scale_equivariant(likelihood):
    m = Forecaster(_cfg(revin=True, likelihood=likelihood), 10, 4, 2, 0, 0)
    with torch.no_grad():
        m.gamma.uniform_(0.5, 2)
        m.beta.normal_()
    x = torch.randn(3, 10, 2)
    a, b = 3.0, -7.0
    p, q = m(x), m(a * x + b)
    if likelihood == "gaussian":
        torch.testing.assert_close(q[..., 0], a * p[..., 0] + b, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(q[..., 1], a * p[..., 1], rtol=1e-4, atol=1e-4)
    else:
        torch.testing.assert_close(q, a * p + b, rtol=1e-4, atol=1e-4)


def test_bad_model_options():
    with pytest.raises(UserError, match="--likelihood gaussian: model dlinear gives points"):
        ForecasterConfig(model="dlinear", likelihood="gaussian")
    with pytest.raises(UserError, match="--quantiles: levels must be in"):
        ForecasterConfig(likelihood="quantile", quantiles="0.1,1.5")
    assert math.isclose(ForecasterConfig(quantiles="0.9,0.1,0.5").levels[0], 0.1)


@pytest.mark.parametrize("likelihood", ["point", "student-t", "quantile"])
@pytest.mark.parametrize("lookback,horizon,segment", [(12, 4, 4), (14, 7, 3), (5, 2, 5)])
def test_segment_lstm_shapes_and_constraints(likelihood, lookback, horizon, segment):
    m = Forecaster(_cfg(likelihood=likelihood, segment=segment), lookback, horizon, 3, 1, 2)
    p = m(torch.randn(5, lookback, 3 + 1 + 2), torch.randn(5, horizon, 2))
    assert p.shape == (5, horizon, 3, m.cfg.n_params)
    if likelihood == "student-t":
        assert (p[..., 1] > 0).all() and (p[..., 2] > 2).all()


@pytest.mark.parametrize("n_future", [0, 2])
def test_segment_lstm_against_torch_lstm_by_hand(n_future):
    """SegRNN's computation written out with torch.nn.LSTM / LSTMCell on the same weights:
    segments of the last N*S rows embedded with ReLU, the encoder over them, every output
    segment one cell step from the final state with its position embedding (plus its
    future covariates) as input, a linear read-out, the first H rows kept."""
    torch.manual_seed(0)
    L, H, S, C, hid = 11, 7, 3, 2, 6
    cfg = ForecasterConfig(encoder=RecurrentConfig(hidden_size=hid), segment=S)
    m = Forecaster(cfg, L, H, C, 0, n_future).eval()
    net = m.net
    x, fut = torch.randn(4, L, C + n_future), torch.randn(4, H, n_future)
    got = m(x, fut if n_future else None)

    ref = torch.nn.LSTM(hid, hid, batch_first=True)
    ref.load_state_dict({k: v for k, v in net.encoder.state_dict().items()})
    cell = torch.nn.LSTMCell(hid, hid)
    cell.load_state_dict({k[:-3]: v for k, v in net.encoder.state_dict().items()})
    N, M = L // S, -(-H // S)  # 3 segments of the last 9 rows; 3 output segments
    with torch.no_grad():
        segs = torch.stack([x[:, L - N * S + n * S : L - N * S + (n + 1) * S].flatten(1)
                            for n in range(N)], 1)  # fmt: skip
        _, (h, c) = ref(torch.relu(net.embed(segs)))
        rows = []
        for k in range(M):
            q = net.position[k].expand(4, hid)
            if n_future:
                part = fut[:, k * S : (k + 1) * S]
                part = torch.cat([part, part[:, -1:].expand(-1, S - part.shape[1], -1)], 1)
                q = q + net.future(part.flatten(1))
            hk, _ = cell(q, (h[0], c[0]))
            rows.append(net.head(hk).view(4, S, C))
        want = torch.cat(rows, 1)[:, :H]
    torch.testing.assert_close(got[..., 0], want, rtol=1e-5, atol=1e-6)
    # rows older than the last N*S do not enter
    x2 = x.clone()
    x2[:, : L - N * S] = 100.0
    torch.testing.assert_close(m(x2, fut if n_future else None), got)


def test_segment_bad_options():
    with pytest.raises(UserError, match="--segment: only --model lstm"):
        ForecasterConfig(model="lstm-seq2seq", segment=4)
    with pytest.raises(UserError, match="--segment must be >= 0"):
        ForecasterConfig(segment=-1)
    with pytest.raises(UserError, match="forward only"):
        ForecasterConfig(encoder=RecurrentConfig(bidirectional=True), segment=4)
    with pytest.raises(UserError, match="--segment 12 is longer than --lookback 10"):
        Forecaster(_cfg(segment=12), 10, 4, 1, 0, 0)


@pytest.mark.parametrize("segment", [0, 4])
def test_head_dropout_acts_in_training_only(segment):
    torch.manual_seed(0)
    m = Forecaster(_cfg(segment=segment, head_dropout=0.5), 12, 4, 2, 0, 0)
    plain = Forecaster(_cfg(segment=segment), 12, 4, 2, 0, 0)
    plain.load_state_dict(m.state_dict())  # dropout adds no weights: old runs load
    x = torch.randn(3, 12, 2)
    torch.testing.assert_close(m.eval()(x), plain.eval()(x))
    m.train()
    assert not torch.allclose(m(x), plain.eval()(x))


def test_head_dropout_bad_options():
    with pytest.raises(UserError, match=r"--head-dropout must be in \[0, 1\)"):
        ForecasterConfig(head_dropout=1.0)
    with pytest.raises(UserError, match="--head-dropout: only --model lstm"):
        ForecasterConfig(model="dlinear", head_dropout=0.1)


@pytest.mark.parametrize("ci", [False, True])
@pytest.mark.parametrize("revin", [False, True])
def test_seq2seq_sample_paths_are_ancestral(ci, revin):
    """Each path, fed back to the decoder by teacher forcing, gives the parameters it was drawn
    from: path = mu + sigma * z with z the seed's normal draws in order, step by step."""
    torch.manual_seed(1)
    m = Forecaster(_cfg(model="lstm-seq2seq", likelihood="gaussian", revin=revin,
                        channel_independent=ci), 10, 5, 2, 0, 2).eval()  # fmt: skip
    if revin:
        with torch.no_grad():
            m.gamma.uniform_(0.5, 2)
            m.beta.normal_()
    x, fut, n = torch.randn(3, 10, 4), torch.randn(3, 5, 2), 4
    before = torch.get_rng_state()
    paths = m.sample_paths(x, fut, n=n, seed=7)
    assert paths.shape == (n, 3, 5, 2)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG untouched
    torch.testing.assert_close(m.sample_paths(x, fut, n=n, seed=7), paths)
    assert not torch.allclose(m.sample_paths(x, fut, n=n, seed=8), paths)
    with torch.no_grad():
        p = m(x.repeat(n, 1, 1), fut.repeat(n, 1, 1), paths.reshape(n * 3, 5, 2))
    z = (paths.reshape(n * 3, 5, 2) - p[..., 0]) / p[..., 1]
    rows = n * 3 * (2 if ci else 1)
    torch.manual_seed(7)
    want = torch.cat([torch.randn(rows, 1, 1 if ci else 2) for _ in range(5)], 1)
    if ci:  # (B*C, H, 1) -> (B, H, C)
        want = want.view(n * 3, 2, 5).permute(0, 2, 1)
    if revin:  # a negative gamma mirrors the draw
        want = want * m.gamma.sign().view(1, 1, 2)
    torch.testing.assert_close(z, want, rtol=1e-4, atol=1e-4)


def test_sample_paths_moments_and_refusals():
    """A direct model's paths draw each step from its marginal: the mean and spread of 4,000
    paths match the parameters (the Student-t's spread sigma * sqrt(nu / (nu - 2)))."""
    torch.manual_seed(0)
    x = torch.randn(2, 10, 1)
    for lik in ("gaussian", "student-t"):
        m = Forecaster(_cfg(likelihood=lik), 10, 3, 1, 0, 0).eval()
        with torch.no_grad():
            p = m(x)
        s = m.sample_paths(x, n=4000, seed=0)
        sd = p[..., 1] if lik == "gaussian" else p[..., 1] * torch.sqrt(p[..., 2] / (p[..., 2] - 2))
        torch.testing.assert_close(s.mean(0), p[..., 0], atol=float(4 * sd.max() / 63), rtol=0)
        if lik == "gaussian":
            torch.testing.assert_close(s.std(0), sd, rtol=0.06, atol=0)
    for lik in ("point", "quantile"):
        with pytest.raises(UserError, match="gaussian or student-t"):
            Forecaster(_cfg(likelihood=lik), 10, 3, 1, 0, 0).sample_paths(x)
