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
    """One row per metric, one column per split; a split without metrics (a task with no test
    set) has no column."""
    metrics = {split: m for split, m in metrics.items() if m}
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
    if task.metrics_note:
        console.print(task.metrics_note, soft_wrap=True)


def use_verbs(task) -> list[str]:
    """The ``lstmkit`` commands that use a trained model of ``task``, in the order a user
    tries them: evaluate, then the task's own (generate, translate, transcribe), predict and
    inspect, as far as the task declares them (:attr:`~lstmkit.tasks.base.Task.capabilities`)."""
    order = ("evaluate", "generate", "translate", "transcribe", "predict", "inspect")
    return [verb for verb in order if verb in task.capabilities]


def print_training_result(result, task=None) -> None:
    s = result.state
    console.print(
        f"{result.out}: {s.stop_reason}; {s.step} steps, {s.sequences:,} sequences, "
        f"{s.elapsed:.0f} s; metrics of the best checkpoint:"
    )
    console.print(metrics_table({"valid": result.valid, "test": result.test}))
    curves = result.out / "curves.png"
    # paths are not wrapped: a copied path must not be split in two
    console.print(
        f"best checkpoint: {result.out / 'best'}   log: {result.out / 'train.jsonl'}",
        soft_wrap=True,
    )
    if curves.exists():
        console.print(f"curves: {curves}", soft_wrap=True)
    verbs = use_verbs(task) if task is not None else ["evaluate", "predict", "inspect"]
    args = {"translate": " SENTENCE", "transcribe": " AUDIO.wav"}
    if not result.test:  # no test split: a bare `evaluate` would only say so
        args["evaluate"] = " --split valid"
    if task is not None and not task.examples():  # the speech tasks: no built-in inputs
        sample = getattr(task, "input_hint", " AUDIO.wav")
        args.update(predict=sample, inspect=sample)
    hints = [f"lstmkit {verb} {result.out}{args.get(verb, '')}" for verb in verbs]
    # one command per line: a wrapped line would split a command in two
    console.print("next:\n" + "\n".join(f"  {h}" for h in hints), soft_wrap=True)
