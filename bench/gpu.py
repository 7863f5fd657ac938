"""lstmkit's Triton recurrence against cuDNN and a plain PyTorch loop, on one CUDA GPU.

At the FlashRNN anchor shape (batch 16, T 1024, hidden 768, input 768), one layer, vanilla
LSTM, in float16 and bfloat16 (and float32 for the Triton kernel):

* ``lstmkit-triton``  ``x W_ih^T + b`` (one torch GEMM) then the Triton recurrence
* ``torch-cudnn``     :class:`torch.nn.LSTM` on the same weights (cuDNN)
* ``torch-loop``      the reference loop :func:`lstmkit.reference.lstm.recurrence_forward`

Modes ``fwd`` (under no_grad) and ``fwdbwd`` (forward, then backward of ``out.sum()``). Each
measurement is the median of 10 runs timed with CUDA events after 2 warm-up runs, printed as
one JSON line. Before timing, the Triton output is compared with cuDNN's (``max_abs_diff``).

    .venv/bin/python bench/gpu.py [--programs N] [--repeats 10] [--T 1024] ...
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys

import torch


def timed(fn, repeats: int) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--B", type=int, default=16)
    ap.add_argument("--T", type=int, default=1024)
    ap.add_argument("--H", type=int, default=768)
    ap.add_argument("--I", type=int, default=768)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--programs", type=int, default=None, help="Triton programs (default: auto)")
    ap.add_argument("--skip-loop", action="store_true", help="skip the slow PyTorch loop")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/gpu.py needs a CUDA GPU (torch.cuda.is_available() is False); nothing run")

    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(dev)
    B, T, H, I = a.B, a.T, a.H, a.I
    torch.manual_seed(0)
    base = torch.nn.LSTM(I, H).to(dev)

    def emit(impl, dtype, mode, ms, **extra):
        row = dict(impl=impl, dtype=str(dtype).removeprefix("torch."), mode=mode, B=B, T=T, H=H)
        row.update(I=I, median_ms=round(ms, 3), device=name, **extra)
        print(json.dumps(row), flush=True)

    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        run_dtype(a, copy.deepcopy(base).to(dtype), dtype, emit)


def run_dtype(a, lstm: torch.nn.LSTM, dtype: torch.dtype, emit) -> None:
    """Every measurement of one dtype (the closures below bind this call's tensors)."""
    from lstmkit.kernels.triton.lstm_fwd import triton_forward
    from lstmkit.kernels.triton.recurrence import TritonLSTMRecurrenceFunction
    from lstmkit.reference.lstm import CellOptions, RecurrenceInputs, recurrence_forward

    dev = torch.device("cuda")
    B, T, H, I = a.B, a.T, a.H, a.I
    opts = CellOptions()
    w_ih, w_hh, b_ih, b_hh = (p.detach() for p in lstm.parameters())
    x = torch.randn(T, B, I, device=dev, dtype=dtype)
    h0 = torch.zeros(B, H, device=dev, dtype=dtype)
    c0 = torch.zeros(B, H, device=dev, dtype=dtype)
    params = [w_hh.clone().requires_grad_(), b_hh.clone().requires_grad_()]

    def tensors(xg, grad):
        w, b = params if grad else (w_hh, b_hh)
        return RecurrenceInputs(xg, h0, c0, w, b)

    def triton_fwd():
        with torch.no_grad():
            xg = torch.addmm(b_ih, x.view(T * B, I), w_ih.T).view(T, B, 4 * H)
            return triton_forward(
                tensors(xg, False), None, False, opts, save=False, programs=a.programs
            )

    def triton_fwdbwd():
        xg = torch.addmm(b_ih, x.view(T * B, I), w_ih.T).view(T, B, 4 * H)
        xg.requires_grad_()
        out, _, _ = TritonLSTMRecurrenceFunction.run(tensors(xg, True), None, False, opts)
        out.float().sum().backward()

    ref, _ = lstm(x, (h0[None], c0[None]))
    got = triton_fwd()[0]
    diff = (got.float() - ref.float()).abs().max().item()
    emit(
        "lstmkit-triton",
        dtype,
        "fwd",
        timed(triton_fwd, a.repeats),
        max_abs_diff=diff,
        repeats=a.repeats,
    )
    emit("lstmkit-triton", dtype, "fwdbwd", timed(triton_fwdbwd, a.repeats), repeats=a.repeats)

    def cudnn_fwd():
        with torch.no_grad():
            lstm(x, (h0[None], c0[None]))

    def cudnn_fwdbwd():
        lstm(x, (h0[None], c0[None]))[0].float().sum().backward()

    for mode, fn in (("fwd", cudnn_fwd), ("fwdbwd", cudnn_fwdbwd)):
        try:
            emit("torch-cudnn", dtype, mode, timed(fn, a.repeats), repeats=a.repeats)
        except RuntimeError as e:  # e.g. a cuDNN without bf16 RNNs
            print(json.dumps(dict(impl="torch-cudnn", dtype=str(dtype), error=str(e))))

    if not a.skip_loop:

        def loop_fwd():
            with torch.no_grad():
                xg = torch.addmm(b_ih, x.view(T * B, I), w_ih.T).view(T, B, 4 * H)
                recurrence_forward(tensors(xg, False), None, False, opts, False)

        n = max(1, a.repeats // 5)  # seconds per run at T=1024
        emit("torch-loop", dtype, "fwd", timed(loop_fwd, n), repeats=n)


if __name__ == "__main__":
    main()
