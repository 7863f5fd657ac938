"""CPU benchmark of lstmkit.LSTM against torch.nn.LSTM: prints a table and writes JSON.

``python -m lstmkit.bench`` or ``lstmkit bench``. Every candidate runs in the same process:
first warm-up rounds (the kernels' first calls, allocator pools), then timed rounds that run all
candidates once each in a new shuffled order, so that drift and load hit them alike. Each time
is reported as its median and interquartile range (IQR); each ratio to torch.nn.LSTM is the
median of the per-round ratios, with their IQR. A ratio is printed only when it can be trusted:
when a candidate's or the baseline's IQR exceeds half its median, or the ratios' IQR straddles
the target, the table says "noisy" instead, and that row counts as neither met nor missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

import lstmkit

VARIANTS: dict[str, dict[str, object]] = {
    "vanilla": {},
    "layernorm": {"layer_norm": True},
    "peephole": {"peephole": True},
    "cifg": {"coupled": True},
    "no_forget": {"forget_gate": False},
    "zoneout": {"zoneout_h": 0.1, "zoneout_c": 0.1},
    "recurrent_dropout": {"recurrent_dropout": 0.1},
    "projection": {"proj_size": -4},  # negative: H // 4
}


@dataclass(frozen=True)
class Shape:
    T: int
    B: int
    I: int  # noqa: E741
    H: int
    mode: str  # "fwd" (inference, no_grad, eval) or "fwdbwd" (training step without optimizer)

    @property
    def label(self) -> str:
        return f"{self.mode} T={self.T} B={self.B} I={self.I} H={self.H}"


SHAPES = (
    Shape(100, 32, 128, 256, "fwdbwd"),
    Shape(100, 32, 128, 256, "fwd"),
    Shape(200, 1, 64, 128, "fwd"),
)

# The targets of the core issue, as (shape index, limit on ratio to torch.nn.LSTM vanilla).
TARGETS = {
    ("vanilla", 0): 1.05,
    ("vanilla", 1): 1.05,
    ("vanilla", 2): 1.05,
    **{(v, 0): 1.5 for v in ("layernorm", "peephole", "cifg", "zoneout")},
    **{(v, 2): 2.0 for v in ("layernorm", "peephole", "cifg", "zoneout")},
}


# A time (or ratio) whose IQR is wider than this share of its median is too noisy to compare.
MAX_REL_IQR = 0.5


@dataclass(frozen=True)
class Spread:
    median: float
    q1: float
    q3: float
    min: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        if len(values) < 2:
            v = values[0]
            return cls(v, v, v, v, v)
        q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return cls(med, q1, q3, min(values), max(values))

    @property
    def rel_iqr(self) -> float:
        return (self.q3 - self.q1) / self.median if self.median > 0 else float("inf")


@dataclass(frozen=True)
class Verdict:
    """A candidate against the baseline: the ratio, or None when it cannot be trusted."""

    ratio: float | None
    ratio_q1: float
    ratio_q3: float
    verdict: str | None  # "met", "missed", "noisy", or None without a target
    why_noisy: str | None = None


def judge(
    times: list[float],
    base: list[float],
    target: float | None,
    max_rel_iqr: float = MAX_REL_IQR,
) -> Verdict:
    """Compare a candidate's times with the baseline's, taken in the same rounds (paired).

    The ratio is the median of the per-round ratios, so a slow spell that hits both in one round
    cancels. It is refused (None, "noisy") when either time or the ratios themselves spread by
    more than ``max_rel_iqr`` of their median; a target is met when the ratios' upper quartile is
    within it, missed when their lower quartile is above it, and "noisy" in between.
    """
    if len(times) != len(base) or not times:
        raise ValueError("judge: the candidate and the baseline need the same rounds")
    ratios = Spread.of([t / b for t, b in zip(times, base, strict=True)])
    why = None
    for label, sp in (("time", Spread.of(times)), ("baseline", Spread.of(base)), ("ratio", ratios)):
        if sp.rel_iqr > max_rel_iqr:
            why = f"{label} IQR {sp.rel_iqr:.0%} of its median"
            break
    if why is None and target is not None and ratios.q1 <= target < ratios.q3:
        why = f"ratio IQR {ratios.q1:.3g}..{ratios.q3:.3g} straddles the target {target:.2f}"
        return Verdict(ratios.median, ratios.q1, ratios.q3, "noisy", why)
    if why is not None:
        return Verdict(None, ratios.q1, ratios.q3, None if target is None else "noisy", why)
    if target is None:
        return Verdict(ratios.median, ratios.q1, ratios.q3, None)
    return Verdict(ratios.median, ratios.q1, ratios.q3, "met" if ratios.q3 <= target else "missed")


@dataclass
class Row:
    shape: str
    name: str
    median_ms: float
    q1_ms: float
    q3_ms: float
    min_ms: float
    max_ms: float
    ratio: float | None  # None: too noisy to trust (see why_noisy)
    ratio_q1: float
    ratio_q3: float
    target: float | None
    verdict: str | None  # met / missed / noisy, None without a target
    ok: bool | None  # met True, missed False, otherwise None
    why_noisy: str | None = None
    samples_ms: list[float] = field(default_factory=list)


def _runner(module: torch.nn.Module, shape: Shape, x: torch.Tensor):
    if shape.mode == "fwd":
        module.eval()

        def run():
            with torch.no_grad():
                module(x)
    else:
        module.train()
        params = list(module.parameters())

        def run():
            out, (h, c) = module(x)
            out.sum().backward()
            for p in params:
                p.grad = None

    return run


def warm_up(runs: dict[str, Callable[[], object]], rounds: int, min_seconds: float) -> int:
    """Run every candidate ``rounds`` times, and on until ``min_seconds`` have passed (the
    kernels' first calls, oneDNN's primitive cache, allocator pools); returns the rounds run."""
    t0 = time.perf_counter()
    done = 0
    while done < rounds or time.perf_counter() - t0 < min_seconds:
        for run in runs.values():
            run()
        done += 1
    return done


def interleaved_times(
    runs: dict[str, Callable[[], object]], repeats: int
) -> dict[str, list[float]]:
    """Milliseconds of each candidate over ``repeats`` rounds; every round runs all candidates
    once, in a new shuffled order (seeded), so that drift and after-effects hit them alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    rng = random.Random(0)
    for _ in range(repeats):
        # a new order each round, so that no candidate always follows the same neighbour
        rng.shuffle(order)
        for name in order:
            t0 = time.perf_counter()
            runs[name]()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def bench_shape(
    shape: Shape,
    variants: list[str],
    repeats: int,
    extra_python: bool,
    warmup_s: float = 1.0,
) -> list[Row]:
    torch.manual_seed(0)
    x = torch.randn(shape.T, shape.B, shape.I)
    if shape.mode == "fwdbwd":
        x.requires_grad_(True)
    cands: dict[str, torch.nn.Module] = {"torch.nn.LSTM": torch.nn.LSTM(shape.I, shape.H)}
    if "projection" in variants:
        # torch has no oneDNN path with a projection: its own number is the fair yardstick
        cands["torch.nn.LSTM projection"] = torch.nn.LSTM(shape.I, shape.H, proj_size=shape.H // 4)
    for v in variants:
        kw = dict(VARIANTS[v])
        if kw.get("proj_size", 0) < 0:
            kw["proj_size"] = shape.H // -kw["proj_size"]
        cands[f"lstmkit {v}"] = lstmkit.LSTM(shape.I, shape.H, **kw)
    if extra_python:
        cands["python loop layernorm"] = lstmkit.LSTM(
            shape.I, shape.H, layer_norm=True, backend="python"
        )
    runs = {name: _runner(m, shape, x) for name, m in cands.items()}
    warm_up(runs, rounds=3, min_seconds=warmup_s)
    times = interleaved_times(runs, repeats)
    idx = SHAPES.index(shape) if shape in SHAPES else -1
    return rows_for(shape.label, times, idx)


def rows_for(label: str, times: dict[str, list[float]], shape_index: int) -> list[Row]:
    """The table rows of one shape from its interleaved times (ms), torch.nn.LSTM the baseline."""
    base = times["torch.nn.LSTM"]
    rows = []
    for name, ts in times.items():
        sp = Spread.of(ts)
        target = TARGETS.get((name.removeprefix("lstmkit "), shape_index))
        v = judge(ts, base, target)
        if name == "torch.nn.LSTM":  # the yardstick itself: its ratio is 1 by definition
            note = None
            if sp.rel_iqr > MAX_REL_IQR:
                note = f"the baseline's IQR is {sp.rel_iqr:.0%} of its median"
            v = Verdict(1.0, 1.0, 1.0, None, note)
        ok = {"met": True, "missed": False}.get(v.verdict or "")
        rows.append(
            Row(
                label,
                name,
                sp.median,
                sp.q1,
                sp.q3,
                sp.min,
                sp.max,
                v.ratio,
                v.ratio_q1,
                v.ratio_q3,
                target,
                v.verdict,
                ok,
                v.why_noisy,
                ts,
            )
        )
    return rows


# The vector instructions that decide the kernels' speed: torch's CPU kernels dispatch on them
# at run time and lstmkit's kernel is compiled with -march=native, so both use what is listed.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "neon", "sve")


def machine_info() -> dict[str, object]:
    """The machine a table ran on: CPU model, its vector instructions, threads and versions."""
    cpu, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not cpu:
                cpu = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    cpu = cpu or platform.processor() or platform.machine()
    return {
        "cpu": cpu,
        "isa": [f for f in ISA_FLAGS if f in flags],
        "torch_kernels": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lstmkit": lstmkit.__version__,
        "python": platform.python_version(),
    }


def _num(x: float) -> str:
    """Three significant digits: a ratio of 0.001 must not print as 0.00."""
    return f"{x:.3g}"


def format_table(rows: list[Row]) -> str:
    head = (
        f"{'shape':<34} {'candidate':<28} {'median ms':>10} {'IQR ms':>15} "
        f"{'ratio':>6} {'ratio IQR':>11} {'target':>6}  verdict"
    )
    lines = [head]
    for r in rows:
        iqr = f"{_num(r.q1_ms)}-{_num(r.q3_ms)}"
        ratio = "noisy" if r.ratio is None else _num(r.ratio)
        rq = f"{_num(r.ratio_q1)}-{_num(r.ratio_q3)}"
        tgt = f"{r.target:.2f}" if r.target is not None else ""
        verdict = {"met": "met", "missed": "MISSED", "noisy": "noisy"}.get(r.verdict or "", "")
        if r.why_noisy:
            verdict = f"{verdict} ({r.why_noisy})".strip()
        lines.append(
            f"{r.shape:<34} {r.name:<28} {_num(r.median_ms):>10} {iqr:>15} "
            f"{ratio:>6} {rq:>11} {tgt:>6}  {verdict}".rstrip()
        )
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    """The closing line: targets met, missed, and those the noise left undecided."""
    met = sum(r.verdict == "met" for r in rows)
    missed = sum(r.verdict == "missed" for r in rows)
    noisy = sum(r.verdict == "noisy" for r in rows)
    if met + missed + noisy == 0:
        return "no targets apply to these shapes (the targets are set for the full run, no --quick)"
    line = f"targets met: {met}, missed: {missed}"
    if noisy:
        line += (
            f", undecided: {noisy} (too noisy to say: counted as neither met nor missed; rerun "
            "on a quieter machine or with more --repeats)"
        )
    return line


def write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option as lstmkit's one error line, not usage + error."""

    def error(self, message: str):
        from lstmkit.utils.errors import UserError

        raise UserError(f"bench: {message}")


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(prog="lstmkit bench", description=__doc__)
    ap.add_argument("--repeats", type=int, default=31, help="timed runs per candidate (median)")
    ap.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated subset of {','.join(VARIANTS)}",
    )
    ap.add_argument(
        "--quick", action="store_true", help="small shapes, 21 rounds (a smoke test, no targets)"
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for torch; 0 lets torch choose (all cores)",
    )
    ap.add_argument(
        "--warmup", type=float, default=1.0, help="seconds of warm-up rounds per shape (min)"
    )
    ap.add_argument(
        "--out", type=Path, default=Path("bench-out/bench-cpu.json"), help="JSON file to write"
    )
    args = ap.parse_args(argv)
    if args.threads < 0:
        ap.error(f"--threads must be >= 0, got {args.threads}")
    if args.repeats < 2:
        ap.error(f"--repeats must be >= 2 (a spread needs two rounds), got {args.repeats}")
    if not args.warmup >= 0 or args.warmup == float("inf"):
        ap.error(f"--warmup must be a number of seconds >= 0, got {args.warmup}")
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")
    shapes = SHAPES
    repeats = args.repeats
    warmup = args.warmup
    if args.quick:
        shapes = (Shape(10, 4, 8, 16, "fwdbwd"), Shape(10, 1, 8, 16, "fwd"))
        repeats = min(repeats, 21)
        warmup = min(warmup, 0.3)
    rows: list[Row] = []
    for shape in shapes:
        rows += bench_shape(shape, variants, repeats, extra_python=not args.quick, warmup_s=warmup)
        print(format_table([r for r in rows if r.shape == shape.label]), flush=True)
        print(flush=True)
    info = machine_info()
    payload = {
        "machine": info,
        "repeats": repeats,
        "warmup_s": warmup,
        "max_rel_iqr": MAX_REL_IQR,
        "command": " ".join(sys.argv),
        "rows": [asdict(r) for r in rows],
    }
    write_json_atomic(args.out, payload)
    print(f"machine: {info}")
    print(f"wrote {args.out}; {summary(rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
