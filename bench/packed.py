"""Packed (variable-length) bidirectional LSTMs on CPU: torch's LSTM against lstmkit's fused
recurrence, as the tasks use them.

The speech and translation tasks run a bidirectional multi-layer ``lstmkit.LSTM`` on a
``PackedSequence``. For the vanilla cell ``backend="auto"`` hands such input to
``torch.nn.LSTM``; ``backend="cpu"`` runs lstmkit's fused C++ recurrence. This script times both
(and ``torch.nn.LSTM`` itself, the yardstick) on the tasks' shapes: a training step (forward on
packed input, backward of the sum of the padded output, gradients cleared) in train mode, and
inference under ``torch.no_grad()``, on packed input with lengths drawn uniformly from
[T/2, T]; and, for comparison, the training step on the same batch padded to T (unpacked,
where ``auto`` also runs torch's LSTM). One process,
``--threads`` torch threads (default 1, as the task runs used), candidates interleaved
round-robin in a shuffled order per round, medians reported; only the ratios in one run mean
anything on a shared machine. Before timing, outputs and input gradients are checked to agree.

    .venv/bin/python bench/packed.py [--repeats N] [--threads N] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstmkit
from lstmkit.bench import interleaved_times, machine_info, write_json_atomic


@dataclass(frozen=True)
class Case:
    name: str
    T: int
    B: int
    I: int  # noqa: E741
    H: int
    layers: int


CASES = (
    Case("spoken-words classifier", 60, 32, 120, 128, 2),
    Case("asr-ctc encoder", 85, 16, 320, 128, 2),
    Case("translation encoder", 30, 64, 256, 256, 1),
)


def _inputs(case: Case, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(case.T // 2, case.T + 1, (case.B,), generator=g)
    lengths[0] = case.T
    x = torch.randn(case.T, case.B, case.I, generator=g, requires_grad=True)
    return x, lengths


def _step(module, x, lengths, train: bool, packed_input: bool):
    def forward():
        if not packed_input:
            return module(x)[0]
        return pad_packed_sequence(
            module(pack_padded_sequence(x, lengths, enforce_sorted=False))[0]
        )[0]

    def run():
        if train:
            module.train()
            out = forward()
            out.sum().backward()
            for p in module.parameters():
                p.grad = None
            x.grad = None
            return out
        module.eval()
        with torch.no_grad():
            return forward()

    return run


def bench_case(case: Case, train: bool, packed: bool, repeats: int) -> list[dict]:
    torch.manual_seed(0)
    ref = torch.nn.LSTM(case.I, case.H, case.layers, bidirectional=True)
    cands = {"torch.nn.LSTM": ref}
    for backend in ("auto", "cpu"):
        m = lstmkit.LSTM(case.I, case.H, case.layers, bidirectional=True, backend=backend)
        m.load_state_dict(ref.state_dict())
        cands[f"lstmkit backend={backend}"] = m
    x, lengths = _inputs(case)
    runs = {name: _step(m, x, lengths, train, packed) for name, m in cands.items()}
    expected = runs["torch.nn.LSTM"]()
    for name, run in runs.items():
        got = run()
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5, msg=lambda s, n=name: n + s)
        run()  # warm-up
    times = interleaved_times(runs, repeats)
    base = statistics.median(times["torch.nn.LSTM"])
    mode = ("train step" if train else "inference") + (", packed" if packed else ", padded")
    return [
        {
            "case": case.name,
            "shape": f"T<={case.T} B={case.B} I={case.I} H={case.H} L={case.layers} bi",
            "mode": mode,
            "name": name,
            "median_ms": statistics.median(ts),
            "ratio": statistics.median(ts) / base,
            "samples_ms": ts,
        }
        for name, ts in times.items()
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench-out/packed.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows: list[dict] = []
    print("| case | shape | mode | candidate | median ms | ratio to torch.nn.LSTM |")
    print("|---|---|---|---|---:|---:|")
    for case in CASES:
        for train, packed in ((True, True), (False, True), (True, False)):
            new = bench_case(case, train, packed, args.repeats)
            rows += new
            for r in new:
                print(
                    f"| {r['case']} | {r['shape']} | {r['mode']} | {r['name']} | "
                    f"{r['median_ms']:.2f} | {r['ratio']:.2f} |",
                    flush=True,
                )
    info = machine_info()
    info["threads"] = args.threads
    write_json_atomic(args.out, {"machine": info, "repeats": args.repeats, "rows": rows})
    print(f"machine: {json.dumps(info)}\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
