"""The per-call overhead of streaming: one ``lstmkit.LSTM`` call per time step against one call
for the whole sequence (issue 19, "Streaming calls").

A streaming caller (a live transcriber, a language model sampling a token at a time) calls the
module once per step with ``T = 1, B = 1`` and passes the state back. The target: a step through
per-step calls costs at most 1.5x a step inside one call of ``T = --steps``, for the vanilla LSTM
and the layer-norm LSTM, eval mode, one torch thread, under ``torch.no_grad()`` and with
autograd on, at each ``--shapes`` (I x H).

Without autograd a per-step call runs the C++ ``StepPlan`` (one call for the whole stack,
``lstmkit.kernels.cpu.recurrence.step_plan``); with autograd on it runs the general path (the
autograd Function, which a graph needs). Columns: ``kernel`` is the floor of a per-step call,
the C++ alone (the StepPlan called directly without autograd; the autograd Function around the
C++ kernel on prepared inputs with it), so ``per-call - kernel`` is the Python of
``LSTM.forward``; ``torch`` is torch.nn.LSTM called the same way, per step (what a torch user
pays). Note that a per-step call must read W_ih as well as W_hh at every step, while a long call
reads W_ih once for all steps (one GEMM): where the weights do not fit in L2 that alone puts the
ratio near 2 at I = H. Candidates are interleaved round-robin (``lstmkit.bench.
interleaved_times``), medians of ``--repeats`` rounds reported.

    .venv/bin/python bench/stream_calls.py [--shapes 128x128,40x256,512x512] [--repeats N]
        [--steps N] [--out PATH]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

import lstmkit
from lstmkit.bench import interleaved_times, machine_info, write_json_atomic
from lstmkit.kernels.cpu.recurrence import FusedLSTMRecurrenceFunction
from lstmkit.reference.recurrence import RecurrenceInputs

TARGET = 1.5


def _kernel_step(model: lstmkit.LSTM, layer_norm: bool, grad: bool):
    """One step of the bare C++ on prepared inputs: the floor of a per-step call."""
    I, H = model.input_size, model.hidden_size
    x = torch.randn(1, 1, I)
    h = torch.zeros(1, 1, H)
    c = torch.zeros(1, 1, H)
    if not grad:
        step = model._make_step()
        return lambda: step(x, (h, c))
    xg = model._input_projection(x, "_l0").contiguous()
    inputs = RecurrenceInputs(
        xg,
        h[0],
        c[0],
        model.weight_hh_l0,
        model.bias_hh_l0,
        ln_weight_hh=model.ln_weight_hh_l0 if layer_norm else None,
        ln_weight_c=model.ln_weight_c_l0 if layer_norm else None,
        ln_bias_c=model.ln_bias_c_l0 if layer_norm else None,
    )
    opts = model.variant_options.cell_options
    return lambda: FusedLSTMRecurrenceFunction.run(inputs, None, False, opts)


def measure(I: int, H: int, layer_norm: bool, grad: bool, steps: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = lstmkit.LSTM(I, H, layer_norm=layer_norm).eval()
    ref = torch.nn.LSTM(I, H).eval()
    x = torch.randn(steps, 1, I)
    ctx = torch.enable_grad if grad else torch.no_grad

    def long_call():
        with ctx():
            model(x)

    def per_step():
        with ctx():
            state = None
            for t in range(steps):
                _, state = model(x[t : t + 1], state)

    def torch_per_step():
        with ctx():
            state = None
            for t in range(steps):
                _, state = ref(x[t : t + 1], state)

    kernel = _kernel_step(model, layer_norm, grad)

    def kernel_steps():
        with ctx():
            for _ in range(steps):
                kernel()

    with ctx():  # the two ways agree before they are timed (over 20 steps: the layer-norm
        # LSTM with random weights amplifies float32 rounding, ~3e-2 apart after 300 steps,
        # while float64 runs agree to 1e-11)
        n = min(steps, 20)
        out_long, _ = model(x[:n])
        state, outs = None, []
        for t in range(n):
            o, state = model(x[t : t + 1], state)
            outs.append(o)
        torch.testing.assert_close(torch.cat(outs), out_long, atol=1e-5, rtol=1e-5)
    runs = {
        "long": long_call,
        "per_step": per_step,
        "kernel": kernel_steps,
        "torch": torch_per_step,
    }
    for run in runs.values():
        run()
    times = interleaved_times(runs, repeats)
    us = {k: statistics.median(v) * 1e3 / steps for k, v in times.items()}
    spread = {k: (max(v) - min(v)) / statistics.median(v) for k, v in times.items()}
    return {
        "input_size": I,
        "hidden_size": H,
        "variant": "layer_norm" if layer_norm else "vanilla",
        "autograd": grad,
        "path": "general (autograd Function)" if grad else "StepPlan",
        "long_us_per_step": us["long"],
        "per_call_us": us["per_step"],
        "kernel_us_per_call": us["kernel"],
        "python_us_per_call": us["per_step"] - us["kernel"],
        "torch_per_call_us": us["torch"],
        "ratio": us["per_step"] / us["long"],
        "target_met": us["per_step"] / us["long"] <= TARGET,
        "spread": max(spread.values()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--shapes", default="128x128,40x256,512x512", help="I x H, comma-separated")
    ap.add_argument("--out", type=Path, default=Path("docs/bench-stream-calls.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    rows = [
        measure(I, H, ln, grad, args.steps, args.repeats)
        for I, H in shapes
        for ln in (False, True)
        for grad in (False, True)
    ]
    info = machine_info()
    print(
        f"machine: {info['cpu']}, {' '.join(info['isa'])}, torch threads {info['torch_threads']}, "
        f"torch {info['torch']}"
    )
    print(
        f"B = 1, eval; one long call of T = {args.steps} against {args.steps} calls "
        f"of T = 1; medians of {args.repeats} interleaved rounds; load average "
        f"{open('/proc/loadavg').read().split()[0]}"
    )
    head = (
        f"{'I x H':<9} {'variant':<11} {'autograd':<8} {'long us/step':>12} {'per-call us':>11} "
        f"{'kernel us':>9} {'python us':>9} {'torch us':>8} {'ratio':>6} {'<= 1.5':>6} "
        f"{'spread':>6}"
    )
    print(head)
    for r in rows:
        print(
            f"{str(r['input_size']) + 'x' + str(r['hidden_size']):<9} "
            f"{r['variant']:<11} {'on' if r['autograd'] else 'off':<8} "
            f"{r['long_us_per_step']:>12.2f} {r['per_call_us']:>11.2f} "
            f"{r['kernel_us_per_call']:>9.2f} {r['python_us_per_call']:>9.2f} "
            f"{r['torch_per_call_us']:>8.2f} {r['ratio']:>6.2f} "
            f"{'yes' if r['target_met'] else 'NO':>6} {r['spread']:>6.0%}"
        )
    write_json_atomic(args.out, {"machine": info, "steps": args.steps, "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
