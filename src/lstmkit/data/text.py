"""Reading text data sets from the files people have, with errors that name the file and line.

- :func:`read_lines`: the lines of a plain or gzipped text file in any encoding.
- :func:`read_labelled`: labelled examples from CSV, TSV, JSONL, a folder per class (one file per
  example), one-example-per-line files per class, ``<label> <text>`` lines (Kim 2014's
  sentence-classification files: TREC, SUBJ, ...), or fastText's ``__label__X text`` lines.

Undecodable bytes are an error naming the file, the line and the byte offset, with a hint to
pass the right ``--encoding`` (the movie-review polarity set, for one, is Latin-1). Empty
examples are skipped and counted in :attr:`LabelledText.skipped`, never dropped silently.

Every reader counts the lines (or files) it read besides the examples, and
:meth:`LabelledText.summary` says where the difference went (a header, empty lines, lines
inside quoted fields, malformed lines). Anything suspicious (a TSV line with the wrong number
of fields, a CSV field running over several lines, a fastText line with several labels) is a
warning naming the file and line, kept in :attr:`LabelledText.warnings` and issued as a
:class:`DataWarning`.

TSV is read as people write it: one example per line, fields split at tabs, no quoting (a
``"`` is an ordinary character). ``quoting="csv"`` reads it with CSV quoting instead; CSV files
always use it (``quoting="none"`` splits them at every comma).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lstmkit.utils.errors import UserError

FORMATS = ("auto", "csv", "tsv", "jsonl", "folders", "lines", "label-text", "fasttext")
QUOTING = ("auto", "none", "csv")
FASTTEXT_PREFIX = "__label__"
FIELD_LIMIT = 10_000_000
"""Longest CSV field, in characters (the csv module's own default is 131,072): long enough for
a book-length example, short enough that an unclosed quote fails with a clear error instead
of swallowing a large file."""
MAX_WARNINGS = 5
"""Warnings kept and issued per file; the rest are counted."""
_SNIFF_LINES = 2000


class DataWarning(UserWarning):
    """Something in a data file that was probably not meant (it is read, and reported)."""


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
    """Examples and their labels as strings, in file order, with what reading them found."""

    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    skipped: int = 0
    """Examples skipped because their text was empty (reported by the caller)."""
    source: str = ""
    lines: int = 0
    """Lines read (files, for ``folders``): compared with the examples in :meth:`summary`."""
    unit: str = "lines"
    header: int = 0
    """Header lines."""
    malformed: int = 0
    """Lines skipped because they could not be one example (wrong number of fields...)."""
    joined: int = 0
    """Lines that continued a quoted CSV field of the line before (not examples of their own)."""
    notes: list[str] = field(default_factory=list)
    """What was chosen for the user (the format, the header, the columns)."""
    warnings: list[str] = field(default_factory=list)
    """The first :data:`MAX_WARNINGS` warnings per file, naming the file and line."""
    warned: int = 0
    """All warnings, including those not kept."""
    columns: list[dict] | None = None
    """With ``keep_columns``: each example's own fields (a CSV/TSV row by its header names, or
    by 0-based column number without one; a JSONL object as it is), to write beside a
    prediction. None otherwise."""

    def __len__(self) -> int:
        return len(self.texts)

    def add(self, text: str, label: str, columns: dict | None = None) -> None:
        if text.strip():
            self.texts.append(text)
            self.labels.append(label)
            if self.columns is not None:
                self.columns.append(columns if columns is not None else {"text": text})
        else:
            self.skipped += 1

    def warn(self, message: str) -> None:
        self.warned += 1
        if self.warned <= MAX_WARNINGS:
            self.warnings.append(message)
            warnings.warn(message, DataWarning, stacklevel=2)

    def note(self, message: str) -> None:
        self.notes.append(message)

    def extend(self, other: LabelledText) -> None:
        self.texts += other.texts
        self.labels += other.labels
        for name in ("skipped", "lines", "header", "malformed", "joined", "warned"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.notes += other.notes
        self.warnings += other.warnings

    @property
    def unaccounted(self) -> int:
        """Lines neither an example nor explained (0 unless a reader miscounts)."""
        return self.lines - len(self) - self.skipped - self.header - self.malformed - self.joined

    def summary(self) -> str:
        """``"824 examples from 1001 lines: 1 header, 176 inside quoted fields"``."""
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.header, "header"),
                (self.skipped, "empty"),
                (self.malformed, "malformed (skipped)"),
                (self.joined, "inside multi-line quoted fields"),
                (self.unaccounted, "unaccounted for"),
            )
            if n
        ]
        text = f"{len(self)} examples from {self.lines} {self.unit}"
        if parts:
            text += ": " + ", ".join(parts)
        if self.warned:
            text += f"; {self.warned} warning{'s' if self.warned > 1 else ''}"
        return text

    def subset(self, idx) -> LabelledText:
        return LabelledText(
            [self.texts[i] for i in idx], [self.labels[i] for i in idx], 0, self.source
        )


def _spans_warning(path: Path, kind: str, spans: list[tuple[int, int]]) -> str:
    """ONE warning for all of a file's records over several lines (a valid CSV with quoted line
    breaks has many): the first named as one alone is, then how many more and where the next
    :data:`MAX_WARNINGS` start."""
    (start, end), rest = spans[0], spans[1:]
    text = (
        f"{path}, lines {start}-{end}: one {kind} record over {end - start + 1} lines (a quoted "
        "field with line breaks)"
    )
    if rest:
        shown = ", ".join(f"{s}-{e}" for s, e in rest[:MAX_WARNINGS])
        more = f" and {len(rest) - MAX_WARNINGS} more" if len(rest) > MAX_WARNINGS else ""
        text += f"; {len(rest)} more such record{'s' if len(rest) > 1 else ''}: lines {shown}{more}"
    if kind == "TSV":
        text += "; without --quoting csv TSV is read by lines and tabs"
    return text


def guess_format(path: Path, encoding: str = "utf-8") -> str:
    """The format of ``path`` from its name, or for other files from its lines."""
    if path.is_dir():
        subdirs = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return "folders" if subdirs else "lines"
    name = path.name.removesuffix(".gz").lower()
    for ext, fmt in ((".csv", "csv"), (".tsv", "tsv"), (".jsonl", "jsonl"), (".json", "jsonl")):
        if name.endswith(ext):
            return fmt
    sniffed = sniff_format(split_lines(read_text(path, encoding))[:_SNIFF_LINES])
    if sniffed:
        return sniffed
    raise UserError(
        f"{path}: cannot tell the format from the name or the lines; pass --format "
        "(csv, tsv, jsonl, folders, lines, label-text or fasttext)"
    )


def sniff_format(lines: list[str]) -> str:
    """``fasttext`` if every line starts with ``__label__``; ``label-text`` if the first words
    of the lines are a few labels (at most 50, and at most a fifth of the lines); else ``""``."""
    lines = [line for line in lines if line.strip()]
    if not lines:
        return ""
    if all(line.lstrip().startswith(FASTTEXT_PREFIX) for line in lines):
        return "fasttext"
    firsts = [line.split(None, 1) for line in lines]
    if any(len(f) < 2 for f in firsts):
        return ""
    distinct = len({f[0] for f in firsts})
    if distinct <= max(2, min(50, len(lines) // 5)):
        return "label-text"
    return ""


def read_labelled(
    path: str | os.PathLike,
    *,
    fmt: str = "auto",
    text_column: str = "text",
    label_column: str = "label",
    encoding: str = "utf-8",
    header: bool = True,
    quoting: str = "auto",
    label_required: bool = True,
    keep_columns: bool = False,
) -> LabelledText:
    """Labelled examples from ``path``.

    ``csv``/``tsv``: a header row naming the columns, read ``text_column`` and
    ``label_column``; with ``header=False`` the columns are 0-based numbers (``"0"``, ``"1"``),
    or, left at ``text``/``label``, chosen from the data (the label: the column with the fewest
    distinct values). A table whose first row does not name the default columns but looks like
    data (its label occurs again below) is read as headerless, and the choice noted.
    ``quoting``: ``auto`` (CSV quoting for CSV, none for TSV), ``none`` or ``csv``.
    ``jsonl``: one object per line. ``folders``: ``path/LABEL/*`` with one example per file.
    ``lines``: ``path/LABEL.EXT`` files (or ``path`` a folder of them) with one example per
    line; ``path`` may also be a list of such files joined with commas. ``label-text``: one
    ``LABEL TEXT`` per line (the label is the first word). ``fasttext``: ``__label__X TEXT``
    per line; a line with several labels keeps the first (a warning says where).
    ``auto`` tells the format from the extension, or from the lines of other files; the
    choice is noted in :attr:`LabelledText.notes`.

    ``label_required=False`` reads files to label (predict): a CSV/TSV/JSONL without the label
    column gives the label ``""``; ``keep_columns`` keeps each example's own fields in
    :attr:`LabelledText.columns` (folder and line formats: ``text`` and ``label``).
    """
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if quoting not in QUOTING:
        raise UserError(f"--quoting must be one of {', '.join(QUOTING)}, got {quoting!r}")
    files = [Path(p) for p in str(path).split(",")] if "," in str(path) else [Path(path)]
    for f in files:
        if not f.exists():
            raise UserError(f"file not found: {f}")
    if len(files) > 1:
        if fmt not in ("auto", "lines"):
            raise UserError(f"{path}: a list of files is read as --format lines, not {fmt}")
        return _keeping(_read_line_files(files, encoding, str(path)), keep_columns)
    p = files[0]
    if fmt == "auto":
        fmt = guess_format(p, encoding)
        if not p.is_dir() and not p.name.removesuffix(".gz").lower().endswith(
            (".csv", ".tsv", ".jsonl", ".json")
        ):
            chosen = f"{p}: read as --format {fmt} (from its lines)"
        else:
            chosen = ""
    else:
        chosen = ""
    if fmt in ("csv", "tsv"):
        quote = quoting if quoting != "auto" else ("csv" if fmt == "csv" else "none")
        out = _read_table(
            p,
            "," if fmt == "csv" else "\t",
            quote,
            text_column,
            label_column,
            encoding,
            header,
            label_required=label_required,
            keep_columns=keep_columns,
        )
    elif fmt == "jsonl":
        out = _read_jsonl(p, text_column, label_column, encoding, label_required, keep_columns)
    elif fmt in ("label-text", "fasttext"):
        if p.is_dir():
            raise UserError(f"{p}: --format {fmt} reads a file, not a folder")
        out = _read_labelled_lines(p, fmt, encoding)
    elif fmt == "folders":
        if not p.is_dir():
            raise UserError(f"{p}: --format folders needs a folder with one subfolder per label")
        out = _read_folders(p, encoding)
    else:
        line_files = sorted(x for x in p.iterdir() if x.is_file()) if p.is_dir() else [p]
        out = _read_line_files(line_files, encoding, str(p))
    if chosen:
        out.notes.insert(0, chosen)
    return _keeping(out, keep_columns)


def _keeping(out: LabelledText, keep_columns: bool) -> LabelledText:
    """The folder and line formats' examples with ``text`` and ``label`` as their columns."""
    if keep_columns and out.columns is None:
        out.columns = [
            {"text": t, "label": lab} for t, lab in zip(out.texts, out.labels, strict=True)
        ]
    return out


def _split_rows(path, lines, delimiter, quoting, kind):
    """``(first line number, last line number, fields)`` per record. ``quoting="none"``: one
    record per line, fields split at ``delimiter``; ``"csv"``: the csv module's quoting, with
    :data:`FIELD_LIMIT` as its field size limit (a longer field is an error naming the line)."""
    if quoting == "none":
        for n, line in enumerate(lines, 1):
            yield n, n, line.split(delimiter)
        return
    old = csv.field_size_limit(FIELD_LIMIT)
    try:
        reader = csv.reader((line + "\n" for line in lines), delimiter=delimiter)
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                line = max(start, reader.line_num)
                if "field larger than field limit" in str(e):
                    raise UserError(
                        f"{path}, line {start}: a field runs past {FIELD_LIMIT:,} characters "
                        f"(to line {line}); an unclosed quote?"
                        + (
                            " TSV is read without quoting if you drop --quoting csv"
                            if kind == "TSV"
                            else ""
                        )
                    ) from None
                raise UserError(f"{path}, line {line}: not valid CSV ({e})") from None
            yield start, reader.line_num, row
    finally:
        csv.field_size_limit(old)


def _is_index(column: str) -> bool:
    return column.isdigit()


def _read_table(
    path,
    delimiter,
    quoting,
    text_column,
    label_column,
    encoding,
    header=True,
    *,
    label_required=True,
    keep_columns=False,
) -> LabelledText:
    lines = split_lines(read_text(path, encoding))
    if not lines:
        raise UserError(f"{path} is empty")
    out = LabelledText(source=str(path), lines=len(lines), columns=[] if keep_columns else None)
    kind = "TSV" if delimiter == "\t" else "CSV"
    rows = list(_split_rows(path, lines, delimiter, quoting, kind))
    defaults = (text_column, label_column) == ("text", "label")
    numbered = _is_index(text_column) and _is_index(label_column)
    if header and numbered and not {text_column, label_column} <= set(rows[0][2]):
        header = False  # columns given by number, which no header names: there is no header
    if header:
        names = rows[0][2]
        missing = [c for c in (text_column, label_column) if c not in names]
        if not label_required and missing == [label_column] and text_column in names:
            missing = []  # a file to label: its text column is enough
        if missing and defaults and _looks_headerless(rows):
            header = False
            out.note(
                f"{path}: the first line names no 'text'/'label' columns and looks like data: "
                "read without a header (--no-header)"
            )
        elif missing:
            raise UserError(
                f"{path}: no column {missing[0]!r} (columns: {', '.join(names)}); choose with "
                "--text-column / --label-column, or --no-header with column numbers"
            )
    if header:
        ti = names.index(text_column)
        li = names.index(label_column) if label_column in names else None
        width = len(names)
        out.header = rows[0][1]
        rows = rows[1:]
    elif not label_required and not _is_index(label_column) and _is_index(text_column):
        ti, li = int(text_column), None  # a file to label, its text column given by number
        width = max(Counter(len(r[2]) for r in rows).most_common(1)[0][0], ti + 1)
    else:
        ti, li = _headerless_columns(path, rows, text_column, label_column, out)
        width = max(Counter(len(r[2]) for r in rows).most_common(1)[0][0], ti + 1, li + 1)
    keys = names if header else [str(k) for k in range(width)]
    last = ti if li is None else max(ti, li)
    spans = [(start, end) for start, end, _ in rows if end > start]
    if spans:
        out.warn(_spans_warning(path, kind, spans))
    for start, end, row in rows:
        out.joined += end - start
        if not row or all(not c.strip() for c in row):
            out.skipped += 1
            continue
        if len(row) <= last:
            raise UserError(f"{path}, line {start}: {len(row)} fields, expected {width}")
        if len(row) > width and any(c.strip() for c in row[width:]):
            out.malformed += 1
            sep = "tab" if kind == "TSV" else "comma"
            out.warn(
                f"{path}, line {start}: {len(row)} fields, expected {width} (a {sep} inside the "
                "text?); line skipped"
            )
            continue
        if len(row) < width:
            out.warn(f"{path}, line {start}: {len(row)} fields, expected {width}")
        if li is not None and not row[li].strip() and label_required:
            raise UserError(f"{path}, line {start}: empty label")
        label = row[li].strip() if li is not None else ""
        out.add(row[ti], label, dict(zip(keys, row, strict=False)) if keep_columns else None)
    return out


def _looks_headerless(rows) -> bool:
    """The first row's value in the likely label column occurs again in that column below."""
    if len(rows) < 2:
        return False
    first, rest = rows[0][2], [r[2] for r in rows[1:_SNIFF_LINES]]
    li = _label_column_guess(rows[:_SNIFF_LINES])
    if li is None or li >= len(first):
        return False
    return any(len(r) > li and r[li].strip() == first[li].strip() for r in rest)


def _label_column_guess(rows) -> int | None:
    """The column with the fewest distinct values, among those every row has."""
    width = min((len(r[2]) for r in rows if any(c.strip() for c in r[2])), default=0)
    if width < 2:
        return None
    distinct = [len({r[2][k].strip() for r in rows if len(r[2]) > k}) for k in range(width)]
    return min(range(width), key=lambda k: (distinct[k], -k))


def _headerless_columns(path, rows, text_column, label_column, out) -> tuple[int, int]:
    if _is_index(text_column) and _is_index(label_column):
        ti, li = int(text_column), int(label_column)
        if ti == li:
            raise UserError(f"--text-column and --label-column are both column {ti}")
        return ti, li
    if (text_column, label_column) != ("text", "label"):
        raise UserError(
            f"{path}: without a header, give --text-column and --label-column as 0-based column "
            f"numbers (got {text_column!r} and {label_column!r})"
        )
    sample = rows[:_SNIFF_LINES]
    li = _label_column_guess(sample)
    if li is None:
        raise UserError(f"{path}: fewer than two columns; is the delimiter right (--format)?")
    width = min(len(r[2]) for r in sample if any(c.strip() for c in r[2]))
    lengths = [
        sum(len(r[2][k]) for r in sample if len(r[2]) > k) if k != li else -1 for k in range(width)
    ]
    ti = max(range(width), key=lambda k: lengths[k])
    out.note(
        f"{path}: no header; text from column {ti}, labels from column {li} (0-based; the one with "
        "the fewest distinct values); choose with --text-column / --label-column"
    )
    return ti, li


def json_object(line: str, where: str) -> dict:
    """The JSON object on one line of a JSON-lines file; ``where`` (file and line) starts the
    :class:`UserError` for a line that is not JSON or not an object."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise UserError(f"{where}: not JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a JSON object")
    return obj


def _read_jsonl(
    path, text_column, label_column, encoding, label_required=True, keep_columns=False
) -> LabelledText:
    lines = split_lines(read_text(path, encoding))
    out = LabelledText(source=str(path), lines=len(lines), columns=[] if keep_columns else None)
    for n, line in enumerate(lines, 1):
        if not line.strip():
            out.skipped += 1
            continue
        obj = json_object(line, f"{path}, line {n}")
        for col in (text_column, label_column) if label_required else (text_column,):
            if col not in obj:
                raise UserError(
                    f"{path}, line {n}: no field {col!r} (fields: {', '.join(obj)}); choose "
                    "with --text-column / --label-column"
                )
        label = str(obj.get(label_column, "")).strip()
        if not label and label_required:
            raise UserError(f"{path}, line {n}: empty label")
        out.add(str(obj[text_column]), label, obj if keep_columns else None)
    return out


def _read_labelled_lines(path: Path, fmt: str, encoding: str) -> LabelledText:
    lines = split_lines(read_text(path, encoding))
    out = LabelledText(source=str(path), lines=len(lines))
    several = 0
    for n, line in enumerate(lines, 1):
        words = line.split(None, 1)
        if not words:
            out.skipped += 1
            continue
        if fmt == "label-text":
            out.add(words[1] if len(words) > 1 else "", words[0])
            continue
        labels, rest = [], line.split()
        while rest and rest[0].startswith(FASTTEXT_PREFIX):
            labels.append(rest.pop(0)[len(FASTTEXT_PREFIX) :])
        if not labels or not labels[0]:
            raise UserError(
                f"{path}, line {n}: no {FASTTEXT_PREFIX}LABEL at the start (fastText format)"
            )
        if len(labels) > 1:
            several += 1
            out.warn(
                f"{path}, line {n}: {len(labels)} labels ({', '.join(labels)}); kept the first, "
                f"{labels[0]!r}"
            )
        out.add(" ".join(rest), labels[0])
    if several:
        out.note(f"{path}: {several} lines with several labels; each kept its first")
    return out


def _read_folders(path: Path, encoding: str) -> LabelledText:
    out = LabelledText(source=str(path), unit="files")
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(x for x in sub.iterdir() if x.is_file() and not x.name.startswith(".")):
            out.lines += 1
            out.add(read_text(f, encoding).strip(), sub.name)
    return out


def _read_line_files(files: list[Path], encoding: str, source: str) -> LabelledText:
    out = LabelledText(source=source)
    for f in files:
        label = f.name.removesuffix(".gz").split(".")[-1] if f.suffix else f.name
        # rt-polarity.pos -> "pos"; neg.txt -> "neg"
        if f.name.removesuffix(".gz").endswith((".txt", ".text")):
            label = f.name.removesuffix(".gz").rsplit(".", 1)[0]
        lines = read_lines(f, encoding)
        out.lines += len(lines)
        for line in lines:
            out.add(line.strip(), label)
    return out
