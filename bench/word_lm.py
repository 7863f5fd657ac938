"""Word-level language model on CPU: training throughput of ``lstmkit train lm`` against a
hand-written ``torch.nn.LSTM`` loop of the same size, and whether the adaptive softmax pays off.

The corpus is the pre-tokenized Multi30k English of ``python -m lstmkit.experiments.word_lm
prepare`` (``--data``), read with ``--tokenizer whitespace``.

``throughput``: tokens per CPU-second (user + system time of the process, so the figure holds on
a shared machine) and per wall-clock second, each measurement a fresh process with one torch
thread, ``--warmup`` steps dropped and ``--steps`` timed, candidates in a rotating order for
``--repeats`` rounds:

* ``torch loop``: ``nn.Embedding`` -> 2-layer ``nn.LSTM`` -> ``nn.Linear`` tied to the
  embedding, truncated BPTT with the state carried, AdamW, clipping (run by this script with
  ``--loop``);
* ``lstmkit train``: the real command on the same model (``--tie-weights``, no dropout);
* ``lstmkit train, AWD regularisers``: the recommended configuration of
  :mod:`lstmkit.experiments.word_lm` (embedding, variational and weight dropout), which the
  loop does not have: what the regularisers cost.

``adaptive``: the recommended model with its full softmax (tied), the same untied, and the same
with ``--adaptive-softmax CUTOFFS`` (which cannot be tied), trained side by side (concurrent
processes, one thread each, so that all three see the same machine) for the same
``--cpu-seconds`` of CPU time at a constant learning rate; the table gives training tokens per
CPU-second, the steps reached and the validation perplexity per word at the end.

    .venv/bin/python bench/word_lm.py throughput --data DIR [--repeats 3] [--out PATH]
    .venv/bin/python bench/word_lm.py adaptive --data DIR [--cpu-seconds 120] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lstmkit.experiments.word_lm import RECOMMENDED
from lstmkit.train.trainer import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
LOOP, LSTMKIT, AWD = "torch loop", "lstmkit train", "lstmkit train, AWD regularisers"
MODEL = ["--tokenizer", "whitespace", "--hidden-size", "256", "--num-layers", "2"]
MODEL += ["--tie-weights", "--clip-norm", "0.25", "--lr", "3e-3", "--weight-decay", "1e-6"]


def _option_value(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def _without(args: list[str], *names: str) -> list[str]:
    """``args`` less the options ``names`` (each with its value; ``--tie-weights`` alone)."""
    out, skip = [], False
    for k, a in enumerate(args):
        if skip:
            skip = False
            continue
        if a in names:
            skip = a != "--tie-weights" and k + 1 < len(args) and not args[k + 1].startswith("--")
            continue
        out.append(a)
    return out


def lstmkit_args(data: Path, model: list[str], out: Path, a, steps: int) -> list[str]:
    args = ["train", "lm", "--train", str(data / "train.txt"), "--valid", str(data / "valid.txt")]
    args += model + ["--batch-size", str(a.batch_size), "--seq-len", str(a.seq_len)]
    args += ["--steps", str(steps), "--seed", str(a.seed), "--threads", "1"]
    return args + ["--no-progress", "--device", "cpu", "--out", str(out)]


def lstmkit_train(data: Path, model: list[str], a) -> tuple[float, float]:
    """Tokens per wall-clock and per CPU second of ``lstmkit train lm`` (``--max-cpu-time``
    far away makes the log carry the CPU time)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        args = lstmkit_args(data, model, out, a, a.warmup + a.steps)
        args += ["--eval-every", str(10**6), "--log-every", "1", "--max-cpu-time", str(10**9)]
        done = subprocess.run(
            [sys.executable, "-m", "lstmkit", *args], capture_output=True, text=True, cwd=ROOT
        )
        if done.returncode != 0:
            raise SystemExit(f"lstmkit train failed ({done.returncode}):\n{done.stderr}")
        steps = [e for e in read_jsonl(out / "train.jsonl") if e["event"] == "train"]
    B, T = a.batch_size, a.seq_len
    timed = steps[a.warmup :]
    tokens = B * T * len(timed)
    wall = sum(B * T / e["tok_per_s"] for e in timed)
    cpu = steps[-1]["cpu_time"] - steps[a.warmup - 1]["cpu_time"]
    return tokens / wall, tokens / cpu


class TiedLM(nn.Module):
    def __init__(self, V: int, H: int, L: int):
        super().__init__()
        self.embedding = nn.Embedding(V, H)
        self.lstm = nn.LSTM(H, H, L, batch_first=True)
        self.decoder = nn.Linear(H, V)
        self.decoder.weight = self.embedding.weight

    def forward(self, x, state):
        y, state = self.lstm(self.embedding(x), state)
        return self.decoder(y), state


def run_loop(a) -> int:
    """``--loop``: one torch-loop measurement in this process; prints its JSON line."""
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    words = []
    for line in (Path(a.data) / "train.txt").read_text(encoding="utf-8").splitlines():
        words += line.split() + ["<eos>"]
    itos = sorted(set(words))
    stoi = {w: i for i, w in enumerate(itos)}
    ids = torch.tensor([stoi[w] for w in words])
    B, T = a.batch_size, a.seq_len
    model = TiedLM(len(itos) + 2, 256, 2)  # + lstmkit's <pad> and <s>: the same matrix sizes
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-6)
    length = (len(ids) - 1) // B
    starts = torch.arange(B)[:, None] * length
    state, t0, c0 = None, 0.0, 0.0
    for step in range(a.warmup + a.steps):
        if step == a.warmup:
            t0, c0 = time.perf_counter(), time.process_time()
        pos = starts + (step * T) % (length - T) + torch.arange(T)[None]
        x, y = ids[pos], ids[pos + 1]
        logits, state = model(x, state)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()
        state = tuple(s.detach() for s in state)
        loss.item()  # as the trainer does, once a step
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = B * T * a.steps
    print(json.dumps({"tok_per_s": n / wall, "tok_per_cpu_s": n / cpu, "vocab": len(itos) + 2}))
    return 0


def torch_loop(a) -> tuple[float, float]:
    args = [sys.executable, __file__, "--loop", "--data", str(a.data)]
    args += ["--batch-size", str(a.batch_size), "--seq-len", str(a.seq_len)]
    args += ["--warmup", str(a.warmup), "--steps", str(a.steps), "--seed", str(a.seed)]
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"torch loop failed ({done.returncode}):\n{done.stderr}")
    r = json.loads(done.stdout.strip().splitlines()[-1])
    return r["tok_per_s"], r["tok_per_cpu_s"]


def throughput(a) -> dict:
    awd = _without(list(RECOMMENDED), "--seq-len", "--batch-size")
    measure = {
        LOOP: lambda: torch_loop(a),
        LSTMKIT: lambda: lstmkit_train(a.data, MODEL, a),
        AWD: lambda: lstmkit_train(a.data, awd, a),
    }
    names = list(measure)
    runs: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    for r in range(a.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            runs[name].append(measure[name]())
            print(f"round {r + 1}: {name}: {runs[name][-1][1]:,.0f} tokens/CPU-s", flush=True)
    loop_cpu = statistics.median(c for _, c in runs[LOOP])
    rows = []
    for name in names:
        cpu = statistics.median(c for _, c in runs[name])
        wall = statistics.median(w for w, _ in runs[name])
        ratios = [c / lc for (_, c), (_, lc) in zip(runs[name], runs[LOOP], strict=True)]
        rows.append(
            {
                "candidate": name,
                "tok_per_cpu_s": round(cpu, 1),
                "tok_per_s": round(wall, 1),
                "vs_loop_cpu": round(cpu / loop_cpu, 3),
                "round_ratios": [round(x, 3) for x in ratios],
            }
        )
    return {"kind": "throughput", "model": "256x2 tied, whitespace words", "rows": rows}


def adaptive(a) -> dict:
    base = _without(list(RECOMMENDED), "--seq-len", "--batch-size", "--eval-every")
    untied = _without(base, "--tie-weights")
    candidates = {
        "full softmax, tied": base,
        "full softmax, untied": untied,
        f"adaptive {a.cutoffs}, untied": untied + ["--adaptive-softmax", a.cutoffs],
    }
    with tempfile.TemporaryDirectory() as tmp:
        procs = {}
        for k, (name, model) in enumerate(candidates.items()):
            out = Path(tmp) / f"run{k}"
            args = lstmkit_args(a.data, model, out, a, 10**6)
            args += ["--max-cpu-time", str(a.cpu_seconds), "--schedule", "constant"]
            args += ["--eval-every", str(10**6), "--log-every", "20"]
            cmd = [sys.executable, "-m", "lstmkit", *args]
            procs[name] = (out, subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL))
        rows = []
        for name, (out, proc) in procs.items():
            if proc.wait() != 0:
                raise SystemExit(f"{name}: lstmkit train failed ({proc.returncode})")
            events = read_jsonl(out / "train.jsonl")
            steps = [e for e in events if e["event"] == "train"]
            valid = [e for e in events if e["event"] == "valid"][-1]
            tokens = steps[-1]["step"] * a.batch_size * a.seq_len
            rows.append(
                {
                    "candidate": name,
                    "steps": steps[-1]["step"],
                    "cpu_s": steps[-1]["cpu_time"],
                    "tok_per_cpu_s": round(tokens / steps[-1]["cpu_time"], 1),
                    "valid_word_ppl": round(valid["word_ppl"], 2),
                    "valid_loss": round(valid["loss"], 4),
                }
            )
    return {"kind": "adaptive", "cpu_seconds": a.cpu_seconds, "rows": rows}


def format_table(result: dict) -> str:
    rows = result["rows"]
    keys = [k for k in rows[0] if k != "round_ratios"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", nargs="?", choices=("throughput", "adaptive"), default="throughput")
    p.add_argument("--data", type=Path, default=ROOT / "runs/word-lm-data")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=35)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cpu-seconds", type=float, default=120)
    p.add_argument("--cutoffs", default="1000,3000")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--loop", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.loop:
        return run_loop(a)
    if not (a.data / "train.txt").exists():
        raise SystemExit(
            f"{a.data}/train.txt not found: python -m lstmkit.experiments.word_lm prepare"
        )
    result = throughput(a) if a.what == "throughput" else adaptive(a)
    result["command"] = " ".join(["bench/word_lm.py", *(argv or sys.argv[1:])])
    result["torch"] = torch.__version__
    print(format_table(result))
    out = a.out or ROOT / f"bench-out/word-lm-{a.what}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
