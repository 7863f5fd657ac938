"""torch.compile on lstmkit.LSTM: how long the first call takes, and what the compiled model
gains per call (issue 18, "Custom ops").

For a 1-layer and a 6-layer ``lstmkit.LSTM`` (``I = H = 128``), vanilla and layer-norm, and
the backends ``aot_eager`` (Dynamo + AOT autograd, no code generation) and ``inductor`` (the
default), this script times

- ``compile s``: the first call of ``torch.compile(model, fullgraph=True)`` (Dynamo tracing,
  the fake kernels, AOT autograd, Inductor's code generation and C++ compile), for inference
  (``torch.no_grad()``) and for a training step (forward and backward), each after
  ``torch._dynamo.reset()``, with Inductor's FX-graph and AOT-autograd caches off, in a fresh
  ``TORCHINDUCTOR_CACHE_DIR`` (a cold start; a kernel already compiled for an earlier row of
  this run is reused, as it would be in one process);
- ``eager ms`` / ``compiled ms``: the median of ``--repeats`` interleaved calls at
  ``T = 100, B = 8``, inference and training step; ``spread`` is (max - min) / median of the
  noisier of the two, for judging a shared machine's numbers.

Under tracing the recurrence is one custom op per layer and direction (lstmkit.kernels.ops),
the vanilla one included except in compiled inference (torch's own LSTM there), so what Inductor
can fuse is around it: the input projection's layer norm, the stacking of states. Expect compile
times of seconds, not minutes, and step times close to eager.

    .venv/bin/python bench/compile.py [--repeats N] [--threads N] [--out PATH]
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="lstmkit-inductor-"))
os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "0")
os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "0")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

import lstmkit  # noqa: E402
from lstmkit.bench import interleaved_times, machine_info, write_json_atomic  # noqa: E402

I = H = 128  # noqa: E741
T, B = 100, 8


def _model(layers: int, layer_norm: bool) -> lstmkit.LSTM:
    torch.manual_seed(0)
    return lstmkit.LSTM(I, H, num_layers=layers, layer_norm=layer_norm)


def _infer(model, x):
    with torch.no_grad():
        return model(x)[0]


def _train(model, x):
    out, (h, c) = model(x)
    (out.sum() + h.sum()).backward()
    return out


def _first_call(model, backend: str, step, x) -> float:
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    t0 = time.perf_counter()
    step(compiled, x)
    return time.perf_counter() - t0, compiled


def measure(layers: int, layer_norm: bool, repeats: int) -> list[dict]:
    rows = []
    x = torch.randn(T, B, I)
    for backend in ("aot_eager", "inductor"):
        for mode, step in (("infer", _infer), ("train", _train)):
            model = _model(layers, layer_norm)
            seconds, compiled = _first_call(model, backend, step, x)
            with torch.no_grad():  # the compiled model computes what eager does (over 10
                # steps: the layer-norm LSTM amplifies float32 rounding differences over time)
                y = x[:10]
                torch.testing.assert_close(compiled(y)[0], model(y)[0], atol=1e-4, rtol=1e-4)
            runs = {
                "eager": lambda s=step, m=model: s(m, x),
                "compiled": lambda s=step, m=compiled: s(m, x),
            }
            for run in runs.values():
                run()
            times = interleaved_times(runs, repeats)
            med = {k: statistics.median(v) for k, v in times.items()}
            rows.append(
                {
                    "layers": layers,
                    "variant": "layer_norm" if layer_norm else "vanilla",
                    "backend": backend,
                    "mode": mode,
                    "compile_s": seconds,
                    "eager_ms": med["eager"],
                    "compiled_ms": med["compiled"],
                    "speedup": med["eager"] / med["compiled"],
                    "spread": max((max(v) - min(v)) / statistics.median(v) for v in times.values()),
                }
            )
            print(_line(rows[-1]), flush=True)
    return rows


def _line(r: dict) -> str:
    return (
        f"{r['layers']:>6} {r['variant']:<11} {r['backend']:<10} {r['mode']:<6} "
        f"{r['compile_s']:>9.2f} {r['eager_ms']:>9.2f} {r['compiled_ms']:>11.2f} "
        f"{r['speedup']:>7.2f} {r['spread']:>6.0%}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--out", type=Path, default=Path("docs/bench-compile.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    info = machine_info()
    print(
        f"machine: {info['cpu']}, {' '.join(info['isa'])}, {info['cores']} cores, torch threads "
        f"{info['torch_threads']}, torch {info['torch']}"
    )
    print(f"I = H = {I}, step times at T = {T}, B = {B}, medians of {args.repeats} rounds")
    print(
        f"{'layers':>6} {'variant':<11} {'backend':<10} {'mode':<6} {'compile s':>9} "
        f"{'eager ms':>9} {'compiled ms':>11} {'speedup':>7} {'spread':>6}"
    )
    for backend in ("aot_eager", "inductor"):  # imports and compiler probes, not timed
        torch.compile(lambda t: torch.tanh(t) + 1, backend=backend)(torch.randn(4))
    rows = []
    for layers in (1, 6):
        for layer_norm in (False, True):
            rows += measure(layers, layer_norm, args.repeats)
    write_json_atomic(args.out, {"machine": info, "T": T, "B": B, "H": H, "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
