import csv
import gzip
import json
import warnings
from pathlib import Path

import pytest

from lstmkit.data.text import DataWarning, read_labelled, read_lines, read_text
from lstmkit.utils.errors import UserError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def test_read_lines_plain_gzip_and_crlf(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"one\r\ntwo\n")
    with gzip.open(tmp_path / "b.txt.gz", "wb") as f:
        f.write(b"drei\nvier\n")
    assert read_lines(tmp_path / "a.txt") == ["one", "two"]
    assert read_lines(tmp_path / "b.txt.gz") == ["drei", "vier"]


def test_undecodable_bytes_name_file_line_and_byte(tmp_path):
    p = tmp_path / "reviews.txt"
    p.write_bytes(b"fine\nalso fine\ncaf\xe9\n")
    with pytest.raises(UserError, match=r"reviews.txt, line 3: byte 0xe9.*--encoding"):
        read_lines(p)
    assert read_lines(p, "latin-1")[2] == "café"


def test_unknown_encoding_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="unknown text encoding 'klingon'"):
        read_text(tmp_path, "klingon")
    with pytest.raises(UserError, match="not found"):
        read_text(tmp_path / "nope.txt")


def test_csv_tsv_jsonl_with_chosen_columns(tmp_path):
    (tmp_path / "d.csv").write_text('review,stars\n"good, really",pos\n\nbad,neg\n')
    (tmp_path / "d.tsv").write_text("stars\treview\npos\tgood\n")
    (tmp_path / "d.jsonl").write_text(
        json.dumps({"review": "good", "stars": 5})
        + "\n\n"
        + json.dumps({"review": " ", "stars": 1})
    )
    kw = {"text_column": "review", "label_column": "stars"}
    csv_ = read_labelled(tmp_path / "d.csv", **kw)
    assert csv_.texts == ["good, really", "bad"] and csv_.labels == ["pos", "neg"]
    assert csv_.skipped == 1
    assert read_labelled(tmp_path / "d.tsv", **kw).texts == ["good"]
    j = read_labelled(tmp_path / "d.jsonl", **kw)
    assert j.texts == ["good"] and j.labels == ["5"] and j.skipped == 2


def test_missing_column_names_the_file_and_columns(tmp_path):
    (tmp_path / "d.csv").write_text("text,label\nx,y\n")
    with pytest.raises(UserError, match=r"d.csv: no column 'sentiment' \(columns: text, label\)"):
        read_labelled(tmp_path / "d.csv", label_column="sentiment")
    (tmp_path / "e.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(UserError, match=r"e.jsonl, line 1: no field 'label'"):
        read_labelled(tmp_path / "e.jsonl")
    (tmp_path / "f.jsonl").write_text("not json\n")
    with pytest.raises(UserError, match=r"f.jsonl, line 1: not JSON"):
        read_labelled(tmp_path / "f.jsonl")


def test_folder_per_class_and_line_files(tmp_path):
    for label, texts in {"pos": ["great", "fine"], "neg": ["awful"]}.items():
        (tmp_path / "f" / label).mkdir(parents=True)
        for i, t in enumerate(texts):
            (tmp_path / "f" / label / f"{i}.txt").write_text(t + "\n")
    d = read_labelled(tmp_path / "f")
    assert sorted(zip(d.labels, d.texts, strict=True)) == [
        ("neg", "awful"),
        ("pos", "fine"),
        ("pos", "great"),
    ]
    (tmp_path / "l").mkdir()
    (tmp_path / "l" / "data.pos").write_text("a\n\nb\n")
    (tmp_path / "l" / "neg.txt").write_text("c\n")
    d = read_labelled(tmp_path / "l")
    assert sorted(zip(d.labels, d.texts, strict=True)) == [("neg", "c"), ("pos", "a"), ("pos", "b")]
    assert d.skipped == 1
    joined = f"{tmp_path / 'l' / 'data.pos'},{tmp_path / 'l' / 'neg.txt'}"
    assert len(read_labelled(joined)) == 3


def test_unknown_extension_asks_for_format(tmp_path):
    (tmp_path / "d.dat").write_text("x")
    with pytest.raises(UserError, match="--format"):
        read_labelled(tmp_path / "d.dat")


@pytest.mark.skipif(not (DATA / "rt-polarity").exists(), reason="../shared/data/rt-polarity absent")
def test_rt_polarity_is_latin1_with_10662_sentences():
    files = f"{DATA / 'rt-polarity' / 'rt-polarity.pos'},{DATA / 'rt-polarity' / 'rt-polarity.neg'}"
    with pytest.raises(UserError, match="rt-polarity.pos, line"):
        read_labelled(files)
    d = read_labelled(files, encoding="latin-1")
    assert len(d) == 10662 and d.labels.count("pos") == 5331


def write_quoted_tsv(path: Path, n: int = 1000) -> Path:
    """``n`` sentence<TAB>label lines (half per class) under a header; some sentences have a
    ``"`` as people write them: ``a 12" record``, ``"quoted" words``, ``" an opening quote``."""
    lines = ["text\tlabel"]
    for k in range(n):
        text = f"sentence {k} here"
        if k % 7 == 0:
            text = f'sentence {k}: a 12" record'
        elif k % 5 == 0:
            text = f'"quoted" sentence {k}'
        elif k % 50 == 1:
            text = f'" an opening quote, sentence {k}'
        lines.append(f"{text}\t{'pos' if k % 2 else 'neg'}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_tsv_quotes_are_ordinary_characters_and_every_line_is_an_example(tmp_path):
    p = write_quoted_tsv(tmp_path / "d.tsv")
    d = read_labelled(p)
    assert len(d) == 1000 and d.labels.count("pos") == 500
    assert d.texts[7] == 'sentence 7: a 12" record' and d.texts[5] == '"quoted" sentence 5'
    assert d.texts[1] == '" an opening quote, sentence 1'
    assert d.summary() == "1000 examples from 1001 lines: 1 header"
    assert d.unaccounted == 0 and not d.warnings


def test_tsv_with_csv_quoting_reports_the_swallowed_lines(tmp_path):
    p = write_quoted_tsv(tmp_path / "d.tsv")
    with pytest.warns(DataWarning, match=r"d.tsv, lines 3-\d+: one TSV record over \d+ lines"):
        d = read_labelled(p, quoting="csv")
    assert len(d) < 1000  # what the csv module makes of it: quoted fields over many lines
    assert d.joined == 1000 - len(d) - d.malformed
    assert d.unaccounted == 0
    assert "inside multi-line quoted fields" in d.summary() and "1 warning" in d.summary()
    # one warning for all the file's records over several lines (there were one per record)
    assert len(d.warnings) == d.warned == 1 and "more such records: lines 53-" in d.warnings[0]


def test_a_tab_in_a_tsv_text_is_a_warning_naming_the_line(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_text("text\tlabel\ngood\tpos\nbad\tvery\tneg\nfine\tpos\n")
    with pytest.warns(DataWarning, match=r"d.tsv, line 3: 3 fields, expected 2"):
        d = read_labelled(p)
    assert d.texts == ["good", "fine"] and d.malformed == 1
    assert d.summary() == "2 examples from 4 lines: 1 header, 1 malformed (skipped); 1 warning"


def test_csv_field_with_a_line_break_is_a_warning(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('text,label\n"two\nlines",pos\nplain,neg\n')
    with pytest.warns(DataWarning, match=r"d.csv, lines 2-3: one CSV record over 2 lines"):
        d = read_labelled(p)
    assert d.texts == ["two\nlines", "plain"]
    assert d.summary() == (
        "2 examples from 4 lines: 1 header, 1 inside multi-line quoted fields; 1 warning"
    )


def test_many_quoted_line_breaks_are_one_warning_per_file(tmp_path):
    """A valid CSV whose texts hold line breaks gave a warning per record (5 kept, all counted)
    on every read and in the data line: one per file now, with the count and where."""
    from lstmkit.data.labelled_sets import describe_read

    p = tmp_path / "d.csv"
    p.write_text("text,label\n" + "".join(f'"row {k}\nsecond line",pos\n' for k in range(8)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = read_labelled(p)
    assert len(d) == 8 and d.joined == 8
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    one = (
        f"{p}, lines 2-3: one CSV record over 2 lines (a quoted field with line breaks); "
        "7 more such records: lines 4-5, 6-7, 8-9, 10-11, 12-13 and 2 more"
    )
    assert messages == d.warnings == [one]
    assert d.summary().endswith("8 inside multi-line quoted fields; 1 warning")
    assert describe_read("train", d)["train_warnings"] == messages[0]  # the data line: once


def test_csv_field_size_limit_is_set_and_its_error_names_file_and_line(tmp_path, monkeypatch):
    import lstmkit.data.text as text_module

    p = tmp_path / "d.csv"
    long = "word " * 40_000  # 200,000 characters: over the csv module's default of 131,072
    p.write_text(f'text,label\nshort,neg\n"{long}",pos\n')
    assert read_labelled(p).texts[1] == long
    assert csv.field_size_limit() == 131072  # restored: the limit is not left changed
    monkeypatch.setattr(text_module, "FIELD_LIMIT", 1000)
    with pytest.raises(UserError, match=r"d.csv, line 3: a field runs past 1,000 characters"):
        read_labelled(p)
    p.write_text('text,label\nok,pos\n"never closed,neg\n' + "more\n" * 300)
    with pytest.raises(UserError, match=r"d.csv, line 3: .*unclosed quote"):
        read_labelled(p)


def test_label_text_lines_are_detected_and_read(tmp_path):
    p = tmp_path / "TREC.train.all"
    p.write_text("DESC how did serfdom develop ?\nENTY what films featured ?\n\nDESC why ?\n")
    d = read_labelled(p)
    assert d.labels == ["DESC", "ENTY", "DESC"] and d.texts[0] == "how did serfdom develop ?"
    assert d.notes == [f"{p}: read as --format label-text (from its lines)"]
    assert d.summary() == "3 examples from 4 lines: 1 empty"
    explicit = read_labelled(tmp_path / "TREC.train.all", fmt="label-text")
    assert explicit.texts == d.texts and not explicit.notes
    (tmp_path / "subj.txt").write_text("1 smart and alert\n0 the movie begins\n" * 5)
    assert read_labelled(tmp_path / "subj.txt").labels[:2] == ["1", "0"]


def test_plain_sentences_are_not_mistaken_for_label_text(tmp_path):
    p = tmp_path / "plain.txt"
    p.write_text("".join(f"word{k} and more\n" for k in range(20)))
    with pytest.raises(UserError, match="cannot tell the format.*label-text or fasttext"):
        read_labelled(p)


def test_fasttext_lines_keep_the_first_label_and_warn(tmp_path):
    p = tmp_path / "train.ft"
    p.write_text("__label__pos great film\n__label__neg __label__dull a bore\n__label__pos ok\n")
    with pytest.warns(DataWarning, match=r"train.ft, line 2: 2 labels \(neg, dull\); kept"):
        d = read_labelled(p)
    assert d.labels == ["pos", "neg", "pos"] and d.texts == ["great film", "a bore", "ok"]
    assert d.notes[0].endswith("read as --format fasttext (from its lines)")
    (tmp_path / "bad.txt").write_text("__label__pos fine\nno label here\n")
    with pytest.raises(UserError, match=r"bad.txt, line 2: no __label__LABEL"):
        read_labelled(tmp_path / "bad.txt", fmt="fasttext")


def test_tables_without_a_header(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_text("pos\tgreat film\nneg\tdull\npos\tfine\nneg\tbad\n")
    numbered = read_labelled(p, header=False, text_column="1", label_column="0")
    assert numbered.texts == ["great film", "dull", "fine", "bad"] and not numbered.notes
    assert numbered.summary() == "4 examples from 4 lines"
    assert read_labelled(p, text_column="1", label_column="0").texts == numbered.texts
    auto = read_labelled(p)  # the first line is data: its label occurs again below
    assert auto.texts == numbered.texts and auto.labels == numbered.labels
    assert "read without a header" in auto.notes[0]
    assert "text from column 1, labels from column 0" in auto.notes[1]
    guessed = read_labelled(p, header=False)
    assert guessed.labels == numbered.labels and len(guessed.notes) == 1
    (tmp_path / "e.csv").write_text("great film,1\ndull,0\n")
    assert read_labelled(tmp_path / "e.csv", header=False).labels == ["1", "0"]
    with pytest.raises(UserError, match="0-based column numbers"):
        read_labelled(p, header=False, text_column="review")


def test_files_to_label_keep_their_rows_and_may_lack_the_label(tmp_path):
    """predict --input: the label column may be missing; each example keeps its own fields."""
    (tmp_path / "u.csv").write_text('id,review\n1,"fine,\nfilm"\n2,\n3,dull\n')
    d = read_labelled(
        tmp_path / "u.csv", text_column="review", label_required=False, keep_columns=True
    )
    assert d.texts == ["fine,\nfilm", "dull"] and d.labels == ["", ""]
    assert d.columns == [{"id": "1", "review": "fine,\nfilm"}, {"id": "3", "review": "dull"}]
    assert d.skipped == 1 and d.joined == 1 and d.unaccounted == 0
    (tmp_path / "u.jsonl").write_text('{"t": "a", "n": 1}\n{"t": "b", "label": "x"}\n')
    j = read_labelled(
        tmp_path / "u.jsonl", text_column="t", label_required=False, keep_columns=True
    )
    assert j.labels == ["", "x"] and j.columns == [{"t": "a", "n": 1}, {"t": "b", "label": "x"}]
    (tmp_path / "n.tsv").write_text("7\tgood one\n8\tbad one\n")
    n = read_labelled(
        tmp_path / "n.tsv", text_column="1", header=False, label_required=False, keep_columns=True
    )
    assert n.texts == ["good one", "bad one"] and n.columns[0] == {"0": "7", "1": "good one"}
    with pytest.raises(UserError, match="no column 'label'"):  # training still needs labels
        read_labelled(tmp_path / "u.csv", text_column="review")
