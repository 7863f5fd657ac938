"""Decoding speed of a translation checkpoint: sentences per second, greedy and beam, batched.

    .venv/bin/python bench/translation.py runs/mt-de-en --threads 1

Translates the first ``--sentences`` lines of the checkpoint's test source file (or ``--input``)
once per setting after a short warm-up, and prints a Markdown table with sentences and output
tokens per second (wall clock, and sentences per second of this process's CPU time, which is
steadier on a shared machine) and the BLEU of those sentences (so that speed is never bought
with quality unseen). Wall-clock time on whatever else the machine is doing: say so when reporting.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import replace

import torch

from lstmkit.data.text import read_lines
from lstmkit.infer.translate import load_translator


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--input", default="", help="source sentences (default: the test source)")
    p.add_argument("--reference", default="", help="references (default: the test target)")
    p.add_argument("--sentences", type=int, default=500)
    p.add_argument("--beams", default="1,5", help="comma-separated beam sizes")
    p.add_argument("--batches", default="1,64", help="comma-separated sentences per batch")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    task, model, dev = load_translator(args.checkpoint, "cpu")
    src_path, ref_path = task.paths("test")
    src = read_lines(args.input or src_path, task.cfg.encoding)[: args.sentences]
    ref = read_lines(args.reference or ref_path, task.cfg.encoding)[: args.sentences]
    from lstmkit.utils.metrics import bleu_chrf

    print(
        f"checkpoint {args.checkpoint}; {len(src)} sentences; {args.threads} thread(s); "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"torch {torch.__version__}\n"
    )
    print(
        "| decoding | beam | batch | sentences/s | sentences per CPU s | output tokens/s | "
        "seconds | BLEU |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for beam in (int(b) for b in args.beams.split(",")):
        for batch in (int(b) for b in args.batches.split(",")):
            if batch == 1 and len(src) > 100:
                sents = src[:100]  # one at a time is slow: time a smaller share
            else:
                sents = src
            t = type(task)(replace(task.cfg, decode_batch=batch), task.model_cfg, task.state())
            t.decode(model, sents[:4], dev, beam=beam)  # warm-up
            start, cpu_start = time.perf_counter(), time.process_time()
            hyps = t.decode(model, sents, dev, beam=beam)
            seconds = time.perf_counter() - start
            cpu = time.process_time() - cpu_start
            out_tokens = sum(len(h.tokens) + 1 for h in hyps)
            _, tgt_tok = t.tokenizers()
            bleu = bleu_chrf([tgt_tok.decode(h.tokens) for h in hyps], ref[: len(sents)])[0]
            name = "greedy" if beam == 1 else "beam"
            print(
                f"| {name} | {beam} | {batch} | {len(sents) / seconds:.1f} | "
                f"{len(sents) / cpu:.1f} | "
                f"{out_tokens / seconds:.0f} | {seconds:.1f} ({len(sents)} sent.) | {bleu:.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
