"""LSTM forecasters and their config: a recurrent encoder with a direct multi-horizon head, or an
encoder-decoder (the LSTMa / DeepAR family) that unrolls over the horizon; the baselines of
:mod:`lstmkit.models.forecast_baselines` behind the same interface.

Every model maps a lookback ``x`` ``(B, L, I)`` (the predicted channels first, then past-only
covariates and calendar features) and the known-future covariates ``future`` ``(B, H, K)`` to
distribution parameters ``(B, H, C, P)``:

- ``point`` (P = 1, trained on the MSE), ``gaussian`` (:math:`\\mu, \\sigma`), ``student-t``
  (:math:`\\mu, \\sigma, \\nu`; :math:`\\sigma = \\mathrm{softplus} + 10^{-3}`,
  :math:`\\nu = 2 + \\mathrm{softplus}` so that the variance exists), ``quantile`` (one output
  per level, trained on the pinball loss, sorted so that they never cross).
- Channel independence (PatchTST's): each of the C channels is its own series of one value (plus
  the calendar), through one shared model; the batch becomes ``B*C``.
- RevIN (Kim et al. 2022): each window's channels are standardised by their lookback mean and
  std, :math:`\\tilde x = \\gamma (x - \\mu)/\\sigma + \\beta`, and the outputs mapped back
  (:math:`\\mu + \\sigma(\\hat y - \\beta)/\\gamma`; scales multiplied by
  :math:`\\sigma/|\\gamma|`).
- Segments (``segment = S``, SegRNN's design, Lin et al. 2023, with any lstmkit encoder): the
  lookback's last :math:`N S` rows (:math:`N = \\lfloor L / S \\rfloor`) cut into :math:`N`
  segments, each embedded as :math:`e_n = \\mathrm{ReLU}(W_e\\,\\mathrm{vec}(x_{n}) + b_e)`
  (width = the hidden size); the encoder runs over the :math:`N` embeddings; each of the
  :math:`M = \\lceil H / S \\rceil` output segments is one more encoder step from the final
  state, its input a learned position embedding :math:`p_m` (plus
  :math:`W_f\\,\\mathrm{vec}(\\mathrm{future}_m)` with known-future covariates), all :math:`M`
  in one call of batch :math:`B M` (parallel multi-step decoding), read out by a linear map
  to :math:`S` rows; the first :math:`H` rows are kept. The recurrence is :math:`L/S` steps
  long instead of :math:`L`.
- The encoder-decoder feeds the previous value and the step's future covariates to a decoder
  LSTM started from the encoder's state: the true previous value in training (teacher forcing),
  its own mean forecast at evaluation; :meth:`Forecaster.sample_paths` draws ancestral sample
  paths instead (each step's draw fed back, DeepAR's forecast).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmkit.models.encoder import RecurrentConfig, build_encoder, encoder_output_size
from lstmkit.models.forecast_baselines import DLinear, LastValue, SeasonalNaive
from lstmkit.utils.errors import UserError
from lstmkit.utils.meta import help_meta as _help

MODELS = ("lstm", "lstm-seq2seq", "dlinear", "last", "seasonal24", "seasonal168")
LIKELIHOODS = ("point", "gaussian", "student-t", "quantile")
N_PARAMS = {"point": 1, "gaussian": 2, "student-t": 3}

FORECAST_ENCODER = RecurrentConfig(hidden_size=64)


def parse_levels(text: str) -> tuple[float, ...]:
    try:
        levels = tuple(sorted(float(v) for v in text.split(",") if v.strip()))
    except ValueError:
        raise UserError(f"--quantiles: {text!r} is not a comma-separated list of numbers") from None
    if not levels or not all(0 < q < 1 for q in levels):
        raise UserError(f"--quantiles: levels must be in (0, 1), got {text!r}")
    return levels


@dataclass(frozen=True)
class ForecasterConfig:
    """Which forecaster, its likelihood, and the recurrent encoder's options."""

    encoder: RecurrentConfig = field(
        default_factory=lambda: FORECAST_ENCODER, metadata=_help("the recurrent encoder")
    )
    model: str = field(
        default="lstm",
        metadata=_help(
            "lstm: encoder + direct multi-horizon head; lstm-seq2seq: encoder-decoder; "
            "baselines: dlinear, last, seasonal24, seasonal168",
            choices=MODELS,
        ),
    )
    likelihood: str = field(
        default="point",
        metadata=_help(
            "point (MSE), gaussian or student-t (negative log-likelihood), quantile (pinball)",
            choices=LIKELIHOODS,
        ),
    )
    quantiles: str = field(
        default="0.1,0.5,0.9", metadata=_help("quantile levels (--likelihood quantile)")
    )
    channel_independent: bool = field(
        default=False, metadata=_help("one shared model over each channel (PatchTST)")
    )
    revin: bool = field(
        default=False, metadata=_help("reversible instance normalisation of each window")
    )
    segment: int = field(
        default=0,
        metadata=_help(
            "lstm: run the encoder over segments of this many rows and decode the horizon in "
            "parallel segments (SegRNN); 0: one step per row"
        ),
    )
    head_dropout: float = field(
        default=0.0,
        metadata=_help("lstm: dropout on the encoder's output before the head (SegRNN: 0.5)"),
    )
    kernel: int = field(default=25, metadata=_help("DLinear moving-average width (odd)"))
    individual: bool = field(default=False, metadata=_help("DLinear: one linear map per channel"))

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise UserError(f"--model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.likelihood not in LIKELIHOODS:
            raise UserError(
                f"--likelihood must be one of {', '.join(LIKELIHOODS)}, got {self.likelihood!r}"
            )
        parse_levels(self.quantiles)
        if self.model not in ("lstm", "lstm-seq2seq") and self.likelihood != "point":
            raise UserError(f"--likelihood {self.likelihood}: model {self.model} gives points")
        if self.model == "lstm-seq2seq" and self.encoder.bidirectional:
            raise UserError("--bidirectional: the seq2seq decoder runs forward only")
        if not 0 <= self.head_dropout < 1:
            raise UserError(f"--head-dropout must be in [0, 1), got {self.head_dropout}")
        if self.head_dropout and self.model != "lstm":
            raise UserError(f"--head-dropout: only --model lstm has it, not {self.model}")
        if self.segment < 0:
            raise UserError(f"--segment must be >= 0, got {self.segment}")
        if self.segment and self.model != "lstm":
            raise UserError(f"--segment: only --model lstm runs over segments, not {self.model}")
        if self.segment and self.encoder.bidirectional:
            raise UserError("--segment: the segment decoder runs forward only (no --bidirectional)")

    @property
    def levels(self) -> tuple[float, ...]:
        return parse_levels(self.quantiles)

    @property
    def n_params(self) -> int:
        return N_PARAMS.get(self.likelihood, len(self.levels))


def to_params(raw: Tensor, likelihood: str) -> Tensor:
    """Constrain the raw outputs ``(..., P)``: positive scales, degrees of freedom above 2,
    sorted quantiles."""
    if likelihood == "point":
        return raw
    if likelihood == "quantile":
        return raw.sort(-1).values
    scale = F.softplus(raw[..., 1:2]) + 1e-3
    if likelihood == "gaussian":
        return torch.cat([raw[..., :1], scale], -1)
    return torch.cat([raw[..., :1], scale, 2 + F.softplus(raw[..., 2:3])], -1)


def draw(params: Tensor, likelihood: str) -> Tensor:
    """One draw ``(...)`` from constrained parameters ``(..., P)`` of a Gaussian
    (:math:`\\mu + \\sigma z`, :math:`z \\sim N(0, 1)`) or a Student-t, from the global RNG."""
    if likelihood == "gaussian":
        return params[..., 0] + params[..., 1] * torch.randn_like(params[..., 0])
    if likelihood == "student-t":
        return torch.distributions.StudentT(params[..., 2], params[..., 0], params[..., 1]).sample()
    raise UserError(f"sample paths need --likelihood gaussian or student-t, not {likelihood!r}")


class DirectLSTM(nn.Module):
    def __init__(
        self, enc: RecurrentConfig, n_in: int, horizon: int, n_out: int, p: int, drop: float = 0.0
    ) -> None:
        super().__init__()
        self.encoder = build_encoder(enc, n_in)
        self.drop = nn.Dropout(drop)
        self.head = nn.Linear(encoder_output_size(self.encoder), horizon * n_out * p)
        self.shape = (horizon, n_out, p)

    def forward(self, x: Tensor, future: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        h, _ = self.encoder(x)
        return self.head(self.drop(h[:, -1])).view(x.shape[0], *self.shape)


class SegmentLSTM(nn.Module):
    """The encoder over segments of ``segment`` rows and the parallel segment decoder (see
    the module docstring)."""

    def __init__(
        self,
        enc: RecurrentConfig,
        n_in: int,
        lookback: int,
        horizon: int,
        n_out: int,
        n_future: int,
        p: int,
        segment: int,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        if segment > lookback:
            raise UserError(f"--segment {segment} is longer than --lookback {lookback}")
        d = enc.hidden_size
        self.segment, self.n_seg = segment, lookback // segment
        self.n_dec = -(-horizon // segment)
        self.embed = nn.Linear(segment * n_in, d)
        self.encoder = build_encoder(enc, d)
        self.position = nn.Parameter(torch.randn(self.n_dec, d) * d**-0.5)
        self.future = nn.Linear(segment * n_future, d, bias=False) if n_future else None
        self.drop = nn.Dropout(drop)
        self.head = nn.Linear(encoder_output_size(self.encoder), segment * n_out * p)
        self.horizon, self.n_out, self.p = horizon, n_out, p

    def forward(self, x: Tensor, future: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        B, L, _ = x.shape
        S, N, M = self.segment, self.n_seg, self.n_dec
        segs = x[:, L - N * S :].reshape(B, N, -1)
        _, state = self.encoder(torch.relu(self.embed(segs)))
        q = self.position.unsqueeze(0).expand(B, M, -1)
        if self.future is not None and future is not None:
            pad = M * S - future.shape[1]  # the last segment's missing rows repeat its last row
            if pad:
                future = torch.cat([future, future[:, -1:].expand(-1, pad, -1)], 1)
            q = q + self.future(future.reshape(B, M, -1))
        if isinstance(state, tuple):
            state = tuple(s.repeat_interleave(M, 1) for s in state)
        else:
            state = state.repeat_interleave(M, 1)
        h, _ = self.encoder(q.reshape(B * M, 1, -1), state)
        out = self.head(self.drop(h[:, -1])).view(B, M * S, self.n_out, self.p)
        return out[:, : self.horizon]


class Seq2SeqLSTM(nn.Module):
    def __init__(
        self,
        enc: RecurrentConfig,
        n_in: int,
        horizon: int,
        n_out: int,
        n_future: int,
        p: int,
        likelihood: str,
    ) -> None:
        super().__init__()
        self.encoder = build_encoder(enc, n_in)
        self.decoder = build_encoder(enc, n_out + n_future)
        self.head = nn.Linear(encoder_output_size(self.decoder), n_out * p)
        self.horizon, self.n_out, self.p, self.likelihood = horizon, n_out, p, likelihood

    def forward(self, x: Tensor, future: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        _, state = self.encoder(x)
        B = x.shape[0]
        if y is not None:  # teacher forcing: the whole horizon in one call
            steps = torch.cat([x[:, -1:, : self.n_out], y[:, :-1]], 1)
            if future is not None:
                steps = torch.cat([steps, future], -1)
            h, _ = self.decoder(steps, state)
            return self.head(h).view(B, self.horizon, self.n_out, self.p)
        return self._unroll(x[:, -1:, : self.n_out], state, future, sample=False)[0]

    def sample(self, x: Tensor, future: Tensor | None = None) -> Tensor:
        """One ancestral sample path ``(B, H, C, 1)`` (DeepAR's forecast): each step's draw is
        the next step's input."""
        _, state = self.encoder(x)
        return self._unroll(x[:, -1:, : self.n_out], state, future, sample=True)[1].unsqueeze(-1)

    def _unroll(self, prev: Tensor, state, future: Tensor | None, sample: bool):
        """The decoder over the horizon fed its own mean (or, ``sample``, its own draws):
        ``(raw outputs (B, H, C, P), fed values (B, H, C))``."""
        B = prev.shape[0]
        outs, fed = [], []
        for t in range(self.horizon):
            step = prev if future is None else torch.cat([prev, future[:, t : t + 1]], -1)
            h, state = self.decoder(step, state)
            out = self.head(h).view(B, 1, self.n_out, self.p)
            outs.append(out)
            params = to_params(out, self.likelihood)
            prev = (
                draw(params, self.likelihood) if sample else point_of(params, self.likelihood, None)
            )
            fed.append(prev)
        return torch.cat(outs, 1), torch.cat(fed, 1)


class _PointBaseline(nn.Module):
    def __init__(self, inner: nn.Module, n_out: int) -> None:
        super().__init__()
        self.inner, self.n_out = inner, n_out

    def forward(self, x: Tensor, future: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        return self.inner(x[..., : self.n_out]).unsqueeze(-1)


def point_of(params: Tensor, likelihood: str, levels: tuple[float, ...] | None) -> Tensor:
    """The point forecast ``(..., C)`` of constrained parameters: the mean, or the median (the
    level nearest 0.5) of quantiles."""
    if likelihood != "quantile":
        return params[..., 0]
    levels = levels or (0.5,)
    k = min(range(len(levels)), key=lambda i: abs(levels[i] - 0.5))
    return params[..., k]


class Forecaster(nn.Module):
    """Any of :data:`MODELS` with channel independence and RevIN around it; ``forward`` returns
    constrained parameters ``(B, H, C, P)`` (see the module docstring)."""

    def __init__(
        self,
        cfg: ForecasterConfig,
        lookback: int,
        horizon: int,
        n_out: int,
        n_past: int,
        n_future: int,
    ) -> None:
        super().__init__()
        self.cfg, self.n_out, self.n_past = cfg, n_out, n_past
        ci = cfg.channel_independent
        if ci and n_past:
            raise UserError(
                "--channel-independent: every input channel must be predicted (no past-only "
                "covariates)"
            )
        c_model = 1 if ci else n_out
        n_in = c_model + (0 if ci else n_past) + n_future
        p = cfg.n_params
        if cfg.model == "lstm" and cfg.segment:
            self.net = SegmentLSTM(
                cfg.encoder, n_in, lookback, horizon, c_model, n_future, p, cfg.segment,
                cfg.head_dropout,
            )  # fmt: skip
        elif cfg.model == "lstm":
            self.net = DirectLSTM(cfg.encoder, n_in, horizon, c_model, p, cfg.head_dropout)
        elif cfg.model == "lstm-seq2seq":
            self.net = Seq2SeqLSTM(cfg.encoder, n_in, horizon, c_model, n_future, p, cfg.likelihood)
        elif cfg.model == "dlinear":
            self.net = _PointBaseline(
                DLinear(lookback, horizon, c_model, cfg.kernel, cfg.individual), c_model
            )
        elif cfg.model == "last":
            self.net = _PointBaseline(LastValue(horizon), c_model)
        else:
            period = int(cfg.model.removeprefix("seasonal"))
            self.net = _PointBaseline(SeasonalNaive(horizon, period, lookback), c_model)
        if cfg.revin:
            self.gamma = nn.Parameter(torch.ones(n_out))
            self.beta = nn.Parameter(torch.zeros(n_out))

    def forward(
        self, x: Tensor, future: Tensor | None = None, y: Tensor | None = None, sample=False
    ) -> Tensor:
        """Constrained parameters ``(B, H, C, P)``; with ``sample`` (an encoder-decoder), one
        ancestral sample path ``(B, H, C, 1)`` in the data's scale instead."""
        C = self.n_out
        values, rest = x[..., :C], x[..., C:]
        if self.cfg.revin:
            mu = values.mean(1, keepdim=True)
            sd = values.std(1, unbiased=False, keepdim=True).clamp_min(1e-5)
            values = (values - mu) / sd * self.gamma + self.beta
            if y is not None:
                y = (y - mu) / sd * self.gamma + self.beta
        if self.cfg.channel_independent:
            B, L = values.shape[:2]
            H = future.shape[1] if future is not None else None
            xs = values.permute(0, 2, 1).reshape(B * C, L, 1)
            if rest.shape[-1]:  # the calendar, the same for each channel
                xs = torch.cat([xs, rest.repeat_interleave(C, 0)], -1)
            fut = future.repeat_interleave(C, 0) if future is not None else None
            ys = y.permute(0, 2, 1).reshape(B * C, -1, 1) if y is not None else None
            raw = self.net.sample(xs, fut) if sample else self.net(xs, fut, ys)  # (B*C, H, 1, P)
            H = raw.shape[1]
            raw = raw.view(B, C, H, -1).permute(0, 2, 1, 3)
        else:
            inputs = torch.cat([values, rest], -1)
            raw = self.net.sample(inputs, future) if sample else self.net(inputs, future, y)
        params = raw if sample else to_params(raw, self.cfg.likelihood)
        if self.cfg.revin:
            g, b = self.gamma.view(1, 1, C, 1), self.beta.view(1, 1, C, 1)
            m, s = mu.unsqueeze(-1), sd.unsqueeze(-1)
            if sample or self.cfg.likelihood in ("point", "quantile"):
                params = m + s * (params - b) / g
            else:
                loc = m + s * (params[..., :1] - b) / g
                scale = params[..., 1:2] * s / g.abs()
                params = torch.cat([loc, scale, params[..., 2:]], -1)
            if self.cfg.likelihood == "quantile":
                params = params.sort(-1).values  # a negative gamma reverses the order
        return params

    def point(self, params: Tensor) -> Tensor:
        return point_of(params, self.cfg.likelihood, self.cfg.levels)

    @torch.no_grad()
    def sample_paths(
        self, x: Tensor, future: Tensor | None = None, n: int = 100, seed: int = 0
    ) -> Tensor:
        """``n`` sample paths ``(n, B, H, C)`` of a Gaussian or Student-t model, reproducible
        from ``seed`` (the global RNG is left as it was). An encoder-decoder samples
        ancestrally (each draw fed back as the next step's input, DeepAR's forecast); a direct
        model draws each step from its own marginal (the steps independent given the
        lookback)."""
        lik = self.cfg.likelihood
        if lik not in ("gaussian", "student-t"):
            raise UserError(f"sample paths need --likelihood gaussian or student-t, not {lik!r}")
        B = x.shape[0]
        xs = x.repeat(n, 1, 1)
        fs = future.repeat(n, 1, 1) if future is not None else None
        devices = [x.device.index or 0] if x.is_cuda else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            if isinstance(self.net, Seq2SeqLSTM):
                out = self.forward(xs, fs, sample=True)[..., 0]
            else:
                out = draw(self.forward(xs, fs), lik)
        return out.view(n, B, *out.shape[1:])


def with_encoder(cfg: ForecasterConfig, **changes) -> ForecasterConfig:
    return replace(cfg, encoder=replace(cfg.encoder, **changes))
