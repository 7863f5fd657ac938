"""What the commands print: rich tables of metrics and results."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

console = Console()


def _fmt(v: object) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def metrics_table(metrics: dict[str, dict[str, float]]) -> Table:
    """One row per metric, one column per split."""
    table = Table()
    table.add_column("metric")
    for split in metrics:
        table.add_column(split, justify="right")
    names = list(dict.fromkeys(k for m in metrics.values() for k in m))
    for name in names:
        table.add_row(name, *(_fmt(m.get(name, "")) for m in metrics.values()))
    return table


def print_metrics(task, ckpt, metrics: dict[str, dict[str, float]]) -> None:
    step = ckpt.meta.get("step", "?")
    console.print(f"{task.name}: {ckpt.path} (step {step})")
    console.print(metrics_table(metrics))


def print_training_result(result) -> None:
    s = result.state
    console.print(
        f"{result.out}: {s.stop_reason}; {s.step} steps, {s.sequences:,} sequences, "
        f"{s.elapsed:.0f} s; metrics of the best checkpoint:"
    )
    console.print(metrics_table({"valid": result.valid, "test": result.test}))
    console.print(
        f"best checkpoint: {result.out / 'best'}   log: {result.out / 'train.jsonl'}\n"
        f"next: lstmkit evaluate {result.out}   lstmkit predict {result.out}   "
        f"lstmkit inspect {result.out}"
    )
