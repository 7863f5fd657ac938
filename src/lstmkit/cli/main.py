"""The ``lstmkit`` command: thin entry points that parse options, build configs and call down.

Errors a user can fix (bad options, files, checkpoints) print one line, ``lstmkit: error: ...``,
and exit with status 2; ``--debug`` (anywhere on the line) shows the traceback instead.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import click

from lstmkit.cli.options import (
    MAX_THREADS,
    CountInt,
    SectionedCommand,
    SectionOption,
    build,
    check_unique,
    options_for,
)
from lstmkit.infer.evaluate import EvaluateConfig
from lstmkit.infer.export import ExportConfig
from lstmkit.infer.generate import GenerateConfig
from lstmkit.infer.inspect import InspectConfig
from lstmkit.infer.predict import PredictConfig
from lstmkit.infer.quantize import QuantizeConfig
from lstmkit.infer.transcribe import TranscribeConfig
from lstmkit.infer.translate import TranslateConfig
from lstmkit.serve.config import ServeConfig
from lstmkit.train.curves import PlotConfig
from lstmkit.utils.errors import UserError
from lstmkit.utils.malloc import tune_malloc

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class TaskGroup(click.Group):
    """``lstmkit train TASK``: one subcommand per registered task, built when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from lstmkit.tasks.base import discover

        return sorted(discover())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        from lstmkit.tasks.base import get_task

        try:
            task_cls = get_task(name)
        except UserError as e:
            raise click.UsageError(str(e)) from None
        return _train_command(task_cls)

    def resolve_command(self, ctx, args):
        # click's own message for an unknown name is "No such command"; ours lists the tasks
        name = args[0] if args else None
        if name and name.startswith("-"):
            raise click.UsageError(
                f"give a task before options; tasks: {', '.join(self.list_commands(ctx))}"
            )
        return super().resolve_command(ctx, args)


def _train_command(task_cls) -> click.Command:
    from lstmkit.train.config import TrainConfig

    check_unique(task_cls.Config, task_cls.ModelConfig, TrainConfig)
    params = [
        *options_for(task_cls.Config, "Task options"),
        *options_for(task_cls.ModelConfig, "Model options"),
        *options_for(TrainConfig, "Training options", task_cls.train_defaults),
    ]

    def callback(**values):
        from lstmkit.train import distributed

        if values["resume"]:
            values = _resumed_values(task_cls, values)
        train_cfg = build(TrainConfig, values)
        if train_cfg.nproc > 1 and distributed.world_from_env().size == 1:
            argv = click.get_current_context().find_root().obj["argv"]
            from lstmkit.train.trainer import launch  # holds the run folder for the workers

            return launch(task_cls.name, train_cfg, _without_nproc(argv))
        cfg, model_cfg = build(task_cls.Config, values), build(task_cls.ModelConfig, values)
        if "cross-validate" in task_cls.capabilities and cfg.cv and cfg.fold < 0:
            return _run_cross_validation(task_cls, cfg, model_cfg, train_cfg)
        return _run_training(task_cls(cfg, model_cfg), train_cfg)

    return SectionedCommand(
        task_cls.name,
        params=params,
        callback=callback,
        help=f"Train on the {task_cls.summary}.\n\n{_plain(task_cls.__doc__ or '')}",
        short_help=task_cls.summary,
        context_settings=CONTEXT,
    )


def _resumed_values(task_cls, values: dict) -> dict:
    """``--resume``: the run's saved options, over which only the options typed on the line
    (click's parameter source) are laid; the trainer refuses those that may not change."""
    from click.core import ParameterSource

    from lstmkit.train.trainer import resume_values

    ctx = click.get_current_context()
    typed = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    given = {name for name in values if ctx.get_parameter_source(name) in typed}
    out = values["out"]
    if not out:  # the trainer's default folders
        cross = "cross-validate" in task_cls.capabilities and values["cv"] and values["fold"] < 0
        out = f"runs/{task_cls.name}-cv{values['cv']}" if cross else f"runs/{task_cls.name}"
    return resume_values(task_cls.name, values, given, Path(out))


def _plain(doc: str) -> str:
    """A docstring for the terminal: Sphinx roles dropped (``:func:`x``` becomes ``x``)."""
    return re.sub(r":\w+:`~?([^`]+)`", r"\1", inspect.cleandoc(doc))


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def _run_training(task, cfg) -> int:
    from lstmkit.cli.report import print_training_result
    from lstmkit.train import distributed
    from lstmkit.train.trainer import train

    result = train(task, cfg)
    if distributed.world_from_env().is_main:
        print_training_result(result, task)
    return 0


def _run_cross_validation(task_cls, cfg, model_cfg, train_cfg) -> int:
    from lstmkit.cli.report import console
    from lstmkit.experiments.crossval import cross_validate, format_summary

    def on_fold(fold, results):
        test = ", ".join(f"{k} {v:.4g}" for k, v in results["test"].items())
        console.print(f"fold {fold + 1}/{cfg.cv}: test {test}")

    task_cls(cfg, model_cfg)  # option errors before any training
    summary = cross_validate(task_cls, cfg, model_cfg, train_cfg, on_fold=on_fold)
    console.print(format_summary(summary), markup=False)  # "[min, max]" is not rich markup
    return 0


@click.group(context_settings=CONTEXT, invoke_without_command=True)
@click.option("--version", is_flag=True, help="Print the version and exit.")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors (anywhere on the line).")
@click.pass_context
def cli(ctx: click.Context, version: bool, debug: bool) -> None:
    """lstmkit: LSTM networks for PyTorch, with the LSTM papers' tasks.

    Start with `lstmkit demo`, then `lstmkit train --help` for the tasks.
    """
    if version:
        from lstmkit import __version__

        click.echo(__version__)
    elif ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@cli.group(cls=TaskGroup, context_settings=CONTEXT)
def train() -> None:
    """Train a model on TASK; `lstmkit train TASK --help` lists every option."""


@dataclass(frozen=True)
class Command:
    """One row of :data:`COMMANDS`: a command that builds ``config`` (a frozen dataclass whose
    fields are its options) from what was typed and calls ``run`` with it."""

    name: str
    config: type
    run: Callable[[Any], int]
    short_help: str
    help: str


def _make_command(c: Command) -> click.Command:
    """The click command of a :class:`Command`; every such command also takes ``--threads``
    (the CPU threads torch may use), as training does."""

    own = "threads" in {f.name for f in fields(c.config)}  # the config takes it itself

    def callback(**values):
        threads = values["threads"] if own else values.pop("threads")
        if threads < 0:
            raise UserError(f"--threads must be >= 0, got {threads}")
        if threads:
            import torch

            torch.set_num_threads(threads)
        return c.run(build(c.config, values))

    threads = SectionOption(
        ["--threads", "threads"],
        type=CountInt(maximum=MAX_THREADS),
        default=0,
        show_default=True,
        help="CPU threads for torch; 0 lets torch choose (all cores)",
        section="Options",
    )
    return SectionedCommand(
        c.name,
        params=[*options_for(c.config, "Options"), *([] if own else [threads])],
        callback=callback,
        help=c.help,
        short_help=c.short_help,
        context_settings=CONTEXT,
    )


# ----- what each command prints (the work is in lstmkit.infer and lstmkit.train.curves)
def _evaluate(cfg) -> int:
    from lstmkit.cli.report import print_metrics
    from lstmkit.infer.evaluate import evaluate

    task, ckpt, metrics = evaluate(cfg)
    if cfg.json:
        click.echo(json.dumps({"checkpoint": str(ckpt.path), **metrics}))
    else:
        print_metrics(task, ckpt, metrics)
    return 0


def _predict(cfg) -> int:
    from lstmkit.infer.predict import predict

    results = predict(cfg)
    if cfg.output:
        n = len(results)
        click.echo(f"wrote {n} prediction{'s' * (n != 1)} to {cfg.output}", err=True)
    else:
        click.echo("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results), nl=False)
    return 0


def _inspect(cfg) -> int:
    from lstmkit.infer.inspect import inspect

    for p in inspect(cfg):
        click.echo(str(p))
    return 0


def _generate(cfg) -> int:
    from lstmkit.infer.generate import generate

    for piece in generate(cfg):
        click.echo(piece, nl=False)  # click flushes: the text streams as it is sampled
    click.echo()
    return 0


def _translate(cfg) -> int:
    from lstmkit.infer.translate import translate

    result = translate(cfg)
    if cfg.output:
        click.echo(
            f"wrote {len(result.translations)} translations to {cfg.output} "
            f"({result.seconds:.1f} s)",
            err=True,
        )
    else:
        click.echo("".join(t + "\n" for t in result.translations), nl=False)
    for name, score in result.scores.items():
        click.echo(f"{name.upper()} {score:.2f}  {result.signatures[name]}", err=True)
    return 0


def _transcribe(cfg) -> int:
    from lstmkit.infer.transcribe import transcribe

    results, text = transcribe(cfg)
    if cfg.output:
        click.echo(f"wrote {len(results)} transcripts to {cfg.output}", err=True)
    else:
        click.echo(text, nl=False)
    return 0


def _export(cfg) -> int:
    from lstmkit.infer.export import run_export

    for p in run_export(cfg).paths:  # the files written, as inspect prints its PNGs
        click.echo(str(p))
    return 0


def _quantize(cfg) -> int:
    from lstmkit.infer.quantize import run_quantize

    def size(n: int) -> str:
        return f"{n / 1e6:.2f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"

    r = run_quantize(cfg)
    click.echo(
        f"wrote {r.path} ({r.mode}: the LSTM weights take {size(r.quantized_bytes)}, "
        f"{size(r.float_bytes)} in float32; {r.activations} activations)",
        err=True,
    )
    click.echo(str(r.path))
    return 0


def _serve(cfg) -> int:
    from lstmkit.serve.server import serve

    return serve(cfg)


def _plot(cfg) -> int:
    from lstmkit.train.curves import plot_runs

    click.echo(f"wrote {plot_runs(cfg)}", err=True)
    return 0


COMMANDS = (
    Command(
        "evaluate",
        EvaluateConfig,
        _evaluate,
        "Evaluate a trained model (a run folder, or its best/ or last/ checkpoint)",
        "Evaluate a trained model on its task's validation and/or test set.",
    ),
    Command(
        "predict",
        PredictConfig,
        _predict,
        "Run a trained model on INPUTS; prints one JSON object per input",
        "Run a trained model on INPUTS and print one JSON object per input. With no "
        "inputs, a few test examples are used (shown in the format the task reads).",
    ),
    Command(
        "inspect",
        InspectConfig,
        _inspect,
        "Plot the gates and the cell state over time for INPUTS (PNG files)",
        "Plot the gates and the cell state over time for INPUTS (one PNG each). With no "
        "inputs, one test example is plotted.",
    ),
    Command(
        "generate",
        GenerateConfig,
        _generate,
        "Sample text from a language model (task lm), printed as it is generated",
        "Continue --prompt with --length tokens sampled from a language model trained by "
        "`lstmkit train lm`, printing each token as it comes. --temperature and --top-k "
        "shape the sampling; --seed makes it repeatable.",
    ),
    Command(
        "translate",
        TranslateConfig,
        _translate,
        "Translate SENTENCES or --input FILE with a translation model",
        "Translate SENTENCES (and the lines of --input) with a model trained by `lstmkit "
        "train translation`; one translation per line. With --reference, print sacreBLEU "
        "and chrF with their signatures.",
    ),
    Command(
        "transcribe",
        TranscribeConfig,
        _transcribe,
        "Transcribe audio files with a speech model (task asr-ctc)",
        "Transcribe AUDIO files (WAV, FLAC, ... at any sample rate; resampled and mixed to "
        "mono) with a model trained by `lstmkit train asr-ctc`. Prints FILE<TAB>TEXT lines.",
    ),
    Command(
        "export",
        ExportConfig,
        _export,
        "Export a trained model to ONNX (--out model.onnx), with its metadata beside it",
        "Export a trained model to an ONNX file (--format onnx, the only format for now) that "
        "ONNX Runtime runs without torch, with dynamic batch and time dimensions; its "
        "metadata (tokenizer, labels, feature settings, input and output shapes) goes into "
        "the file and beside it (OUT.json). A translation model is two graphs: OUT (the "
        "encoder) and OUT's .decoder.onnx (one decoder step). `lstmkit predict OUT INPUTS` "
        "runs the export.",
    ),
    Command(
        "quantize",
        QuantizeConfig,
        _quantize,
        "Store a trained model's LSTM weights as int8 or bf16 (--out RUN-int8)",
        "Write a copy of a trained run with every LSTM's weight matrices stored as int8 "
        "(--mode int8: symmetric, one float scale per output row) or bfloat16 (--mode bf16), "
        "run by the quantized CPU kernel; with int8 weights the activations that multiply them "
        "are quantized per step too (--activations int8, the default: integer dot products, "
        "as torch's dynamic quantization) or kept float32 (--activations float). The rest of "
        "the model stays float32. Every command "
        "loads the result (`lstmkit predict OUT ...`, evaluate, generate...); docs/RESULTS.md "
        "has the accuracy it costs.",
    ),
    Command(
        "serve",
        ServeConfig,
        _serve,
        "Serve trained runs over HTTP (JSON endpoints, micro-batching, a web inspector)",
        "Serve RUNS over HTTP until Ctrl-C or SIGTERM: POST /v1/RUN/predict, /inspect, "
        "/generate (server-sent events), /translate, /transcribe as each run's task has them, "
        "GET /v1/runs and /health, and at / a page that shows a prediction beside the gates. "
        "Concurrent predict requests are gathered into one model call (--max-batch, "
        "--max-wait-ms). Listens on 127.0.0.1 unless --host says otherwise. Needs the serve "
        "extra: pip install 'lstmkit[serve]'.",
    ),
    Command(
        "plot",
        PlotConfig,
        _plot,
        "Draw the training curves of one or several runs side by side (a PNG)",
        "Draw the training curves of RUNS side by side from their train.jsonl: the "
        "training and validation values of each metric against steps, the test value of "
        "the best checkpoint and the task's baseline where it has one. `lstmkit train` "
        "draws the same picture into RUN/curves.png as it trains.",
    ),
)
"""The commands that take a run (or runs) and options: one row each. A new verb is a config
dataclass and a function in its own ``lstmkit/infer/`` module, a print function above, and a
row here (plus its name in :data:`lstmkit.tasks.base.VERBS` and the tasks that declare it)."""

for _c in COMMANDS:
    cli.add_command(_make_command(_c))


@cli.command(
    context_settings={**CONTEXT, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args) -> int:
    """Speed table of lstmkit.LSTM against torch.nn.LSTM (`lstmkit bench --help`)."""
    from lstmkit import bench as bench_module

    return bench_module.main(list(args))


def _demo_command() -> click.Command:
    from lstmkit.experiments.demo import DemoConfig

    def callback(**values):
        from lstmkit.experiments import demo

        return demo.main(build(DemoConfig, values))

    return SectionedCommand(
        "demo",
        params=options_for(DemoConfig, "Demo options"),
        callback=callback,
        help=(
            "Train an LSTM and a plain RNN on the adding problem and compare them (what `make "
            "demo` runs: about 3 minutes on 2 CPU cores; no data or network needed)."
        ),
        short_help="LSTM vs RNN on the adding problem, with gate plots (make demo)",
        context_settings=CONTEXT,
    )


cli.add_command(_demo_command())


def cli_main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lstmkit`` script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("LSTMKIT_DEBUG") == "1"
    if debug:
        os.environ["LSTMKIT_DEBUG"] = "1"  # the processes that --nproc launches inherit it
        argv = [a for a in argv if a != "--debug"]
    try:
        tune_malloc()  # keep freed memory for the next step: 14-19% less time per CPU step
        warnings.formatwarning = _one_line_warning
        status = cli.main(args=argv, prog_name="lstmkit", standalone_mode=False, obj={"argv": argv})
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort as e:
        # Ctrl-C: click turns it into Abort; a training run's says where a resume starts
        cause = e.__cause__
        detail = str(cause) if isinstance(cause, KeyboardInterrupt) and str(cause) else "aborted"
        print(f"lstmkit: {detail}", file=sys.stderr)
        return 130
    except click.ClickException as e:
        if debug:
            traceback.print_exc()
        print(f"lstmkit: error: {e.format_message()}", file=sys.stderr)
        return 2
    except UserError as e:
        if debug:
            traceback.print_exc()
        print(f"lstmkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"lstmkit: {e or 'interrupted'}", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as e:
        if not _out_of_memory(e):
            return _last_line_of_defence(e, debug)
        if debug:
            traceback.print_exc()
        print(f"lstmkit: error: {_memory_message(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        return _last_line_of_defence(e, debug)
    return status if isinstance(status, int) else 0


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings (a data file's odd line, a slower fallback) as one ``lstmkit: warning:`` line,
    not Python's two lines of source location."""
    text = str(message).strip().removeprefix("lstmkit: ")
    return f"lstmkit: warning: {text}\n"


def _last_line_of_defence(e: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exc()
        return 1
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    print(
        f"lstmkit: error: {type(e).__name__}: {first} (run again with --debug for the traceback)",
        file=sys.stderr,
    )
    return 1


def _out_of_memory(e: BaseException) -> bool:
    text = str(e)
    return isinstance(e, MemoryError) or "can't allocate memory" in text or "out of memory" in text


def _memory_message(e: BaseException) -> str:
    wanted = re.search(r"allocate (\d+) bytes", str(e))
    size = f" ({int(wanted.group(1)) / 2**30:,.1f} GiB at once)" if wanted else ""
    return (
        f"out of memory{size}: the batch or the sequences do not fit in this machine's memory; "
        "lower --batch-size, --seq-len or the model size (memory grows with batch x length x "
        "hidden size x layers)"
    )


if __name__ == "__main__":
    raise SystemExit(cli_main())
