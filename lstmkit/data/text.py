"""Reading text data sets from the files people have, with errors that name the file and line.

- :func:`read_lines`: the lines of a plain or gzipped text file in any encoding.
- :func:`read_labelled`: labelled examples from CSV, TSV, JSONL, a folder per class (one file per
  example), or one-example-per-line files per class.

Undecodable bytes are an error naming the file, the line and the byte offset, with a hint to
pass the right ``--encoding`` (the movie-review polarity set, for one, is Latin-1). Empty
examples are skipped and counted in :attr:`LabelledText.skipped`, never dropped silently.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from lstmkit.utils.errors import UserError

FORMATS = ("auto", "csv", "tsv", "jsonl", "folders", "lines")


def check_encoding(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise UserError(f"--encoding: unknown text encoding {encoding!r}") from None


def _open_bytes(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115


def read_text(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """The whole text of a plain or ``.gz`` file; bad bytes raise a :class:`UserError` naming
    the file, line and byte."""
    path = Path(path)
    encoding = check_encoding(encoding)
    try:
        with _open_bytes(path) as f:
            data = f.read()
    except FileNotFoundError:
        raise UserError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, not a text file") from None
    except (OSError, EOFError) as e:
        raise UserError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(
            f"{path}, line {line}: byte 0x{data[e.start]:02x} at offset {e.start} is not valid "
            f"{encoding}; pass --encoding (e.g. latin-1)"
        ) from None
    return text.removeprefix("\ufeff")


def read_lines(path: str | os.PathLike, encoding: str = "utf-8") -> list[str]:
    """Lines of a plain or gzipped file, without line ends (``\\r\\n`` too).

    Only ``\\n`` ends a line: :meth:`str.splitlines` would also split at form feeds and at
    U+0085, which is what byte 0x85 decodes to in Latin-1 (rt-polarity has such bytes).
    """
    return split_lines(read_text(path, encoding))


def split_lines(text: str) -> list[str]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


@dataclass
class LabelledText:
    """Examples and their labels as strings, in file order."""

    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    skipped: int = 0
    """Examples skipped because their text was empty (reported by the caller)."""
    source: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    def add(self, text: str, label: str) -> None:
        if text.strip():
            self.texts.append(text)
            self.labels.append(label)
        else:
            self.skipped += 1

    def subset(self, idx) -> LabelledText:
        return LabelledText(
            [self.texts[i] for i in idx], [self.labels[i] for i in idx], 0, self.source
        )


def guess_format(path: Path) -> str:
    if path.is_dir():
        subdirs = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return "folders" if subdirs else "lines"
    name = path.name.removesuffix(".gz").lower()
    for ext, fmt in ((".csv", "csv"), (".tsv", "tsv"), (".jsonl", "jsonl"), (".json", "jsonl")):
        if name.endswith(ext):
            return fmt
    raise UserError(
        f"{path}: cannot tell the format from the name; pass --format "
        "(csv, tsv, jsonl, folders or lines)"
    )


def read_labelled(
    path: str | os.PathLike,
    *,
    fmt: str = "auto",
    text_column: str = "text",
    label_column: str = "label",
    encoding: str = "utf-8",
) -> LabelledText:
    """Labelled examples from ``path``.

    ``csv``/``tsv``: a header row naming the columns; ``jsonl``: one object per line; both read
    ``text_column`` and ``label_column``. ``folders``: ``path/LABEL/*`` with one example per
    file. ``lines``: ``path/LABEL.EXT`` files (or ``path`` a folder of them) with one example per
    line; ``path`` may also be a list of such files joined with commas.
    """
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    files = [Path(p) for p in str(path).split(",")] if "," in str(path) else [Path(path)]
    for f in files:
        if not f.exists():
            raise UserError(f"file not found: {f}")
    if len(files) > 1:
        if fmt not in ("auto", "lines"):
            raise UserError(f"{path}: a list of files is read as --format lines, not {fmt}")
        return _read_line_files(files, encoding, str(path))
    p = files[0]
    fmt = guess_format(p) if fmt == "auto" else fmt
    if fmt in ("csv", "tsv"):
        return _read_table(p, "," if fmt == "csv" else "\t", text_column, label_column, encoding)
    if fmt == "jsonl":
        return _read_jsonl(p, text_column, label_column, encoding)
    if not p.is_dir() and fmt == "folders":
        raise UserError(f"{p}: --format folders needs a folder with one subfolder per label")
    if fmt == "folders":
        return _read_folders(p, encoding)
    line_files = sorted(x for x in p.iterdir() if x.is_file()) if p.is_dir() else [p]
    return _read_line_files(line_files, encoding, str(p))


def _read_table(path, delimiter, text_column, label_column, encoding) -> LabelledText:
    lines = split_lines(read_text(path, encoding))
    if not lines:
        raise UserError(f"{path} is empty")
    reader = csv.reader(lines, delimiter=delimiter)
    header = next(reader)
    for col in (text_column, label_column):
        if col not in header:
            raise UserError(
                f"{path}: no column {col!r} (columns: {', '.join(header)}); choose with "
                "--text-column / --label-column"
            )
    ti, li = header.index(text_column), header.index(label_column)
    out = LabelledText(source=str(path))
    for row in reader:
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            out.skipped += 1
            continue
        if len(row) <= max(ti, li):
            raise UserError(f"{path}, line {line}: {len(row)} fields, expected {len(header)}")
        if not row[li].strip():
            raise UserError(f"{path}, line {line}: empty label")
        out.add(row[ti], row[li].strip())
    return out


def _read_jsonl(path, text_column, label_column, encoding) -> LabelledText:
    out = LabelledText(source=str(path))
    for n, line in enumerate(split_lines(read_text(path, encoding)), 1):
        if not line.strip():
            out.skipped += 1
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}, line {n}: not JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{path}, line {n}: expected a JSON object")
        for col in (text_column, label_column):
            if col not in obj:
                raise UserError(
                    f"{path}, line {n}: no field {col!r} (fields: {', '.join(obj)}); choose "
                    "with --text-column / --label-column"
                )
        label = str(obj[label_column]).strip()
        if not label:
            raise UserError(f"{path}, line {n}: empty label")
        out.add(str(obj[text_column]), label)
    return out


def _read_folders(path: Path, encoding: str) -> LabelledText:
    out = LabelledText(source=str(path))
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(x for x in sub.iterdir() if x.is_file() and not x.name.startswith(".")):
            out.add(read_text(f, encoding).strip(), sub.name)
    return out


def _read_line_files(files: list[Path], encoding: str, source: str) -> LabelledText:
    out = LabelledText(source=source)
    for f in files:
        label = f.name.removesuffix(".gz").split(".")[-1] if f.suffix else f.name
        # rt-polarity.pos -> "pos"; neg.txt -> "neg"
        if f.name.removesuffix(".gz").endswith((".txt", ".text")):
            label = f.name.removesuffix(".gz").rsplit(".", 1)[0]
        for line in read_lines(f, encoding):
            out.add(line.strip(), label)
    return out
