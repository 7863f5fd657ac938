"""``lstmkit demo``: LSTM against a plain tanh RNN on the adding problem, with gate plots.

The adding problem (Hochreiter & Schmidhuber 1997, experiment 4; here in the form of Le et al.
2015): a sequence of T (value, marker) pairs, values uniform in [0, 1], two of them marked; the
target at the end is the sum of the two marked values. Predicting the mean always gives the
variance baseline, MSE 1/6 ~= 0.167; a net that stays there has not bridged the time lag. Both
nets have the same hidden size, optimiser and budget; the LSTM trains until 99% of the
validation sequences are within 0.04 of the target (the 1997 paper's tolerance) or its time
budget ends, and the RNN then trains on the same number of sequences (its own time limit,
:data:`SAFETY_FACTOR` times the budget, is a safety net; when it is hit the summary and the
table say so).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lstmkit.utils.io import atomic_write_json, atomic_write_text
from lstmkit.utils.meta import help_meta as _help

SAFETY_FACTOR = 3.0  # the RNN's time limit, in units of --budget: a safety net for a hung machine


@dataclass(frozen=True)
class DemoConfig:
    """Options of ``lstmkit demo``."""

    out: str = field(
        default="runs/demo", metadata=_help("output folder (its lstm/ and rnn/ are replaced)")
    )
    seq_len: int = field(default=100, metadata=_help("sequence length T of the adding problem"))
    hidden_size: int = field(default=64, metadata=_help("hidden units of both nets"))
    budget: float = field(
        default=75.0,
        metadata=_help(
            "seconds of training of the LSTM, at most; the RNN then trains on as many "
            "sequences (stopped, and reported, only past 3x this)"
        ),
    )
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
    # The RNN trains on as many sequences as the LSTM saw, however long that takes on a busy
    # machine; its time limit is only a safety net, and hitting it is reported.
    steps = results["LSTM"][1].state.step
    rnn_task = _task(cfg, "rnn")
    results["RNN"] = (
        rnn_task,
        train(
            rnn_task,
            _train_cfg(cfg, out / "rnn", steps, SAFETY_FACTOR * cfg.budget),
            label="RNN",
        ),
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
    lstm_seen, rnn_seen = rows["LSTM"]["sequences"], rows["RNN"]["sequences"]
    unequal = None
    if rnn_seen < lstm_seen and rows["RNN"]["stop_reason"].startswith("time limit"):
        unequal = (
            f"the RNN stopped at its safety time limit ({SAFETY_FACTOR:g} x --budget = "
            f"{SAFETY_FACTOR * cfg.budget:g} s) after {rnn_seen:,} sequences, the LSTM saw "
            f"{lstm_seen:,}: the comparison is not on equal data (a busy machine? raise --budget)"
        )
    files = _plots(cfg, out, results)
    # inputs in the format `lstmkit predict` reads: values, the two marked ones with '*'
    examples = out / "examples.txt"
    atomic_write_text(examples, "\n".join(lstm_task.examples()) + "\n")
    files.append(examples)
    summary = {
        "task": f"adding problem, T={cfg.seq_len} (le2015 form)",
        "baseline_mse": results["LSTM"][1].test["baseline_mse"],
        "models": rows,
        "equal_data": unequal is None,
        "unequal_data": unequal,
        "files": [str(p) for p in files],
        "total_seconds": round(time.perf_counter() - start, 1),
    }
    atomic_write_json(out / "summary.json", summary)
    return summary


def _curves(history: list[dict], event: str, key: str) -> tuple[list[float], list[float]]:
    pts = [(h["sequences"], h[key]) for h in history if h["event"] == event]
    return [p[0] for p in pts], [p[1] for p in pts]


def readout_ranking(
    contrib: torch.Tensor, marks: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """How much each unit's share of the read-out is moved by the marks, and stays moved.

    ``contrib`` is ``(B, T, H)``: ``w_u * h_t[u]``, unit ``u``'s share of the read-out
    ``w . h_t + b`` (the answer the net would give if the sequence ended at step ``t``).
    ``marks`` ``(B, K)`` are the marked steps, ``lengths`` ``(B,)``. For each mark, the share
    just before it is compared with the share just before the next mark (or at the last step):
    a unit that stores a marked value keeps the change, one that only flickers at the mark does
    not. Returns ``(H,)``: the mean over sequences of the summed absolute changes.
    """
    B, T, H = contrib.shape
    # a zero step before the sequence: the state starts at 0, so does every share
    padded = torch.cat([contrib.new_zeros(B, 1, H), contrib], dim=1)
    rows = torch.arange(B)
    marks = marks.sort(dim=1).values
    total = contrib.new_zeros(H)
    for j in range(marks.shape[1]):
        before = marks[:, j]  # index of step marks-1 in padded
        after = marks[:, j + 1] if j + 1 < marks.shape[1] else lengths
        total += (padded[rows, after] - padded[rows, before]).abs().mean(0)
    return total


def _plots(cfg: DemoConfig, out: Path, results) -> list[Path]:
    from lstmkit.viz import plot_loss_curves

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
    return [loss_png, _gates_plot(out)]


_RANKED_ON = 200  # test sequences the units are ranked on
_SHOWN = 12  # units in the heatmaps
_LINES = 4  # units drawn as lines in the read-out share panel


def _gates_plot(out: Path) -> Path:
    """The trained LSTM (best/) on the first test sequence: what it would answer at each step,
    which units carry that answer, and their gates."""
    from lstmkit.infer.load import load_trained
    from lstmkit.nn import record_gates
    from lstmkit.viz import LinePanel, plot_gates

    task, model, _ = load_trained(out / "lstm", torch.device("cpu"))
    test = task.eval_set("test")
    n = min(_RANKED_ON, test.inputs.shape[0])
    with torch.no_grad(), record_gates(model) as rec:
        model(test.inputs[:n], test.lengths[:n])
    trace = rec[0, 0]
    w, b = model.head.weight[0].detach(), float(model.head.bias[0].detach())
    contrib = trace.h * w  # (n, T, H): each unit's share of the read-out at each step
    score = readout_ranking(contrib, test.marks[:n], test.lengths[:n])
    order = [int(u) for u in torch.argsort(score, descending=True, stable=True)]
    share = score / score.sum()
    H = contrib.shape[-1]

    k = 0  # the sequence drawn: the first test sequence
    length = int(test.lengths[k])
    x = test.inputs[k, :length]
    marks = sorted(int(m) for m in test.marks[k])
    values = [float(x[m, 0]) for m in marks]
    target = float(test.targets[k])
    readout = contrib[k, :length].sum(-1) + b
    t = torch.arange(length)
    seen = sum(((t >= m).double() * v for m, v in zip(marks, values, strict=True)), t * 0.0)
    expected = seen + sum((t < m).double() * 0.5 for m in marks)
    top = order[:_LINES]
    rest = [u for u in range(H) if u not in top]
    shares = {f"unit {u} (w {float(w[u]):+.2f})": contrib[k, :length, u] for u in top}
    shares[f"the other {len(rest)} units"] = contrib[k, :length, rest].sum(-1)
    guess = "best guess from what is seen (each unseen mark counts 0.5, its mean)"
    panels = [
        LinePanel(
            "read-out w·h_t + b: what the net would answer if the sequence ended at step t",
            {"read-out": readout, "sum of the marked values so far": seen, guess: expected},
            ylabel="sum",
            steps=("sum of the marked values so far", guess),
            emphasize="read-out",
        ),
        LinePanel(
            f"each unit's share w_u·h_t[u] of the read-out (read-out = all {H} shares + b, "
            f"b = {b:+.2f})",
            shares,
            ylabel="share",
            zero_line=True,
        ),
    ]
    shown = order[:_SHOWN]
    u0 = order[0]
    at = torch.zeros(length, dtype=torch.bool)
    at[marks] = True
    gate = {g: getattr(trace, g)[k, :length, u0] for g in ("i", "f", "o", "c")}
    caption = (
        f"Units shown: the {len(shown)} of {H} whose share of the read-out changes most from "
        "just before each mark to just before the next mark (or the end), the change a stored "
        f"value leaves, averaged over {n} test sequences; largest first (top row), labelled "
        f"with their index. Unit {u0} carries {float(share[u0]):.0%} of that change, the "
        f"{len(shown)} shown {float(share[shown].sum()):.0%}. On this sequence unit {u0}'s "
        f"input gate is {float(gate['i'][at].mean()):.2f} at the marks and "
        f"{float(gate['i'][~at].mean()):.2f} elsewhere, its forget gate at least "
        f"{float(gate['f'][1:].min()):.3f} after step 0, its output gate at least "
        f"{float(gate['o'][1:].min()):.3f}; its cell state stays within "
        f"[{float(gate['c'].min()):.2f}, {float(gate['c'].max()):.2f}], pale on the c scale, "
        "where tanh passes it on nearly unchanged; units with large |c| sit where tanh is flat, "
        "and their big moves change the read-out little."
    )
    gates = {g: getattr(trace, g)[k, :length] for g in ("i", "f", "o", "c")}
    return plot_gates(
        gates,
        out / "gates.png",
        inputs=x,
        input_labels=["value", "marker"],
        marks=marks,
        units=shown,
        c_lines=0,
        line_panels=panels,
        title=(
            f"LSTM on one test sequence: marked values {values[0]:.2f} + {values[1]:.2f} = "
            f"{target:.3f}, predicted {float(readout[-1]):.3f}"
        ),
        caption=caption,
    )


def main(cfg: DemoConfig) -> int:
    from rich.console import Console
    from rich.table import Table

    from lstmkit import __version__

    console = Console()
    console.print(
        f"[bold]lstmkit {__version__}[/bold] demo: the adding problem, T = {cfg.seq_len}\n"
        "Each sequence holds T (value, marker) pairs; the net must output the sum of the two "
        "marked values at the end.\nPredicting the mean gives MSE 0.167; an LSTM and a tanh RNN "
        f"of {cfg.hidden_size} units train on the same number of sequences (the LSTM until it "
        f"solves the task or {cfg.budget:g} s pass).\n"
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
    console.print(f"variance baseline (predict the mean): MSE {summary['baseline_mse']:.3f}")
    if summary["unequal_data"]:
        console.print(f"[bold red]warning:[/bold red] {summary['unequal_data']}", highlight=False)
    else:
        console.print("both nets trained on the same sequences", highlight=False)
    console.print()
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
