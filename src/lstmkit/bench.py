"""CPU benchmark of lstmkit.LSTM against torch.nn.LSTM: prints a table and writes JSON.

``python -m lstmkit.bench`` or ``lstmkit bench``. Every candidate runs in the same process,
interleaved round-robin over the repeats, and the ratios compare medians: this machine is
shared and noisy, so only side-by-side ratios mean anything.
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


@dataclass
class Row:
    shape: str
    name: str
    median_ms: float
    ratio: float
    target: float | None
    ok: bool | None
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


def bench_shape(shape: Shape, variants: list[str], repeats: int, extra_python: bool) -> list[Row]:
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
    for run in runs.values():  # warm up: builds the kernel, allocator pools
        run()
        run()
    times = interleaved_times(runs, repeats)
    base = statistics.median(times["torch.nn.LSTM"])
    idx = SHAPES.index(shape) if shape in SHAPES else -1
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        ratio = med / base
        target = TARGETS.get((name.removeprefix("lstmkit "), idx))
        rows.append(
            Row(
                shape.label,
                name,
                med,
                ratio,
                target,
                None if target is None else ratio <= target,
                ts,
            )
        )
    return rows


def machine_info() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lstmkit": lstmkit.__version__,
        "python": platform.python_version(),
    }


def format_table(rows: list[Row]) -> str:
    lines = [f"{'shape':<34} {'candidate':<28} {'median ms':>10} {'ratio':>7} {'target':>7}  ok"]
    for r in rows:
        tgt = f"{r.target:.2f}" if r.target is not None else ""
        ok = "" if r.ok is None else ("yes" if r.ok else "NO")
        lines.append(
            f"{r.shape:<34} {r.name:<28} {r.median_ms:>10.3f} {r.ratio:>7.2f} {tgt:>7}  {ok}"
        )
    return "\n".join(lines)


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
    ap.add_argument("--quick", action="store_true", help="3 repeats, small shapes (smoke test)")
    ap.add_argument(
        "--out", type=Path, default=Path("bench-out/bench-cpu.json"), help="JSON file to write"
    )
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")
    shapes = SHAPES
    repeats = args.repeats
    if args.quick:
        shapes = (Shape(10, 4, 8, 16, "fwdbwd"), Shape(10, 1, 8, 16, "fwd"))
        repeats = 3
    rows: list[Row] = []
    for shape in shapes:
        rows += bench_shape(shape, variants, repeats, extra_python=not args.quick)
        print(format_table([r for r in rows if r.shape == shape.label]), flush=True)
        print(flush=True)
    info = machine_info()
    payload = {
        "machine": info,
        "repeats": repeats,
        "command": " ".join(sys.argv),
        "rows": [asdict(r) for r in rows],
    }
    write_json_atomic(args.out, payload)
    failed = [r for r in rows if r.ok is False]
    print(f"machine: {info}")
    print(
        f"wrote {args.out}; targets met: {sum(r.ok is True for r in rows)}, missed: {len(failed)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
