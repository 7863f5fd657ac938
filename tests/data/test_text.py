import gzip
import json
from pathlib import Path

import pytest

from lstmkit.data.text import read_labelled, read_lines, read_text
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
