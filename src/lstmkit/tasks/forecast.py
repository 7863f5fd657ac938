"""Time-series forecasting from CSV or Parquet tables (task ``forecast``).

Data (:mod:`lstmkit.data.timeseries`): a time column and value columns; one series per file
(``--data a.csv,b.csv``) or a long table with ``--series-column``. Univariate (``--target OT``:
the target from its own past) or multivariate (``--targets all`` or a list: every channel from
all of them), optional past-only ``--covariates`` and known-future calendar features
(``--calendar``: hour, weekday, month). Splits by time (``--split informer|ltsf|rows|dates|
fractions``); the scaler is fitted on the training rows only.

Models (:mod:`lstmkit.models.forecaster`): ``--model lstm`` (direct multi-horizon head),
``lstm-seq2seq``, and the baselines ``dlinear``, ``last``, ``seasonal24``, ``seasonal168``, all
trained (DLinear, the LSTMs) and evaluated with the same commands.

Metrics on every window of the split (no dropped last batch): ``mse``/``mae`` on the
standardised scale (the papers' convention), ``mse_orig``/``mae_orig`` in the data's units,
``mase`` (seasonal period ``--mase-season``), and for probabilistic models ``crps``
(standardised scale; closed form for the Gaussian, 200 samples for the Student-t, pinball for
quantiles) and ``coverage`` of the outer interval with its ``nominal`` level.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmkit.data import timeseries as ts
from lstmkit.models import forecast_metrics as fm
from lstmkit.models.forecaster import Forecaster, ForecasterConfig
from lstmkit.nn import LSTM, record_gates
from lstmkit.tasks.base import InputRecords, Task, register
from lstmkit.utils.errors import UserError
from lstmkit.utils.meta import help_meta as _help

SPLITS = ("fractions", "rows", "dates", "informer", "ltsf")
_EVAL_BATCH = 256
_SAMPLES = 200
_OUT_LEVELS = (0.1, 0.5, 0.9)


class ForecastBatch(NamedTuple):
    x: Tensor  # (B, L, C + past + calendar)
    future: Tensor  # (B, H, calendar)
    y: Tensor  # (B, H, C)


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed % (1 << 31)) * (1 << 31) + step)


@dataclass(frozen=True)
class ForecastConfig:
    """The series, their columns, the split and the windows."""

    data: str = field(
        default="", metadata=_help("CSV or Parquet file(s), comma-separated (one series each)")
    )
    time_column: str = field(default="date", metadata=_help("the timestamp column (ISO 8601)"))
    series_column: str = field(
        default="", metadata=_help("a long table's series-id column (one series per value)")
    )
    target: str = field(default="OT", metadata=_help("univariate: the column to forecast"))
    targets: str = field(
        default="",
        metadata=_help("multivariate: 'all' or comma-separated columns, each forecast from all"),
    )
    covariates: str = field(
        default="", metadata=_help("past-only input columns (comma-separated), not forecast")
    )
    calendar: bool = field(
        default=False, metadata=_help("hour, weekday, month as known-future covariates")
    )
    fill: str = field(
        default="none",
        metadata=_help(
            "gaps in the timestamps: none (an error), ffill, interpolate", choices=ts.FILLS
        ),
    )
    split: str = field(
        default="fractions",
        metadata=_help(
            "informer/ltsf: ETTh1 rows [0,8640) [8640,11520) [11520,14400); rows/dates: "
            "--train-end --valid-end --test-end; fractions: the last --valid/--test-fraction",
            choices=SPLITS,
        ),
    )
    train_end: str = field(default="", metadata=_help("end of training (row or date)"))
    valid_end: str = field(default="", metadata=_help("end of validation (row or date)"))
    test_end: str = field(default="", metadata=_help("end of test (row or date)"))
    valid_fraction: float = field(default=0.1, metadata=_help("share of rows for validation"))
    test_fraction: float = field(default=0.2, metadata=_help("share of rows for the test"))
    lookback: int = field(default=96, metadata=_help("input window L (rows)"))
    horizon: int = field(default=24, metadata=_help("forecast horizon H (rows)"))
    mase_season: int = field(default=24, metadata=_help("MASE's seasonal period (rows)"))

    def __post_init__(self) -> None:
        ts.check_sizes(self.lookback, self.horizon)
        if self.split not in SPLITS:
            raise UserError(f"--split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.mase_season < 1:
            raise UserError(f"--mase-season must be >= 1, got {self.mase_season}")


def _names(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


@register
class ForecastTask(Task):
    name = "forecast"
    summary = "time-series forecasting from a CSV: LSTM forecasters and baselines"
    Config = ForecastConfig
    ModelConfig = ForecasterConfig
    metric = "mse"
    split_options = "--data"
    checkpoint_state = ("scaler", "outputs", "inputs")
    capabilities = frozenset({"predict", "evaluate", "inspect", "export", "quantize"})
    metrics_note = (
        "mse, mae, crps: on the scale standardised with the training rows' mean and std (the "
        "papers' convention); mse_orig, mae_orig: in the data's units; mase: against the "
        "training rows' seasonal naive error"
    )
    input_hint = " --input RECENT.csv"
    """What the train command's next-step hints give predict and inspect (no built-in input)."""
    train_defaults = {"lr": 1e-3, "batch_size": 32, "steps": 2000, "eval_every": 200}

    def __init__(self, cfg, model_cfg, state=None):
        super().__init__(cfg, model_cfg, state)
        self._series: list[ts.Series] | None = None
        self._sets: dict[str, np.ndarray] = {}
        self._pending: dict[str, tuple] = {}
        self._filled = 0
        if state:
            self.scaler = ts.Scaler.from_dict(state["scaler"])
            self.outputs, self.inputs = list(state["outputs"]), list(state["inputs"])
            self.freq = np.timedelta64(int(state.get("freq_s", 3600)), "s")
            self.mase_scale = np.asarray(state.get("mase_scale", [1.0] * len(self.outputs)))
        else:
            if not cfg.data:
                raise UserError("task 'forecast' needs --data FILE.csv")
            self._load()
            self._check_model()

    # ----- data
    def _columns(self, header_cols: list[str]) -> tuple[list[str], list[str]]:
        cfg = self.cfg
        if cfg.targets:
            outs = header_cols if cfg.targets == "all" else _names(cfg.targets)
        else:
            outs = [cfg.target]
        past = [c for c in _names(cfg.covariates) if c not in outs]
        return outs, past

    def _load(self) -> None:
        cfg = self.cfg
        paths = _names(cfg.data)
        # the header only: a column that is not asked for (a station name) is never parsed
        skip = {cfg.time_column, cfg.series_column}
        outs, past = self._columns([h for h in ts.read_header(paths[0]) if h not in skip])
        series = ts.read_series(paths, cfg.time_column, outs + past, cfg.series_column)
        series = [ts.regularize(s, cfg.fill) for s in series]
        self._filled = sum(s.filled for s in series)
        self.outputs, self.inputs = outs, outs + past
        self.freq = series[0].freq
        self.ranges = []
        need = cfg.lookback + cfg.horizon
        for s in series:
            if len(s.times) < need:
                raise UserError(
                    f"{s.name}: {len(s.times)} rows, shorter than --lookback + --horizon = {need}"
                )
            r = ts.split_ranges(
                len(s.times),
                s.times,
                cfg.split,
                (cfg.train_end, cfg.valid_end, cfg.test_end),
                (cfg.valid_fraction, cfg.test_fraction),
            )
            self.ranges.append(r)
        train_rows = np.concatenate(
            [s.values[: r.train[1]] for s, r in zip(series, self.ranges, strict=True)]
        )
        self.scaler = ts.Scaler.fit(train_rows)
        self._series = series
        self._scaled = [self.scaler.transform(s.values).astype(np.float32) for s in series]
        self._cal = [ts.calendar_features(s.times).astype(np.float32) for s in series]
        C = len(outs)
        self.mase_scale = fm.seasonal_scale(
            torch.from_numpy(train_rows[:, :C]), cfg.mase_season
        ).numpy()
        for split in ("train", "valid", "test"):
            idx = [
                np.stack([np.full(len(st), k), st], 1)
                for k, r in enumerate(self.ranges)
                for st in [
                    ts.window_starts(
                        r.get(split), cfg.lookback, cfg.horizon, train=split == "train"
                    )
                ]
            ]
            self._sets[split] = np.concatenate(idx).astype(np.int64)
            if not len(self._sets[split]):
                raise UserError(
                    f"--split {cfg.split}: the {split} range holds no window of --lookback "
                    f"{cfg.lookback} + --horizon {cfg.horizon}"
                )

    def _ensure(self) -> None:
        if self._series is None:
            self._load()

    def _check_model(self) -> None:
        self.build_model()  # a bad combination (seasonal168 with a short lookback) now, in one line

    def state(self):
        return {
            "scaler": self.scaler.to_dict(),
            "outputs": self.outputs,
            "inputs": self.inputs,
            "freq_s": int(self.freq / np.timedelta64(1, "s")),
            "mase_scale": [float(v) for v in self.mase_scale],
        }

    def data_report(self):
        self._ensure()
        return {
            "series": len(self._series),
            "rows": sum(len(s.times) for s in self._series),
            "filled_rows": self._filled,
            "fill": self.cfg.fill,
            "outputs": self.outputs,
            "inputs": self.inputs,
            **{f"{k}_windows": len(v) for k, v in self._sets.items()},
            **{f"{k}_rows": list(self.ranges[0].get(k)) for k in ("train", "valid", "test")},
            "metrics": "mse/mae/crps on the scale standardised with the training rows' mean "
            "and std (the papers' convention); mse_orig/mae_orig in the data's units",
        }

    @property
    def n_calendar(self) -> int:
        return 3 if self.cfg.calendar else 0

    def build_model(self) -> nn.Module:
        return Forecaster(
            self.model_cfg,
            self.cfg.lookback,
            self.cfg.horizon,
            len(self.outputs),
            len(self.inputs) - len(self.outputs),
            self.n_calendar,
        )

    def _batch(self, index: np.ndarray) -> ForecastBatch:
        """Windows ``index`` (rows of (series, start)) as tensors, gathered per series with one
        fancy index (rows ``s + arange(L)`` and ``s + L + arange(H)``)."""
        L, H, C = self.cfg.lookback, self.cfg.horizon, len(self.outputs)
        B, V, K = len(index), self._scaled[0].shape[1], self.n_calendar
        x = np.empty((B, L, V + K), np.float32)
        fut = np.empty((B, H, K), np.float32)
        y = np.empty((B, H, C), np.float32)
        for k in np.unique(index[:, 0]) if B else ():
            m = index[:, 0] == k
            rows_x = index[m, 1][:, None] + np.arange(L)
            rows_y = index[m, 1][:, None] + L + np.arange(H)
            v, c = self._scaled[k], self._cal[k]
            x[m, :, :V] = v[rows_x]
            y[m] = v[rows_y][..., :C]
            if K:
                x[m, :, V:] = c[rows_x]
                fut[m] = c[rows_y]
        return ForecastBatch(*(torch.from_numpy(a) for a in (x, fut, y)))

    def train_batch(self, step, seed, batch_size, rank, world):
        self._ensure()
        windows = self._sets["train"]
        pick = torch.randint(len(windows), (batch_size,), generator=step_generator(seed, step))
        n = batch_size // world
        part = pick[rank * n : (rank + 1) * n] if world > 1 else pick
        return self._batch(windows[part.numpy()])

    # ----- loss and metrics
    def _params(self, model, b: ForecastBatch, teacher: bool) -> Tensor:
        fut = b.future if b.future.shape[-1] else None
        return model(b.x, fut, b.y if teacher else None)

    def loss(self, model, batch):
        p = self._params(model, batch, teacher=True)
        lik, y = self.model_cfg.likelihood, batch.y
        if lik == "point":
            return F.mse_loss(p[..., 0], y)
        if lik == "gaussian":
            return fm.gaussian_nll(y, p[..., 0], p[..., 1]).mean()
        if lik == "student-t":
            return fm.student_t_nll(y, p[..., 0], p[..., 1], p[..., 2]).mean()
        levels = torch.tensor(self.model_cfg.levels, device=y.device)
        return fm.pinball(y, p, levels).mean()

    def split_source(self, split):
        return f"the {split} range of {self.cfg.data}" if self.cfg.data else ""

    def _band(self, p: Tensor, gen: torch.Generator | None = None):
        """(lower, upper, nominal, crps-ready pieces) of the outer interval."""
        lik = self.model_cfg.likelihood
        if lik == "gaussian":
            d = torch.distributions.Normal(p[..., 0], p[..., 1])
            lo, hi = d.icdf(torch.tensor(_OUT_LEVELS[0])), d.icdf(torch.tensor(_OUT_LEVELS[-1]))
            return lo, hi, _OUT_LEVELS[-1] - _OUT_LEVELS[0]
        if lik == "student-t":
            s = self._samples(p, gen)
            lo, hi = torch.quantile(s, torch.tensor(list(_OUT_LEVELS[::2])), dim=0)
            return lo, hi, _OUT_LEVELS[-1] - _OUT_LEVELS[0]
        if lik == "quantile":
            lv = self.model_cfg.levels
            return p[..., 0], p[..., -1], lv[-1] - lv[0]
        return None

    def _samples(self, p: Tensor, gen: torch.Generator | None) -> Tensor:
        gen = gen or torch.Generator().manual_seed(0)
        # t = mu + sigma * N / sqrt(chi2_df / df), drawn from a fixed generator (reproducible)
        shape = (_SAMPLES, *p.shape[:-1])
        z = torch.randn(shape, generator=gen)
        chi2 = torch.distributions.Chi2(p[..., 2].cpu().expand(shape)).sample()
        return p[..., 0].cpu() + p[..., 1].cpu() * z / torch.sqrt(chi2 / p[..., 2].cpu())

    def evaluate(self, model, split, device):
        self._ensure()
        windows = self._sets[split]
        lik = self.model_cfg.likelihood
        sums = dict.fromkeys(("se", "ae", "se_orig", "ae_orig", "ase", "crps", "cover"), 0.0)
        n = 0
        std = torch.tensor(self.scaler.std[: len(self.outputs)], dtype=torch.float32)
        scale = torch.tensor(self.mase_scale, dtype=torch.float32)
        gen = torch.Generator().manual_seed(0)
        torch.manual_seed(0)  # the t-samples' chi-square draws: the same every evaluation
        nominal = 0.0
        for start in range(0, len(windows), _EVAL_BATCH):
            b = self._batch(windows[start : start + _EVAL_BATCH])
            b = ForecastBatch(*(t.to(device) for t in b))
            p = self._params(model, b, teacher=False).float().cpu()
            y = b.y.float().cpu()
            err = model.point(p) - y
            sums["se"] += float(err.pow(2).sum())
            sums["ae"] += float(err.abs().sum())
            sums["se_orig"] += float((err * std).pow(2).sum())
            sums["ae_orig"] += float((err * std).abs().sum())
            sums["ase"] += float((err * std).abs().div(scale).sum())
            n += err.numel()
            if lik == "point":
                continue
            if lik == "gaussian":
                sums["crps"] += float(fm.crps_gaussian(y, p[..., 0], p[..., 1]).sum())
            elif lik == "student-t":
                sums["crps"] += float(fm.crps_samples(y, self._samples(p, gen)).sum())
            else:
                lv = torch.tensor(self.model_cfg.levels)
                sums["crps"] += float(fm.crps_quantiles(y, p, lv).sum())
            lo, hi, nominal = self._band(p, gen)
            sums["cover"] += float(((y >= lo) & (y <= hi)).sum())
        out = {
            "mse": sums["se"] / n,
            "mae": sums["ae"] / n,
            "mse_orig": sums["se_orig"] / n,
            "mae_orig": sums["ae_orig"] / n,
            "mase": sums["ase"] / n,
            "windows": float(len(windows)),
        }
        if lik != "point":
            out.update(crps=sums["crps"] / n, coverage=sums["cover"] / n, nominal=nominal)
        return out

    # ----- predict / inspect
    def _read_recent(self, path_or_text: str, where: str) -> tuple[np.ndarray, np.ndarray]:
        """Times and raw values (inputs' columns) of a recent table: a file, or CSV text."""
        cfg = self.cfg
        if "\n" in path_or_text:  # CSV lines (inspect --input reads a file line by line)
            tmp = io.StringIO(path_or_text)
            rows = list(csv.reader(tmp))
            header, rows = [h.strip() for h in rows[0]], rows[1:]
            import tempfile

            with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, newline="") as f:
                csv.writer(f).writerows([header, *rows])
            paths = [f.name]
        else:
            paths = [path_or_text]
        if self._loaded_first(path_or_text):  # the run's own data, read already in training
            s = self._series[0]
            self._last_read = (len(s.times) - s.filled, s.filled)
            return s.times[-cfg.lookback :], s.values[-cfg.lookback :]
        try:
            series = ts.read_series(paths, cfg.time_column, self.inputs, "")
        except UserError as e:
            if paths[0] == path_or_text:
                raise
            # the lines' own name in the message, not the temporary copy's
            raise UserError(str(e).replace(paths[0], where, 1)) from None
        finally:
            if paths[0] != path_or_text:
                Path(paths[0]).unlink(missing_ok=True)
        if len(series) != 1:
            raise UserError(f"{where}: give one series")
        s = ts.regularize(series[0], cfg.fill, where)
        if s.freq != self.freq:
            raise UserError(f"{where}: step {s.freq} differs from the training data's {self.freq}")
        if len(s.times) < cfg.lookback:
            raise UserError(
                f"{where}: {len(s.times)} rows, fewer than the run's --lookback {cfg.lookback}"
            )
        self._last_read = (len(series[0].times), s.filled)
        return s.times[-cfg.lookback :], s.values[-cfg.lookback :]

    def _loaded_first(self, path: str) -> bool:
        """Whether ``path`` is the first data file, loaded as one series of the run's columns
        (what reading it again as a recent table gives)."""
        first = _names(self.cfg.data)[:1]
        return (
            self._series is not None
            and not self.cfg.series_column
            and first == [path]
            and self._series[0].columns == self.inputs
        )

    def _window(self, times: np.ndarray, values: np.ndarray):
        H = self.cfg.horizon
        future_t = times[-1] + self.freq * np.arange(1, H + 1)
        x = self.scaler.transform(values).astype(np.float32)
        fut = np.zeros((H, 0), np.float32)
        if self.n_calendar:
            x = np.concatenate([x, ts.calendar_features(times).astype(np.float32)], 1)
            fut = ts.calendar_features(future_t).astype(np.float32)
        return torch.from_numpy(x)[None], torch.from_numpy(fut)[None], future_t

    def _forecast(self, model, x, fut, device) -> dict[str, np.ndarray]:
        """Point forecast and 10/50/90% quantiles (where the model has a distribution), in the
        data's units, each ``(H, C)``."""
        with torch.no_grad():
            p = model(x.to(device), fut.to(device) if fut.shape[-1] else None).float().cpu()[0]
        C = len(self.outputs)
        mean, std = self.scaler.mean[:C], self.scaler.std[:C]
        out = {"point": model.point(p).numpy() * std + mean}
        lik = self.model_cfg.likelihood
        if lik == "gaussian":
            d = torch.distributions.Normal(p[..., 0], p[..., 1])
            for q in _OUT_LEVELS:
                out[f"q{q:g}"] = d.icdf(torch.tensor(q)).numpy() * std + mean
        elif lik == "student-t":
            s = self._samples(p[None], None)[:, 0]
            for q in _OUT_LEVELS:
                out[f"q{q:g}"] = torch.quantile(s, q, dim=0).numpy() * std + mean
        elif lik == "quantile":
            for k, q in enumerate(self.model_cfg.levels):
                out[f"q{q:g}"] = p[..., k].numpy() * std + mean
        return out

    def read_input_file(self, path, **options):
        self.read_config(options)
        times, values = self._read_recent(path, f"--input {path}")
        x, fut, future_t = self._window(times, values)
        self._pending[path] = (x, fut, future_t)
        H = self.cfg.horizon
        # the time column comes with each result (predict() writes it), so no input columns
        return InputRecords(
            inputs=[f"{path} +{h + 1}" for h in range(H)],
            columns=[{} for _ in future_t],
            summary=f"{self._last_read[0]} rows of {path} ({self._last_read[1]} filled; the last "
            f"{self.cfg.lookback} are the lookback); "
            f"forecasting {H} rows from {str(future_t[0]).replace('T', ' ')}",
        )

    def predict(self, model, inputs, device):
        results, done = [], {}
        for item in inputs:
            path, _, h = item.rpartition(" +")
            if path not in self._pending or not h.isdigit():
                raise UserError(
                    f"predict: {item!r}: a forecast run reads its recent rows from a table; give "
                    "--input recent.csv"
                )
            if path not in done:
                x, fut, _ = self._pending[path]
                done[path] = self._forecast(model, x, fut, device)
            fc, k = done[path], int(h) - 1
            when = str(self._pending[path][2][k]).replace("T", " ")
            row: dict = {self.cfg.time_column: when, "step": k + 1}
            for j, c in enumerate(self.outputs):
                row[c] = float(fc["point"][k, j])
                for key in fc:
                    if key != "point":
                        row[f"{c}_{key}"] = float(fc[key][k, j])
            results.append(row)
        return results

    def _gates(self, model, x, fut, device):
        enc = getattr(model.net, "encoder", None)
        if not isinstance(enc, LSTM):
            return None
        with torch.no_grad(), record_gates(enc) as rec:
            model(x.to(device), fut.to(device) if fut.shape[-1] else None)
        # the first call is the encoder over the lookback (a segment model's decoder steps
        # come after it)
        top = enc.num_layers - 1
        trace = next(t for t in rec.traces if (t.layer, t.direction) == (top, 0))
        j = self._plot_channel() if self.model_cfg.channel_independent else 0
        gates = {g: getattr(trace, g)[j].cpu().numpy() for g in ("i", "f", "o")}
        S = self.model_cfg.segment
        if S:  # one step per segment: drawn at each segment's last row
            L = self.cfg.lookback
            gates["rows"] = np.arange(L - (L // S) * S + S - 1, L, S)
        return gates

    def _label(self) -> str:
        """The model in a plot's title: its name, with the segment length of a segment LSTM."""
        m = self.model_cfg
        return f"{m.model} over segments of {m.segment}" if m.segment else m.model

    def _plot_channel(self) -> int:
        return self.outputs.index(self.cfg.target) if self.cfg.target in self.outputs else 0

    def _draw(self, model, times, values, actual, path, device, title) -> Path:
        from lstmkit.viz.forecast import plot_forecast

        x, fut, future_t = self._window(times, values)
        fc = self._forecast(model, x, fut, device)
        j = self._plot_channel()
        lower = upper = None
        interval = ""
        if "q0.1" in fc and "q0.9" in fc:
            lower, upper, interval = fc["q0.1"][:, j], fc["q0.9"][:, j], "10-90% interval"
        return plot_forecast(
            path,
            times,
            values[:, j],
            future_t,
            fc["point"][:, j],
            lower=lower,
            upper=upper,
            interval=interval,
            actual=None if actual is None else actual[:, j],
            gates=self._gates(model, x, fut, device),
            title=title,
            ylabel=self.outputs[j],
        )

    def evaluation_plots(self, model, split, out, device):
        self._ensure()
        windows = self._sets[split]
        L, H = self.cfg.lookback, self.cfg.horizon
        paths = []
        for name, pos in (("first", 0), ("middle", len(windows) // 2), ("last", len(windows) - 1)):
            k, s = windows[pos]
            ser = self._series[k]
            paths.append(
                self._draw(
                    model,
                    ser.times[s : s + L],
                    ser.values[s : s + L],
                    ser.values[s + L : s + L + H],
                    Path(out) / f"forecast-{split}-{name}.png",
                    device,
                    f"{self._label()}: {split} window {pos + 1} of {len(windows)} ({name}); "
                    f"lookback {L}, horizon {H}",
                )
            )
        return paths

    def inspect(self, model, inputs, out, device):
        if not inputs:  # the forecast after the end of the run's own data file
            inputs = [p for p in _names(self.cfg.data)[:1] if Path(p).is_file()]
        if not inputs:
            raise UserError("inspect: give --input recent.csv (or the file's path)")
        # one input without a comma is a path (`inspect RUN recent.csv`); else the table's lines
        # (--input gives its file's lines, a header-only file one line)
        path = len(inputs) == 1 and ("," not in inputs[0] or Path(inputs[0]).is_file())
        text = inputs[0] if path else "\n".join(inputs) + "\n"
        times, values = self._read_recent(text, "inspect input")
        return [
            self._draw(
                model,
                times,
                values,
                None,
                Path(out) / "forecast-1.png",
                device,
                f"{self._label()}: forecast after {str(times[-1])[:16]}",
            )
        ]

    def examples(self):
        """The forecast for the rows after the end of the run's first data file (where it is
        still there): what ``lstmkit predict RUN`` gives without ``--input``."""
        first = _names(self.cfg.data)[:1]
        if not first or not Path(first[0]).is_file():
            return []
        try:
            return self.read_input_file(first[0]).inputs
        except UserError:
            return []


def mean_spread(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / max(1, len(values) - 1))
