"""The accuracy cost of quantization: each trained run's test metrics in float32, int8 and bf16.

    python bench/quant_accuracy.py RUN [RUN ...] [--json docs/quant-accuracy.json]

Each RUN is quantized exactly as ``lstmkit quantize RUN --out ... --mode int8|bf16`` does
(into a temporary folder), and the float run and the two quantized ones are evaluated on the
run's own test split (``lstmkit evaluate --split test``), on the CPU. Prints one table (the
machine line above it: the CPU and the instruction set the quantized kernel ran) and writes the
JSON. docs/RESULTS.md's "Quantization" section comes from it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from lstmkit.bench import machine_info
from lstmkit.infer.evaluate import evaluate_split
from lstmkit.infer.load import load_trained
from lstmkit.infer.quantize import QuantizeConfig, run_quantize
from lstmkit.kernels.cpu import quant

# Per task, the metrics reported (the first is the headline one) and how a change reads.
HEADLINE = {
    "sentiment": ("accuracy",),
    "lm": ("loss", "ppl", "bpc"),
    "spoken-words": ("accuracy",),
    "asr-ctc": ("wer", "cer"),
    "translation": ("bleu", "chrf"),
}


# The quantized forms compared: (column, --mode, --activations). "int8" is what `lstmkit
# quantize` writes by default (int8 activations, VNNI), "int8-w" its weight-only form.
FORMS = (("int8", "int8", "int8"), ("int8-w", "int8", "float"), ("bf16", "bf16", "float"))
COLUMNS = ("float32", *(f for f, _, _ in FORMS))


def evaluate_run(path: str) -> tuple[str, dict[str, dict[str, float]]]:
    cpu = torch.device("cpu")
    task, model, _ = load_trained(path, cpu)
    results = {"float32": evaluate_split(task, model, "test", cpu, path)}
    with tempfile.TemporaryDirectory() as tmp:
        for form, mode, activations in FORMS:
            out = Path(tmp) / form
            cfg = QuantizeConfig(checkpoint=path, out=str(out), mode=mode, activations=activations)
            run_quantize(cfg)
            t, m, _ = load_trained(out, cpu)
            results[form] = evaluate_split(t, m, "test", cpu, str(out))
    return task.name, results


def _metric(split_metrics: dict, name: str) -> float | None:
    v = split_metrics.get("test", split_metrics).get(name)
    return None if v is None else float(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--json", default="", help="write the results here")
    args = ap.parse_args(argv)
    machine = machine_info()
    isa = quant.best_isa()
    print(f"machine: {machine.get('cpu')}; quantized kernel ISA: {isa}; torch {torch.__version__}")
    rows, payload = [], {"machine": machine, "quant_isa": isa, "runs": []}
    header = f"{'run':32} {'task':12} {'metric':9} " + " ".join(f"{c:>9}" for c in COLUMNS)
    print(header)
    print("-" * len(header))
    for path in args.runs:
        task, res = evaluate_run(path)
        payload["runs"].append({"run": path, "task": task, "metrics": res})
        for name in HEADLINE.get(task, ("loss",)):
            vals = [_metric(res[m], name) for m in COLUMNS]
            if vals[0] is None:
                continue
            cells = " ".join(f"{v:9.4f}" if v is not None else f"{'-':>9}" for v in vals)
            print(f"{path:32} {task:12} {name:9} {cells}")
            rows.append((path, task, name, vals))
    if args.json:
        Path(args.json).write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
