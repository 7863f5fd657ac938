"""Parallel text: pairing, empty pairs, gzip, encodings, and the errors that name files."""

import gzip

import pytest

from lstmkit.data.parallel import read_parallel
from lstmkit.utils.errors import UserError


def _write(path, lines, encoding="utf-8"):
    data = "".join(line + "\n" for line in lines).encode(encoding)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def test_pairs_plain_and_gzipped(tmp_path):
    src = _write(tmp_path / "a.de.gz", ["Ein Hund.", "Zwei Katzen."])
    tgt = _write(tmp_path / "a.en", ["A dog.", "Two cats."])
    d = read_parallel(src, tgt)
    assert d.src == ["Ein Hund.", "Zwei Katzen."] and d.tgt == ["A dog.", "Two cats."]
    assert d.skipped == 0 and len(d) == 2
    assert len(d.head(1)) == 1 and len(d.head(0)) == 2


def test_empty_pairs_are_counted_and_skipped(tmp_path):
    src = _write(tmp_path / "s", ["eins", "", "drei", "vier"])
    tgt = _write(tmp_path / "t", ["one", "two", "  ", "four"])
    d = read_parallel(src, tgt)
    assert d.src == ["eins", "vier"] and d.tgt == ["one", "four"]
    assert d.skipped == 2


def test_mismatched_line_counts_name_both_files_and_counts(tmp_path):
    src = _write(tmp_path / "train.de", ["a", "b", "c"])
    tgt = _write(tmp_path / "train.en", ["a", "b"])
    with pytest.raises(UserError) as e:
        read_parallel(src, tgt, what="train data")
    msg = str(e.value)
    assert "train.de" in msg and "3 lines" in msg and "train.en" in msg and "has 2" in msg


def test_encoding_option_and_bad_bytes(tmp_path):
    src = _write(tmp_path / "s.txt", ["Grüße aus Köln"], encoding="latin-1")
    tgt = _write(tmp_path / "t.txt", ["Greetings from Cologne"])
    assert read_parallel(src, tgt, "latin-1").src == ["Grüße aus Köln"]
    with pytest.raises(UserError, match=r"s\.txt, line 1: byte 0x.. .*--encoding"):
        read_parallel(src, tgt)


def test_all_empty_is_an_error(tmp_path):
    src = _write(tmp_path / "s", ["", ""])
    tgt = _write(tmp_path / "t", ["x", ""])
    with pytest.raises(UserError, match="no sentence pairs.*2 empty pairs"):
        read_parallel(src, tgt)


def test_missing_file(tmp_path):
    tgt = _write(tmp_path / "t", ["x"])
    with pytest.raises(UserError, match="file not found"):
        read_parallel(tmp_path / "nope.de", tgt)


def test_a_giant_line_is_skipped_counted_and_said(tmp_path, capsys):
    """A 50 MB line once took BPE training to 5.8 GB; it is skipped before any tokenizer."""
    from lstmkit.data.parallel import MAX_SENTENCE_CHARS

    giant = "Wort " * (MAX_SENTENCE_CHARS // 5 + 1)
    src = _write(tmp_path / "s", ["eins", giant, "drei"])
    tgt = _write(tmp_path / "t", ["one", "two", "three"])
    d = read_parallel(src, tgt)
    assert d.src == ["eins", "drei"] and d.tgt == ["one", "three"]
    assert d.skipped == 1
    assert "1 pair(s)" in capsys.readouterr().err
