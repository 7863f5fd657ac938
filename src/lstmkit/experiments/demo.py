"""``lstmkit demo``: LSTM against a plain tanh RNN on the adding problem, with gate plots.

The adding problem (Hochreiter & Schmidhuber 1997, experiment 4; here in the form of Le et al.
2015): a sequence of T (value, marker) pairs, values uniform in [0, 1], two of them marked; the
target at the end is the sum of the two marked values. Predicting the mean always gives the
variance baseline, MSE 1/6 ~= 0.167; a net that stays there has not bridged the time lag. Both
nets have the same hidden size, optimiser and budget; the LSTM trains until 99% of the
validation sequences are within 0.04 of the target (the 1997 paper's tolerance) or its time
budget ends, and the RNN then gets the same number of training sequences (or the same time).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lstmkit.utils.io import atomic_write_json, atomic_write_text
from lstmkit.utils.meta import help_meta as _help


@dataclass(frozen=True)
class DemoConfig:
    """Options of ``lstmkit demo``."""

    out: str = field(
        default="runs/demo", metadata=_help("output folder (its lstm/ and rnn/ are replaced)")
    )
    seq_len: int = field(default=100, metadata=_help("sequence length T of the adding problem"))
    hidden_size: int = field(default=64, metadata=_help("hidden units of both nets"))
    budget: float = field(default=75.0, metadata=_help("seconds of training per net, at most"))
    max_steps: int = field(default=6000, metadata=_help("optimiser steps per net, at most"))
    batch_size: int = field(default=64, metadata=_help("sequences per step"))
    lr: float = field(default=1e-2, metadata=_help("AdamW learning rate of both nets"))
    n_test: int = field(default=2000, metadata=_help("test sequences"))
    seed: int = field(default=0, metadata=_help("seed of weights and data"))
    threads: int = field(
        default=1,
        metadata=_help(
            "CPU threads; the nets are small, and one thread measured faster than two on a "
            "2-core machine with other work running (18.8 vs 24.9 ms per LSTM step)"
        ),
    )
    progress: bool = field(default=True, metadata=_help("show live progress bars"))


def _task(cfg: DemoConfig, cell: str):
    from lstmkit.tasks.longlag import AddingTask

    return AddingTask(
        AddingTask.Config(seq_len=cfg.seq_len, variant="le2015", n_valid=1000, n_test=cfg.n_test),
        AddingTask.ModelConfig(cell=cell, hidden_size=cfg.hidden_size),
    )


def _train_cfg(cfg: DemoConfig, out: Path, steps: int, budget: float):
    from lstmkit.train.config import TrainConfig

    return TrainConfig(
        steps=steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        eval_every=100,
        max_time=budget,
        device="cpu",
        seed=cfg.seed,
        out=str(out),
        overwrite=True,
        progress=cfg.progress,
        log_every=20,
        threads=cfg.threads,
    )


def run(cfg: DemoConfig) -> dict:
    """Train both nets, write the plots; returns the summary (also in ``out/summary.json``)."""
    from lstmkit.train.trainer import train

    out = Path(cfg.out)
    start = time.perf_counter()
    results = {}
    lstm_task = _task(cfg, "lstm")
    results["LSTM"] = (
        lstm_task,
        train(lstm_task, _train_cfg(cfg, out / "lstm", cfg.max_steps, cfg.budget), label="LSTM"),
    )
    steps = results["LSTM"][1].state.step
    rnn_task = _task(cfg, "rnn")
    results["RNN"] = (
        rnn_task,
        train(rnn_task, _train_cfg(cfg, out / "rnn", steps, cfg.budget), label="RNN"),
    )
    rows = {}
    for name, (task, r) in results.items():
        model = task.build_model()
        rows[name] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "test_mse": r.test["mse"],
            "within_0.04": r.test["correct"],
            "sequences": r.state.sequences,
            "seconds": round(r.state.elapsed, 1),
            "solved": r.solved,
            "stop_reason": r.state.stop_reason,
        }
    files = _plots(cfg, out, results)
    # inputs in the format `lstmkit predict` reads: values, the two marked ones with '*'
    examples = out / "examples.txt"
    atomic_write_text(examples, "\n".join(lstm_task.examples()) + "\n")
    files.append(examples)
    summary = {
        "task": f"adding problem, T={cfg.seq_len} (le2015 form)",
        "baseline_mse": results["LSTM"][1].test["baseline_mse"],
        "models": rows,
        "files": [str(p) for p in files],
        "total_seconds": round(time.perf_counter() - start, 1),
    }
    atomic_write_json(out / "summary.json", summary)
    return summary


def _curves(history: list[dict], event: str, key: str) -> tuple[list[float], list[float]]:
    pts = [(h["sequences"], h[key]) for h in history if h["event"] == event]
    return [p[0] for p in pts], [p[1] for p in pts]


def _plots(cfg: DemoConfig, out: Path, results) -> list[Path]:
    from lstmkit.nn import record_gates
    from lstmkit.viz import plot_gates, plot_loss_curves

    train_curves = {n: _curves(r.history, "train", "loss") for n, (_, r) in results.items()}
    valid_curves = {n: _curves(r.history, "valid", "mse") for n, (_, r) in results.items()}
    loss_png = plot_loss_curves(
        train_curves,
        out / "loss.png",
        valid_curves=valid_curves,
        baseline=results["LSTM"][1].test["baseline_mse"],
        baseline_label="predict the mean",
        ylabel="mean squared error",
        smooth=0.6,
        title=f"Adding problem, T={cfg.seq_len}: training loss (solid), validation (dashed)",
    )
    # the trained LSTM (best/) on one test sequence
    from lstmkit.train.inference import load_trained

    task, model, _ = load_trained(out / "lstm", torch.device("cpu"))
    batch = task.eval_set("test")
    k = 0
    x, lengths = batch.inputs[k : k + 1], batch.lengths[k : k + 1]
    with torch.no_grad(), record_gates(model) as rec:
        pred = model(x, lengths).item()
    trace = rec[0, 0]
    marks = batch.marks[k].tolist()
    target = batch.targets[k].item()
    gates_png = plot_gates(
        {g: getattr(trace, g)[0] for g in ("i", "f", "o", "c")},
        out / "gates.png",
        inputs=x[0],
        input_labels=["value", "marker"],
        marks=marks,
        max_units=16,
        title=(
            f"LSTM on one test sequence: marked values {x[0, marks[0], 0]:.2f} + "
            f"{x[0, marks[1], 0]:.2f} = {target:.3f}, predicted {pred:.3f}"
        ),
    )
    return [loss_png, gates_png]


def main(cfg: DemoConfig) -> int:
    from rich.console import Console
    from rich.table import Table

    from lstmkit import __version__

    console = Console()
    console.print(
        f"[bold]lstmkit {__version__}[/bold] demo: the adding problem, T = {cfg.seq_len}\n"
        "Each sequence holds T (value, marker) pairs; the net must output the sum of the two "
        "marked values at the end.\nPredicting the mean gives MSE 0.167; an LSTM and a tanh RNN "
        f"of {cfg.hidden_size} units get the same budget ({cfg.budget:g} s at most each).\n"
    )
    summary = run(cfg)
    table = Table(title="Adding problem, test set", title_justify="left")
    for col in ("net", "parameters", "test MSE", "within 0.04", "sequences seen", "time", "solved"):
        table.add_column(col, justify="left" if col == "net" else "right")
    for name, row in summary["models"].items():
        table.add_row(
            name,
            f"{row['parameters']:,}",
            f"{row['test_mse']:.4f}",
            f"{row['within_0.04']:.1%}",
            f"{row['sequences']:,}",
            f"{row['seconds']:.0f} s",
            "yes" if row["solved"] else "no",
        )
    console.print(table)
    console.print(f"variance baseline (predict the mean): MSE {summary['baseline_mse']:.3f}\n")
    out = Path(cfg.out)
    console.print("[bold]Files[/bold]")
    for p in summary["files"]:
        console.print(f"  {p}")
    console.print(f"  {out / 'lstm'}/best   the trained LSTM (safetensors + JSON)")
    console.print(f"  {out / 'summary.json'}\n")
    console.print("[bold]Try next[/bold]")
    console.print(f"  lstmkit evaluate {out / 'lstm'}")
    console.print(f"  lstmkit predict {out / 'lstm'} --input {out / 'examples.txt'}")
    console.print(f"  lstmkit inspect {out / 'lstm'} --out {out / 'inspect'}")
    console.print("  lstmkit train adding --seq-len 200 --out runs/adding200")
    console.print("  lstmkit train --help")
    return 0
