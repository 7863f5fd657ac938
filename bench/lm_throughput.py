"""Training throughput of ``lstmkit train lm`` against a plain hand-written PyTorch loop.

Both train the same character language model on tinyshakespeare (``nn.Embedding`` -> LSTM ->
``nn.Linear``; no dropout) with the same batch (B streams), the same truncated-BPTT length T,
AdamW, gradient clipping at 1.0 and the hidden state carried across steps. Every measurement
is a fresh process, as a user runs it, so one candidate's allocator state or memory layout
cannot help or hurt the next:

* ``lstmkit train``: the real command (``python -m lstmkit train lm ...``), its tokens per
  second read from its own ``train.jsonl`` (logged every step); it includes everything the
  trainer does around the step (batch slicing, learning-rate schedule, ``loss.item()``, the
  log line) and its setting of the C allocator (:mod:`lstmkit.utils.malloc`).
* ``torch loop``: twenty lines around ``torch.nn.LSTM`` (index the streams, forward, loss,
  backward, clip, step, detach the state), run by this script with ``--loop``.

Two more candidates tell where a difference comes from: ``lstmkit train`` with
``LSTMKIT_MALLOC=system`` (glibc's defaults, as the loop has them) and the ``torch loop`` with
the allocator set as ``lstmkit`` sets it. Each measurement drops ``--warmup`` steps and times
``--steps``; the candidates run in a rotating order, ``--repeats`` rounds per size, with one
torch thread. The table gives each candidate's median tokens per second (by the wall clock and
by the process's CPU time, user + system) and its ratio to the torch loop, plus the median and
range of the per-round ratios. Results go to ``--out`` as JSON.

    .venv/bin/python bench/lm_throughput.py [--sizes 384x2,256x1] [--repeats 5] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lstmkit.bench import machine_info
from lstmkit.train.trainer import read_jsonl
from lstmkit.utils.malloc import ENV, tune_malloc

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared/data/tinyshakespeare/input.txt"
LSTMKIT, LOOP = "lstmkit train", "torch loop"
CANDIDATES = (LSTMKIT, LOOP, f"{LSTMKIT}, {ENV}=system", f"{LOOP}, lstmkit's malloc")


def lstmkit_train(text: Path, size: tuple[int, int], a, env: dict) -> tuple[float, float]:
    """Tokens per wall-clock and per CPU second of ``lstmkit train lm`` over ``a.steps`` steps
    after ``a.warmup`` (``--max-cpu-time`` far away makes the log carry the CPU time)."""
    H, L = size
    B, T = a.batch_size, a.seq_len
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        args = ["train", "lm", "--train", str(text), "--valid-fraction", "0.002"]
        args += ["--hidden-size", str(H), "--num-layers", str(L), "--embed-size", str(a.embed_size)]
        args += ["--batch-size", str(B), "--seq-len", str(T), "--steps", str(a.warmup + a.steps)]
        args += ["--eval-every", str(10**6), "--log-every", "1", "--lr", "2e-3"]
        args += ["--max-cpu-time", str(10**9), "--seed", str(a.seed)]
        args += ["--threads", "1", "--no-progress", "--device", "cpu", "--out", str(out)]
        done = subprocess.run(
            [sys.executable, "-m", "lstmkit", *args], env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"lstmkit train failed ({done.returncode}):\n{done.stderr}")
        events = read_jsonl(out / "train.jsonl")
    steps = [e for e in events if e["event"] == "train"]
    timed = steps[a.warmup :]
    tokens = B * T * len(timed)
    seconds = sum(B * T / e["tok_per_s"] for e in timed)
    cpu = steps[-1]["cpu_time"] - steps[a.warmup - 1]["cpu_time"]
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


def run_loop(a) -> int:
    """``--loop``: one torch-loop measurement in this process; prints its JSON line."""
    malloc = tune_malloc() if a.loop_malloc else "system (not tuned)"
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    text = Path(a.text).read_text(encoding="utf-8")
    chars = sorted(set(text))
    V = len(chars) + 4  # the lm task's vocabulary: the characters and 4 special tokens
    stoi = {c: i + 4 for i, c in enumerate(chars)}
    ids = torch.tensor([stoi[c] for c in text])
    H, L = _size(a.loop)
    wall, cpu = torch_loop(ids, V, H, L, a.embed_size, a.batch_size, a.seq_len, a.warmup, a.steps)
    print(json.dumps({"tok_per_s": wall, "tok_per_cpu_s": cpu, "malloc": malloc, "vocab": V}))
    return 0


def loop_subprocess(text: Path, size: tuple[int, int], a, env: dict, malloc: bool):
    args = [sys.executable, __file__, "--loop", f"{size[0]}x{size[1]}", "--text", str(text)]
    args += ["--embed-size", str(a.embed_size), "--batch-size", str(a.batch_size)]
    args += ["--seq-len", str(a.seq_len), "--warmup", str(a.warmup), "--steps", str(a.steps)]
    args += ["--seed", str(a.seed)] + (["--loop-malloc"] if malloc else [])
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"torch loop failed ({done.returncode}):\n{done.stderr}")
    r = json.loads(done.stdout.strip().splitlines()[-1])
    return r["tok_per_s"], r["tok_per_cpu_s"]


def _size(text: str) -> tuple[int, int]:
    H, L = (int(v) for v in text.lower().split("x"))
    return H, L


def measure(name: str, text: Path, size: tuple[int, int], a) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if name == LSTMKIT:
        return lstmkit_train(text, size, a, env)
    if name == CANDIDATES[2]:
        return lstmkit_train(text, size, a, {**env, ENV: "system"})
    return loop_subprocess(text, size, a, env, malloc=name == CANDIDATES[3])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="384x2,256x1", help="HIDDENxLAYERS, comma-separated")
    p.add_argument("--embed-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--text", default=str(DATA), help="training text (tinyshakespeare)")
    p.add_argument("--out", default="bench-out/lm_throughput.json")
    p.add_argument("--loop", default="", help=argparse.SUPPRESS)  # one torch-loop process
    p.add_argument("--loop-malloc", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.loop:
        return run_loop(a)
    text = Path(a.text)
    if not text.exists():
        raise SystemExit(f"{text} not found: pass --text FILE")
    V = len(set(text.read_text(encoding="utf-8"))) + 4
    B, T, E = a.batch_size, a.seq_len, a.embed_size
    torch.set_num_threads(1)
    rows, info = [], {**machine_info(), "load_avg_start": os.getloadavg()}
    for size_text in a.sizes.split(","):
        size = _size(size_text)
        runs: dict[str, list[float]] = {c: [] for c in CANDIDATES}
        cpu_runs: dict[str, list[float]] = {c: [] for c in CANDIDATES}
        for r in range(a.repeats):
            k = r % len(CANDIDATES)
            for name in CANDIDATES[k:] + CANDIDATES[:k]:
                v, c = measure(name, text, size, a)
                runs[name].append(v)
                cpu_runs[name].append(c)
                print(
                    f"  {size_text} round {r + 1}: {name}: {v:,.0f} tok/s, {c:,.0f} tok per CPU s",
                    file=sys.stderr,
                    flush=True,
                )
        loop = runs[LOOP]
        rows.append(
            {
                "hidden_size": size[0],
                "num_layers": size[1],
                "embed_size": E,
                "batch_size": B,
                "seq_len": T,
                "vocab": V,
                "tok_per_s": runs,
                "tok_per_cpu_s": cpu_runs,
                "median": {k: statistics.median(v) for k, v in runs.items()},
                "median_cpu": {k: statistics.median(v) for k, v in cpu_runs.items()},
                "round_ratios": {
                    k: [x / y for x, y in zip(v, loop, strict=True)] for k, v in runs.items()
                },
            }
        )
    info["load_avg_end"] = os.getloadavg()
    print(format_table(rows, a))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "args": vars(a), "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


def format_table(rows: list[dict], a) -> str:
    B, T, E = a.batch_size, a.seq_len, a.embed_size
    lines = [
        f"\nLM training throughput, 1 thread, B={B}, T={T}, E={E}, median of {a.repeats} "
        f"fresh processes each; ratios to the torch loop ({platform.node() or 'this machine'})",
        f"{'size':>6} {'candidate':<36} {'tok/s':>7} {'ratio':>6} {'tok/CPU-s':>9} {'ratio':>6}"
        f"  per-round ratio: median (range)",
    ]
    for row in rows:
        m, c, rr = row["median"], row["median_cpu"], row["round_ratios"]
        size = f"{row['hidden_size']}x{row['num_layers']}"
        for name in CANDIDATES:
            lines.append(
                f"{size:>6} {name:<36} {m[name]:>7,.0f} {m[name] / m[LOOP]:>6.2f} "
                f"{c[name]:>9,.0f} {c[name] / c[LOOP]:>6.2f}  {statistics.median(rr[name]):.3f} "
                f"({min(rr[name]):.3f}-{max(rr[name]):.3f})"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
