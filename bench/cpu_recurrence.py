"""Benchmark of the fused CPU recurrence against torch.nn.LSTM, one full layer each.

``python bench/cpu_recurrence.py [--repeats N] [--variants a,b]``

Ours: ``xg = x W_ih^T + b_ih`` through torch, then :class:`FusedLSTMRecurrenceFunction`.
Theirs: a ``torch.nn.LSTM`` of the same sizes (vanilla; with ``proj_size`` for the projection
variant too). The row ``layernorm+ln_ih`` adds the input-side layer norm of a full layer-normed
LSTM layer, ``LN(x W_ih^T) gamma_ih + b_ih`` through ``F.layer_norm``, outside the kernel.
Timings are medians over repeats run interleaved in a shuffled order, so that drift and
after-effects (allocator, caches) hit every row alike. Forward-only rows run under no_grad.
Zoneout masks are drawn once outside the timing: drawing them is the module's cost, not the
kernel's.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from lstmkit.kernels.cpu.recurrence import FusedLSTMRecurrenceFunction, load_extension
from lstmkit.reference.lstm import CellOptions, RecurrenceInputs

SHAPES = {
    "fwd T=200 B=1 I=64 H=128": dict(T=200, B=1, I=64, H=128, backward=False),
    "fwd+bwd T=100 B=32 I=128 H=256": dict(T=100, B=32, I=128, H=256, backward=True),
}
VARIANTS = (
    "vanilla",
    "layernorm",
    "layernorm+ln_ih",
    "peephole",
    "coupled",
    "zoneout",
    "projection",
)
TARGET = {False: 2.0, True: 1.5}


def _layer(variant: str, T: int, B: int, I: int, H: int, x: torch.Tensor) -> Callable:
    """One LSTM layer of the variant on the fused kernel; returns ``run() -> out``."""
    P = H // 2 if variant == "projection" else H
    G = 4 * H
    k = H**-0.5

    def p(*shape: int, scale: float = k) -> torch.Tensor:
        return ((torch.rand(*shape) * 2 - 1) * scale).requires_grad_()

    w_ih, b_ih, w_hh, b_hh = p(G, I), p(G), p(G, P), p(G)
    w_hr = p(P, H) if variant == "projection" else None
    peep = (p(H), p(H), p(H)) if variant == "peephole" else (None, None, None)
    if variant.startswith("layernorm"):
        ln_ih = torch.ones(G, requires_grad=True) if variant == "layernorm+ln_ih" else None
        ln = (
            torch.ones(G, requires_grad=True),
            torch.ones(H, requires_grad=True),
            torch.zeros(H, requires_grad=True),
        )
    else:
        ln_ih, ln = None, (None, None, None)
    zh = zc = None
    if variant == "zoneout":
        zh = torch.bernoulli(torch.full((T, B, P), 0.1))
        zc = torch.bernoulli(torch.full((T, B, H), 0.1))
    opts = CellOptions(coupled=variant == "coupled")
    h0, c0 = torch.zeros(B, P), torch.zeros(B, H)

    def run() -> torch.Tensor:
        if ln_ih is not None:  # gates_x = LN(x W_ih^T) gamma_ih + b_ih
            xg = F.layer_norm((x.reshape(T * B, I) @ w_ih.t()), (G,), ln_ih, b_ih)
        else:
            xg = torch.addmm(b_ih, x.reshape(T * B, I), w_ih.t())
        inputs = RecurrenceInputs(
            xg.view(T, B, G), h0, c0, w_hh, b_hh, w_hr, *peep, *ln, zoneout_h=zh, zoneout_c=zc
        )
        out, _, _ = FusedLSTMRecurrenceFunction.run(inputs, None, False, opts)
        return out

    return run


def _torch_layer(T: int, B: int, I: int, H: int, x: torch.Tensor, proj: int = 0) -> Callable:
    lstm = torch.nn.LSTM(I, H, proj_size=proj)

    def run() -> torch.Tensor:
        return lstm(x)[0]

    return run


def _timed(fn: Callable, backward: bool) -> float:
    if backward:
        t0 = time.perf_counter()
        fn().sum().backward()
        return time.perf_counter() - t0
    with torch.no_grad():
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0


def bench(repeats: int = 20, variants: tuple[str, ...] = VARIANTS) -> list[tuple]:
    load_extension()
    rows = []
    for label, cfg in SHAPES.items():
        T, B, I, H, backward = cfg["T"], cfg["B"], cfg["I"], cfg["H"], cfg["backward"]
        torch.manual_seed(0)
        x = torch.randn(T, B, I, requires_grad=backward)
        fns: dict[str, Callable] = {"torch.nn.LSTM": _torch_layer(T, B, I, H, x)}
        if "projection" in variants:
            fns["torch.nn.LSTM proj"] = _torch_layer(T, B, I, H, x, proj=H // 2)
        for v in variants:
            fns[v] = _layer(v, T, B, I, H, x)
        times: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(3):  # warm up caches, allocator and thread pool
            for fn in fns.values():
                _timed(fn, backward)
        order = list(fns)
        rng = random.Random(0)
        for _ in range(repeats):
            rng.shuffle(order)  # no row always runs right after the same other row
            for name in order:
                times[name].append(_timed(fns[name], backward))
        med = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
        base = med["torch.nn.LSTM"]
        for name, ms in med.items():
            ref = "torch.nn.LSTM proj" if name == "projection" else "torch.nn.LSTM"
            rows.append((label, name, ms, ms / base, ms / med[ref], TARGET[backward]))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    a = ap.parse_args()
    rows = bench(a.repeats, tuple(v for v in a.variants.split(",") if v))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {a.repeats}")
    print(
        f"{'shape':32s} {'layer':20s} {'ms':>8s} {'x vanilla':>10s} {'x same':>8s} {'target':>7s}"
    )
    for label, name, ms, r_van, r_same, target in rows:
        torch_row = name.startswith("torch")
        mark = "" if torch_row else ("ok" if r_same <= target else "SLOW")
        print(
            f"{label:32s} {name:20s} {ms:8.2f} {r_van:10.2f} {r_same:8.2f} "
            f"{'' if torch_row else f'<={target}':>7s} {mark}"
        )


if __name__ == "__main__":
    main()
