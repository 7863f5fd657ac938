"""The user's inputs to a trained run: command-line texts, ``--input`` files (checked before
they are opened, so that nothing blocks or fills memory), the options that say how to read a
file, and the files the verbs write."""

from __future__ import annotations

import stat
import sys
from dataclasses import field
from pathlib import Path
from typing import Any

from lstmkit.tasks.base import READ_OPTIONS
from lstmkit.utils.device import DEVICES
from lstmkit.utils.errors import UserError
from lstmkit.utils.meta import help_meta as _help
from lstmkit.utils.records import format_results  # noqa: F401 (re-exported)

MAX_INPUT_BYTES = 1 << 30  # an --input file larger than this is refused, not read
MAX_INPUT_CHARS = 100_000  # one input longer than this is cut (predict), counted on stderr
MAX_INSPECT_CHARS = 5_000  # the gate plots of one input: steps beyond this are not drawn
PREDICT_BATCH = 64  # inputs per forward pass: memory stays bounded whatever the count


_READ_HELP = {
    "format": "data format, as train's --format (csv, tsv, jsonl, folders, lines, label-text, "
    "fasttext); default: from the file's extension (predict: other files hold one input per "
    "line)",
    "text_column": "CSV/TSV/JSONL column of the text; default: the run's",
    "label_column": "CSV/TSV/JSONL column of the label; default: the run's",
    "header": "CSV/TSV: the first line names the columns; default: as the run's",
    "quoting": "CSV/TSV quoting (auto, none, csv); default: the run's",
    "encoding": "text encoding of the file; default: the run's",
}


def read_field(name: str) -> Any:
    """One of the options that say how to read the user's file (:data:`READ_OPTIONS`): left
    out, it is the run's own, so the file is read as the training data was."""
    return field(default=None if name == "header" else "", metadata=_help(_READ_HELP[name]))


# The options every use verb shares, defined once (each call makes a fresh dataclass field).


def checkpoint_field(run: str = "a run folder") -> Any:
    """The positional CHECKPOINT: ``run``, or its best/ or last/ checkpoint."""
    return field(metadata=_help(f"{run}, or its best/ or last/ checkpoint", argument=True))


def arguments_field(help: str) -> Any:
    """The positional arguments after CHECKPOINT (inputs, sentences, audio files)."""
    return field(default=(), metadata=_help(help, argument=True))


def device_field() -> Any:
    return field(default="auto", metadata=_help("where to run", choices=DEVICES))


def allow_nonfinite_field() -> Any:
    return field(
        default=False,
        metadata=_help("load NaN or infinite weights anyway (for debugging a diverged run)"),
    )


def read_options(cfg: Any) -> dict[str, Any]:
    """The read options given in ``cfg`` (those left out are the run's)."""
    return {
        k: getattr(cfg, k)
        for k in READ_OPTIONS
        if getattr(cfg, k) is not None and getattr(cfg, k) != ""
    }


def read_inputs(
    inputs: tuple[str, ...], input_file: str, *, max_chars: int = MAX_INPUT_CHARS
) -> list[str]:
    """Command-line inputs, then the non-empty lines of ``input_file``.

    An empty input is an error (it would get a label without a word), as is an ``--input`` file
    with no input in it. An input longer than ``max_chars`` characters is cut there, and the
    number cut is said on stderr: memory is bounded by this limit, not by the input."""
    items = list(inputs)
    for k, item in enumerate(items, 1):
        if not item.strip():
            raise UserError(f"input {k} is empty; give a text")
    if input_file:
        items += read_input_lines(Path(input_file))
    return cut_inputs(items, max_chars)


def cut_inputs(items: list[str], max_chars: int) -> list[str]:
    cut = sum(len(x) > max_chars for x in items)
    if cut:
        print(
            f"lstmkit: warning: {cut} input(s) longer than {max_chars:,} characters were cut "
            f"to their first {max_chars:,}",
            file=sys.stderr,
        )
        items = [x[:max_chars] for x in items]
    return items


def check_input_path(path: Path, option: str = "--input") -> None:
    """A file (regular, at most :data:`MAX_INPUT_BYTES`) or a folder; anything else (a FIFO, a
    device) is refused before it is opened, so that nothing blocks."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UserError(f"{option}: file not found: {path}") from None
    except OSError as e:
        raise UserError(f"{option}: cannot read {path}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        return
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{option}: {path} is not a regular file")
    if st.st_size > MAX_INPUT_BYTES:
        raise UserError(
            f"{option}: {path} is {st.st_size:,} bytes; at most {MAX_INPUT_BYTES:,} are read "
            "(split it into smaller files)"
        )


def read_input_lines(path: Path) -> list[str]:
    check_input_path(path)
    if path.is_dir():
        raise UserError(f"--input: {path} is a folder; this task reads a file, one input per line")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"--input: {path} is not UTF-8 (byte {e.start})") from None
    except OSError as e:
        raise UserError(f"--input: cannot read {path}: {e.strerror}") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise UserError(f"--input: {path} holds no input (it is empty or blank)")
    return lines


def check_output_path(output: str, option: str = "--output") -> None:
    """Refuse an output file whose folder does not exist (rather than creating a tree), or
    that is a folder, before any work is done."""
    if not output:
        return
    path = Path(output)
    if path.is_dir():
        raise UserError(f"{option}: {path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise UserError(f"{option}: folder {path.parent} does not exist")
