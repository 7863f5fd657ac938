"""Cost of one AdamW step on CPU: torch's default per-tensor loop vs ``foreach`` vs ``fused``.

``lstmkit train`` uses the fused kernel (:func:`lstmkit.train.trainer.make_optimizer`); this
measures what that saves on two of our real models, built by their tasks' model classes with
random gradients (the cost of the update does not depend on the values):

* ``lm 384x2``: the tinyshakespeare character model of docs/RESULTS.md (1.9 M parameters);
* ``sentiment``: the MR BiLSTM of docs/RESULTS.md (300-d embeddings over the 16,677 words of a
  fold, 150 units per direction, attention pooling; 5.5 M parameters).

The three optimisers are stepped round-robin, ``--rounds`` times, on one torch thread; the
table gives the median milliseconds per step and the ratio to the default loop.

    .venv/bin/python bench/adamw.py [--rounds 21] [--out bench-out/adamw.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from lstmkit.bench import machine_info
from lstmkit.models.classifier import TextClassifier
from lstmkit.models.lm import LanguageModel, LMModelConfig
from lstmkit.tasks.sentiment import SentimentTask
from lstmkit.utils.config import from_flat

KINDS = {"loop (torch default on CPU)": {"foreach": False}, "foreach": {"foreach": True}}
KINDS["fused (lstmkit)"] = {"fused": True}


def models() -> dict[str, torch.nn.Module]:
    lm_cfg = from_flat(LMModelConfig, hidden_size=384, num_layers=2, embed_size=64)
    lm = LanguageModel(lm_cfg, 69)
    cfg = from_flat(
        SentimentTask.ModelConfig,
        hidden_size=150,
        bidirectional=True,
        embedding_dim=300,
        pooling="attention",
    )
    return {"lm 384x2": lm, "sentiment": TextClassifier(cfg, 16677, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--out", default="bench-out/adamw.json")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    for name, model in models().items():
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:
            p.grad = torch.randn_like(p)
        opts = {k: torch.optim.AdamW(params, lr=1e-3, **kw) for k, kw in KINDS.items()}
        times: dict[str, list[float]] = {k: [] for k in opts}
        for r in range(a.rounds + 2):
            for k, opt in opts.items():
                t0 = time.perf_counter()
                opt.step()
                if r >= 2:  # the first steps create the state
                    times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        base = med[next(iter(KINDS))]
        n = sum(p.numel() for p in params)
        for k, ms in med.items():
            rows.append({"model": name, "parameters": n, "optimizer": k, "median_ms": ms})
            print(f"{name:<10} {n:>10,} {k:<28} {ms:>8.2f} ms {ms / base:>6.2f}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine_info(), "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
