"""Training throughput of ``lstmkit train lm`` against a plain hand-written PyTorch loop.

Both train the same character language model on tinyshakespeare (``nn.Embedding`` -> LSTM ->
``nn.Linear``; no dropout) with the same batch (B streams), the same truncated-BPTT length T,
AdamW, gradient clipping at 1.0 and the hidden state carried across steps:

* ``lstmkit train``: the real command (``lstmkit train lm ...``, run in this process through
  ``cli_main``), its tokens per second read from its own ``train.jsonl`` (logged every step);
  it includes what the trainer does around the step (batch slicing, learning-rate schedule,
  ``loss.item()``, logging).
* ``torch loop``: twenty lines around ``torch.nn.LSTM``: index the streams, forward, loss,
  backward, clip, step, detach the state.

Each measurement drops ``--warmup`` steps, then times ``--steps`` steps. The two are measured
in alternating order, ``--repeats`` times per size, with one torch thread, and the table gives
the median tokens per second of each and their ratio, by the wall clock and by the process's
CPU time (the steadier figure on a shared, busy machine: a process that waits for a core
is not charged). Results go to ``--out`` as JSON.

    .venv/bin/python bench/lm_throughput.py [--sizes 384x2,256x1] [--repeats 5] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lstmkit.bench import machine_info
from lstmkit.cli.main import cli_main
from lstmkit.train.trainer import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared/data/tinyshakespeare/input.txt"


def lstmkit_train(text: Path, H: int, L: int, E: int, B: int, T: int, warm: int, steps: int):
    """Tokens per wall-clock and per CPU second of ``lstmkit train lm`` over ``steps`` steps
    after ``warm`` (``--max-cpu-time`` far away makes the log carry the CPU time)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        args = ["train", "lm", "--train", str(text), "--valid-fraction", "0.002"]
        args += ["--hidden-size", str(H), "--num-layers", str(L), "--embed-size", str(E)]
        args += ["--batch-size", str(B), "--seq-len", str(T), "--steps", str(warm + steps)]
        args += ["--eval-every", str(10**6), "--log-every", "1", "--lr", "2e-3"]
        args += ["--max-cpu-time", str(10**9)]
        args += ["--threads", "1", "--no-progress", "--device", "cpu", "--out", str(out)]
        with open(os.devnull, "w") as null, redirect_stdout(null), redirect_stderr(null):
            status = cli_main(args)
        if status != 0:
            raise SystemExit(f"lstmkit train failed with status {status}")
        events = [e for e in read_jsonl(out / "train.jsonl") if e["event"] == "train"]
    timed = events[warm:]
    tokens = B * T * len(timed)
    seconds = sum(B * T / e["tok_per_s"] for e in timed)
    cpu = events[-1]["cpu_time"] - events[warm - 1]["cpu_time"]
    return tokens / seconds, tokens / cpu


class PlainLM(nn.Module):
    def __init__(self, V: int, E: int, H: int, L: int):
        super().__init__()
        self.embedding = nn.Embedding(V, E)
        self.lstm = nn.LSTM(E, H, L, batch_first=True)
        self.decoder = nn.Linear(H, V)

    def forward(self, x, state):
        y, state = self.lstm(self.embedding(x), state)
        return self.decoder(y), state


def torch_loop(ids: torch.Tensor, V: int, H: int, L: int, E: int, B: int, T: int, warm, steps):
    """Tokens per wall-clock and per CPU second of a hand-written truncated-BPTT loop around
    ``torch.nn.LSTM``."""
    model = PlainLM(V, E, H, L)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    length = (len(ids) - 1) // B
    starts = torch.arange(B)[:, None] * length
    state, t0, c0 = None, 0.0, 0.0
    for step in range(warm + steps):
        if step == warm:
            t0, c0 = time.perf_counter(), time.process_time()
        pos = starts + (step * T) % (length - T) + torch.arange(T)[None]
        x, y = ids[pos], ids[pos + 1]
        logits, state = model(x, state)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state = tuple(s.detach() for s in state)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return B * T * steps / wall, B * T * steps / cpu


def machine() -> dict:
    return {
        **machine_info(),
        "python": platform.python_version(),
        "load_avg_start": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="384x2,256x1", help="HIDDENxLAYERS, comma-separated")
    p.add_argument("--embed-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--text", default=str(DATA), help="training text (tinyshakespeare)")
    p.add_argument("--out", default="bench-out/lm_throughput.json")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    text = Path(a.text)
    if not text.exists():
        raise SystemExit(f"{text} not found: pass --text FILE")
    chars = sorted(set(text.read_text(encoding="utf-8")))
    V = len(chars) + 4  # the lm task's vocabulary: the characters and 4 special tokens
    stoi = {c: i + 4 for i, c in enumerate(chars)}
    ids = torch.tensor([stoi[c] for c in text.read_text(encoding="utf-8")])
    B, T, E = a.batch_size, a.seq_len, a.embed_size
    rows, info = [], machine()
    for size in a.sizes.split(","):
        H, L = (int(v) for v in size.lower().split("x"))
        runs: dict[str, list[float]] = {"lstmkit train": [], "torch loop": []}
        cpu_runs: dict[str, list[float]] = {"lstmkit train": [], "torch loop": []}
        for r in range(a.repeats):
            order = list(runs) if r % 2 == 0 else list(runs)[::-1]
            for name in order:
                torch.manual_seed(r)
                if name == "lstmkit train":
                    v, c = lstmkit_train(text, H, L, E, B, T, a.warmup, a.steps)
                else:
                    v, c = torch_loop(ids, V, H, L, E, B, T, a.warmup, a.steps)
                runs[name].append(v)
                cpu_runs[name].append(c)
                print(
                    f"  {size} {name}: {v:,.0f} tok/s, {c:,.0f} tok per CPU s",
                    file=sys.stderr,
                    flush=True,
                )
        med = {k: statistics.median(v) for k, v in runs.items()}
        cpu_med = {k: statistics.median(v) for k, v in cpu_runs.items()}
        rows.append(
            {
                "hidden_size": H,
                "num_layers": L,
                "embed_size": E,
                "batch_size": B,
                "seq_len": T,
                "vocab": V,
                "tok_per_s": runs,
                "tok_per_cpu_s": cpu_runs,
                "median": med,
                "median_cpu": cpu_med,
                "ratio": med["lstmkit train"] / med["torch loop"],
                "ratio_cpu": cpu_med["lstmkit train"] / cpu_med["torch loop"],
            }
        )
    info["load_avg_end"] = os.getloadavg()
    print(f"\nLM training throughput, 1 thread, B={B}, T={T}, E={E}, V={V} (median of {a.repeats})")
    print("tokens per second (wall clock) | tokens per CPU second")
    head = f"{'lstmkit train':>14} {'torch loop':>11} {'ratio':>6}"
    print(f"{'size':>8} {head} | {head}")
    for row in rows:
        m, c = row["median"], row["median_cpu"]
        wall = f"{m['lstmkit train']:>14,.0f} {m['torch loop']:>11,.0f} {row['ratio']:>6.2f}"
        cpu = f"{c['lstmkit train']:>14,.0f} {c['torch loop']:>11,.0f} {row['ratio_cpu']:>6.2f}"
        size = f"{row['hidden_size']}x{row['num_layers']}"
        print(f"{size:>8} {wall} | {cpu}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "args": vars(a), "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
