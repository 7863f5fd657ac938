"""Candidate CPU backends for the fused LSTM recurrence, measured side by side.

What it measures: the forward recurrence of the layer-norm LSTM variant (layer norm with gain on
``h W_hh^T``, then ``+ b_hh``; sigmoid/tanh gates; layer norm with gain and bias on ``c``;
``h = o * tanh(LN(c))``), the most demanding variant, on the candidates the fused-kernel issue
named:

* ``cpp``          the project's C++ extension (``lstmkit.kernels.cpu.recurrence.fused_forward``)
* ``python``       the eager PyTorch loop ``lstmkit.reference.lstm.recurrence_forward``
* ``torchscript``  the same loop written here and compiled with ``torch.jit.script``
* ``numba-dot``    an ``@numba.njit`` loop on numpy views, recurrent matmul through ``np.dot``
* ``numba-loops``  the same with the matmul as explicit loops (single-threaded)
* ``torch.nn.LSTM`` vanilla, same sizes, as the yardstick

Candidates 1-4 start from the input projection ``xg (T, B, 4H)``, computed once outside the
timing; ``torch.nn.LSTM`` gets ``x (T, B, I)`` and so also pays for ``x W_ih^T + b``. The row
``(xg projection)`` times that projection alone so the two can be put on the same footing.
Everything runs in one process under ``torch.no_grad()``, float32, 2 torch threads. Rows are
timed round-robin in a shuffled order per round and reported as medians, so that drift and
after-effects (allocator, caches, frequency) hit every row alike. Before timing, every
candidate's ``out, h_n, c_n`` is checked against ``cpp`` (max abs diff < 1e-4).

numba is optional (it is not a project dependency). To include it, use a separate venv::

    python3 -m venv /tmp/nbvenv
    /tmp/nbvenv/bin/pip install torch==2.13.0 numba scipy ninja   # numba's np.dot needs scipy
    cd /work/main && PATH=/tmp/nbvenv/bin:$PATH PYTHONPATH=$PWD \\
        /tmp/nbvenv/bin/python bench/cpu_backends.py [--out PATH] [--repeats N]

or, without numba, ``.venv/bin/python bench/cpu_backends.py``. The C++ extension is built on
first use in an environment (about a minute, cached by torch afterwards); its load time is
reported separately, as is numba's first-call (compile) time. Results go to ``--out`` as JSON
(default ``bench-out/cpu_backends.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lstmkit.kernels.cpu import recurrence
from lstmkit.reference.lstm import CellOptions, RecurrenceInputs, recurrence_forward

try:
    import numba
except ImportError:
    numba = None

THREADS = 2
TOL = 1e-4
SHAPES = (
    dict(T=200, B=1, I=64, H=128),
    dict(T=100, B=32, I=128, H=256),
)
OPTS = CellOptions()
EPS = OPTS.layer_norm_eps
YARDSTICK = "torch.nn.LSTM"
INFO_ROW = "(xg projection)"


# --- TorchScript ---------------------------------------------------------------------------
# torch.layer_norm is the same math as the reference's mean/var/rsqrt, in one op per call;
# writing it out by hand would only add dispatches, which is what TorchScript cannot remove
# on CPU (its fuser is off for CPU by default).
@torch.jit.script
def _ts_forward(
    xg: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_hh: Tensor,
    b_hh: Tensor,
    ln_hh: Tensor,
    ln_c_w: Tensor,
    ln_c_b: Tensor,
    eps: float,
) -> tuple[Tensor, Tensor, Tensor]:
    T, G = xg.size(0), xg.size(2)
    H = G // 4
    w_t = w_hh.t()
    xgb = xg + b_hh  # b_hh comes after the layer norm, so it can join xg once for all steps
    h, c = h0, c0
    out = torch.empty(T, h0.size(0), h0.size(1), dtype=xg.dtype)
    for t in range(T):
        gates = xgb[t] + torch.layer_norm(torch.mm(h, w_t), [G], ln_hh, None, eps)
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(torch.layer_norm(c, [H], ln_c_w, ln_c_b, eps))
        out[t] = h
    return out, h, c


# --- numba -----------------------------------------------------------------------------------
if numba is not None:

    @numba.njit(fastmath=True, cache=True)
    def _nb_cell(gx, r, b_hh, ln_hh, ln_c_w, ln_c_b, eps, h, c, gates, o):
        """One batch row of one step, given ``r = h_prev W_hh^T``; updates ``h, c`` in place."""
        # Every constant is float32: a Python float literal would promote the arithmetic to
        # float64 and halve the SIMD width.
        one = np.float32(1.0)
        eps = np.float32(eps)
        G = r.shape[0]
        H = G // 4
        inv_g, inv_h = one / np.float32(G), one / np.float32(H)
        mu = np.float32(0.0)
        for j in range(G):
            mu += r[j]
        mu *= inv_g
        var = np.float32(0.0)
        for j in range(G):
            var += (r[j] - mu) * (r[j] - mu)
        rstd = one / np.sqrt(var * inv_g + eps)
        for j in range(G):
            gates[j] = gx[j] + (r[j] - mu) * rstd * ln_hh[j] + b_hh[j]
        for k in range(H):
            i = one / (one + np.exp(-gates[k]))
            f = one / (one + np.exp(-gates[H + k]))
            g = np.tanh(gates[2 * H + k])
            o[k] = one / (one + np.exp(-gates[3 * H + k]))
            c[k] = f * c[k] + i * g
        mu = np.float32(0.0)
        for k in range(H):
            mu += c[k]
        mu *= inv_h
        var = np.float32(0.0)
        for k in range(H):
            var += (c[k] - mu) * (c[k] - mu)
        rstd = one / np.sqrt(var * inv_h + eps)
        for k in range(H):
            h[k] = o[k] * np.tanh((c[k] - mu) * rstd * ln_c_w[k] + ln_c_b[k])

    @numba.njit(fastmath=True, cache=True)
    def _nb_forward_dot(xg, h0, c0, w_hh, b_hh, ln_hh, ln_c_w, ln_c_b, eps, out):
        T, B, G = xg.shape
        h, c = h0.copy(), c0.copy()
        gates = np.empty(G, np.float32)
        o = np.empty(G // 4, np.float32)
        w_t = w_hh.T  # an F-ordered view: BLAS reads it transposed, no copy
        for t in range(T):
            r = np.dot(h, w_t)  # (B, G), one sgemm per step
            for b in range(B):
                _nb_cell(xg[t, b], r[b], b_hh, ln_hh, ln_c_w, ln_c_b, eps, h[b], c[b], gates, o)
            out[t] = h
        return h, c

    @numba.njit(fastmath=True, cache=True)
    def _nb_forward_loops(xg, h0, c0, w_hh, b_hh, ln_hh, ln_c_w, ln_c_b, eps, out):
        T, B, G = xg.shape
        P = h0.shape[1]
        h, c = h0.copy(), c0.copy()
        r = np.empty((B, G), np.float32)
        gates = np.empty(G, np.float32)
        o = np.empty(G // 4, np.float32)
        for t in range(T):
            # Weight row outside, batch inside: a row of W_hh is read once per step and stays in
            # L1 across the batch. fastmath lets LLVM vectorize the reduction over k.
            for j in range(G):
                for b in range(B):
                    acc = np.float32(0.0)
                    for k in range(P):
                        acc += w_hh[j, k] * h[b, k]
                    r[b, j] = acc
            for b in range(B):
                _nb_cell(xg[t, b], r[b], b_hh, ln_hh, ln_c_w, ln_c_b, eps, h[b], c[b], gates, o)
            out[t] = h
        return h, c

    NUMBA_KERNELS = {"numba-dot": _nb_forward_dot, "numba-loops": _nb_forward_loops}
else:
    NUMBA_KERNELS = {}


def _numba_runner(kernel: Callable, args: tuple) -> Callable[[], tuple[Tensor, ...]]:
    """Timed call of a numba kernel, tensor conversions included."""
    xg, h0, c0, w_hh, b_hh = args.xg, args.h0, args.c0, args.weight_hh, args.bias_hh
    ln_hh, ln_c_w, ln_c_b = args.ln_weight_hh, args.ln_weight_c, args.ln_bias_c

    def run() -> tuple[Tensor, ...]:
        out = torch.empty(xg.shape[0], *h0.shape)
        h, c = kernel(
            xg.numpy(),
            h0.numpy(),
            c0.numpy(),
            w_hh.numpy(),
            b_hh.numpy(),
            ln_hh.numpy(),
            ln_c_w.numpy(),
            ln_c_b.numpy(),
            EPS,
            out.numpy(),
        )
        return out, torch.from_numpy(h), torch.from_numpy(c)

    return run


# --- setup -----------------------------------------------------------------------------------
def _load_cpp() -> tuple[float, bool | None]:
    """Seconds to get the extension into the process, and whether torch had it built already.

    A library already on disk is not enough to call it cached: ninja rebuilds it when the
    command line changed (another venv sharing the cache directory), so compare its mtime.
    """
    so = None
    try:  # private API, used only to tell a build from a cache hit in the report
        from torch.utils.cpp_extension import _get_build_directory

        build_dir = Path(_get_build_directory(recurrence._build_name(), verbose=False))
        so = build_dir / f"{recurrence._build_name()}.so"
    except Exception:
        pass
    before = so.stat().st_mtime_ns if so is not None and so.exists() else None
    t0 = time.perf_counter()
    recurrence.load_extension()
    load_s = time.perf_counter() - t0
    if so is None or not so.exists():
        return load_s, None
    return load_s, before == so.stat().st_mtime_ns


def _compile_numba() -> dict[str, dict]:
    """Call each numba kernel once on a tiny problem: its compile (or cache load) time."""
    info = {}
    T, B, I, H = 2, 1, 4, 4
    args, _, _ = _problem(T, B, I, H, seed=1)
    for name, kernel in NUMBA_KERNELS.items():
        t0 = time.perf_counter()
        _numba_runner(kernel, args)()
        dt = time.perf_counter() - t0
        stats = getattr(kernel, "stats", None)
        info[name] = {
            "first_call_s": dt,
            # keyed by signature tuples, which JSON cannot take
            "cache_hits": sum(stats.cache_hits.values()) if stats else None,
            "cache_misses": sum(stats.cache_misses.values()) if stats else None,
        }
    return info


def _problem(
    T: int, B: int, I: int, H: int, seed: int = 0
) -> tuple[RecurrenceInputs, Tensor, Callable]:
    """The recurrence's inputs, the raw input, and its projection."""
    g = torch.Generator().manual_seed(seed)
    G, k = 4 * H, H**-0.5

    def u(*shape: int, scale: float = k) -> Tensor:
        return (torch.rand(*shape, generator=g) * 2 - 1) * scale

    x = torch.randn(T, B, I, generator=g)
    w_ih, b_ih = u(G, I), u(G)
    # Gains and bias away from 1 and 0, so that a candidate that dropped one would be caught.
    # The recurrent gain is ~0.5, not ~1: with gain 1 and this W_hh the recurrence is chaotic,
    # and float32 rounding differences between correct implementations (float64 included)
    # grow about 10x every 20 steps, to O(1) by T=200. At ~0.5 it is contractive and the
    # candidates agree to ~1e-6. Timing does not depend on the values.
    ln_hh, ln_c_w, ln_c_b = 0.5 + u(G, scale=0.1), 1 + u(H, scale=0.2), u(H, scale=0.2)
    h0, c0 = u(B, H, scale=0.5), u(B, H, scale=0.5)

    def project() -> Tensor:
        return torch.addmm(b_ih, x.reshape(T * B, I), w_ih.t()).view(T, B, G)

    args = RecurrenceInputs(
        project(), h0, c0, u(G, H), u(G), ln_weight_hh=ln_hh, ln_weight_c=ln_c_w, ln_bias_c=ln_c_b
    )
    return args, x, project


def _candidates(T: int, B: int, I: int, H: int) -> tuple[dict[str, Callable], set[str]]:
    """Zero-argument callables per row, and the names of those checked against ``cpp``."""
    args, x, project = _problem(T, B, I, H)
    xg, h0, c0, w_hh, b_hh = args.xg, args.h0, args.c0, args.weight_hh, args.bias_hh
    ln_hh, ln_c_w, ln_c_b = args.ln_weight_hh, args.ln_weight_c, args.ln_bias_c
    lstm = torch.nn.LSTM(I, H).eval()
    fns: dict[str, Callable] = {
        "cpp": lambda: recurrence.fused_forward(args, None, False, OPTS, save=False)[:3],
        "python": lambda: recurrence_forward(args, None, False, OPTS, save=False)[:3],
        "torchscript": lambda: _ts_forward(xg, h0, c0, w_hh, b_hh, ln_hh, ln_c_w, ln_c_b, EPS),
    }
    for name, kernel in NUMBA_KERNELS.items():
        fns[name] = _numba_runner(kernel, args)
    checked = set(fns) - {"cpp"}
    fns[YARDSTICK] = lambda: lstm(x)
    fns[INFO_ROW] = project
    return fns, checked


def _max_diff(a: tuple[Tensor, ...], b: tuple[Tensor, ...]) -> float:
    return max((u - v).abs().max().item() for u, v in zip(a, b, strict=True))


def _timed(fn: Callable) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_shape(T: int, B: int, I: int, H: int, repeats: int, warmup: int) -> dict:
    fns, checked = _candidates(T, B, I, H)
    ref = fns["cpp"]()
    agreement = {name: _max_diff(fns[name](), ref) for name in sorted(checked)}
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    rng = random.Random(0)
    # Warm-up rounds are timed the same way but dropped: TorchScript's profiling executor
    # specializes its graph only on the second call, and the allocator and threads settle.
    for rnd in range(warmup + repeats):
        rng.shuffle(order)
        for name in order:
            dt = _timed(fns[name])
            if rnd >= warmup:
                times[name].append(dt)
    med = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
    rows = [
        {
            "candidate": name,
            "ms_median": ms,
            "ms_min": min(times[name]) * 1e3,
            "us_per_step": ms * 1e3 / T,
            "ratio_to_torch_lstm": ms / med[YARDSTICK],
        }
        for name, ms in sorted(med.items(), key=lambda kv: kv[1])
    ]
    return {"T": T, "B": B, "I": I, "H": H, "agreement": agreement, "rows": rows}


# --- report ----------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            line = next((ln for ln in f if ln.startswith("model name")), "")
        return line.split(":", 1)[1].strip() if line else platform.processor()
    except OSError:
        return platform.processor()


def _print_shape(res: dict) -> None:
    T, B, I, H = res["T"], res["B"], res["I"], res["H"]
    print(f"\n== T={T} B={B} I={I} H={H} (layer-norm LSTM forward, no_grad) ==")
    print("agreement with cpp (max abs diff over out, h_n, c_n):")
    for name, d in res["agreement"].items():
        print(f"  {name:14s} {d:.2e}  {'ok' if d < TOL else 'MISMATCH'}")
    print(f"{'candidate':16s} {'ms median':>10s} {'us/step':>9s} {'x nn.LSTM':>10s}")
    for r in res["rows"]:
        print(
            f"{r['candidate']:16s} {r['ms_median']:10.3f} {r['us_per_step']:9.2f} "
            f"{r['ratio_to_torch_lstm']:10.2f}"
        )


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)  # readers never see a half-written file
    except BaseException:
        os.unlink(tmp)
        raise


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench-out/cpu_backends.json"))
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(THREADS)

    load_s, cached = _load_cpp()
    state = {True: "cached build", False: "built now", None: "build state unknown"}[cached]
    print(
        f"torch {torch.__version__}, numpy {np.__version__}, python {platform.python_version()}"
        f", {torch.get_num_threads()} threads, {_cpu_model()}"
    )
    print(f"cpp: extension loaded in {load_s:.2f} s ({state})")
    compile_info = {}
    if numba is None:
        print("numba: not installed (skipped)")
    else:
        compile_info = _compile_numba()
        parts = ", ".join(
            f"{n} {v['first_call_s']:.2f} s" + (" (from numba's cache)" if v["cache_hits"] else "")
            for n, v in compile_info.items()
        )
        print(f"numba {numba.__version__}: first call (compile) {parts}")
    print(
        f"median of {a.repeats} interleaved rounds after {a.warmup} warm-up; "
        f"{YARDSTICK} is vanilla and includes its input projection, the others start from xg"
        + ("; numba-loops runs on one thread" if NUMBA_KERNELS else "")
    )

    results = []
    with torch.no_grad():
        for s in SHAPES:
            res = bench_shape(**s, repeats=a.repeats, warmup=a.warmup)
            _print_shape(res)
            results.append(res)

    ok = all(d < TOL for r in results for d in r["agreement"].values())
    print(f"\nagreement check: {'all within' if ok else 'FAILED,'} {TOL:g}")
    _write_json(
        a.out,
        {
            "what": "layer-norm LSTM forward recurrence, CPU candidates; ms are medians",
            "notes": {
                YARDSTICK: "vanilla LSTM; includes the input projection x W_ih^T + b",
                INFO_ROW: "the input projection alone (excluded from the other candidates)",
                "numba-loops": "single-threaded",
            },
            "env": {
                "torch": torch.__version__,
                "numpy": np.__version__,
                "numba": numba.__version__ if numba is not None else None,
                "python": platform.python_version(),
                "threads": torch.get_num_threads(),
                "cpu": _cpu_model(),
                "repeats": a.repeats,
                "warmup": a.warmup,
            },
            "cpp_load_s": load_s,
            "cpp_cached": cached,
            "numba_compile": compile_info,
            "agreement_tol": TOL,
            "agreement_ok": ok,
            "shapes": results,
        },
    )
    print(f"wrote {a.out}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
