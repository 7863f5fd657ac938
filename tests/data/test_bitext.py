"""Parallel text made ready for seq2seq: which files a split or --data names, the vocabularies
(fitted, shared, saved and restored), length filtering and length-ordered groups."""

import gzip
from pathlib import Path

import pytest

from lstmkit.data.bitext import (
    by_length,
    data_arg_paths,
    encode_within,
    fit_vocabularies,
    split_paths,
    vocabularies_from_state,
    vocabularies_state,
)
from lstmkit.data.parallel import ParallelText
from lstmkit.utils.errors import UserError

LANGS = ("de", "en")


def test_split_paths_take_the_explicit_pair_or_the_folder_prefering_gz(tmp_path):
    explicit = split_paths("test", ("a.de", "b.en"), "ignored", "x", LANGS)
    assert explicit == (Path("a.de"), Path("b.en"))
    (tmp_path / "train.de").write_text("a\n")
    (tmp_path / "train.de.gz").write_bytes(gzip.compress(b"a\n"))
    (tmp_path / "train.en").write_text("a\n")
    src, tgt = split_paths("train", ("", ""), str(tmp_path), "train", LANGS)
    assert src.name == "train.de.gz" and tgt.name == "train.en"
    # neither file there: the .gz name, so the error names what the default layout expects
    src, _ = split_paths("valid", ("", ""), str(tmp_path), "val", LANGS)
    assert src.name == "val.de.gz"
    with pytest.raises(UserError, match="--valid-src and --valid-tgt go together; --valid-src is"):
        split_paths("valid", ("", "t.en"), str(tmp_path), "val", LANGS)


def test_data_arg_paths_prefer_the_plain_file_and_name_a_missing_one(tmp_path):
    (tmp_path / "p.de").write_text("a\n")
    (tmp_path / "p.de.gz").write_bytes(gzip.compress(b"a\n"))
    (tmp_path / "p.en.gz").write_bytes(gzip.compress(b"a\n"))
    src, tgt = data_arg_paths(str(tmp_path / "p"), LANGS)
    assert (src.name, tgt.name) == ("p.de", "p.en.gz")
    assert data_arg_paths(f"{src},{tgt}", LANGS) == (src, tgt)
    with pytest.raises(UserError, match="give SRC,TGT"):
        data_arg_paths(f"{src},", LANGS)
    with pytest.raises(UserError, match=r"file not found: .*q\.de \(give SRC,TGT, or a PREFIX of"):
        data_arg_paths(str(tmp_path / "q"), LANGS)


def test_vocabularies_fit_apart_or_shared_and_survive_the_checkpoint_state():
    train = ParallelText(["ein hund", "zwei hunde"], ["a dog", "two dogs"])
    src, tgt = fit_vocabularies(train, "word", 50, True, False)
    assert "hund" in src.stoi and "hund" not in tgt.stoi and "dog" in tgt.stoi
    again = vocabularies_from_state(vocabularies_state(src, tgt))
    assert [t.encode("zwei dogs") for t in again] == [t.encode("zwei dogs") for t in (src, tgt)]
    one, same = fit_vocabularies(train, "word", 50, True, True)
    assert one is same and {"hund", "dog"} <= set(one.stoi)
    state = vocabularies_state(one, same)
    assert state["tgt_tokenizer"] is None
    a, b = vocabularies_from_state(state)
    assert a is b and a.encode("two hunde") == one.encode("two hunde")


def test_encode_within_drops_pairs_too_long_on_either_side_and_counts_them():
    pairs = ParallelText(["a b c", "a", "a b", "a"], ["x", "x y z", "x y", "x"])
    tok_src, tok_tgt = fit_vocabularies(pairs, "word", 50, True, False)
    src, tgt, skipped = encode_within(pairs, tok_src, tok_tgt, max_len=2)
    assert skipped == 2 and [len(s) for s in src] == [2, 1] and [len(t) for t in tgt] == [2, 1]


def test_by_length_groups_shortest_first_ties_in_input_order():
    seqs = [[1, 2, 3], [1], [1, 2], [4], [1, 2, 3, 4]]
    assert list(by_length(seqs, 2)) == [[1, 3], [2, 0], [4]]
    assert list(by_length([], 3)) == []
