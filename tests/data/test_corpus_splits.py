"""The train/valid/test streams of a text corpus: where each split's text comes from, the counts
kept of it, and the flat columns of the data report."""

from lstmkit.data.corpus_splits import (
    TOKEN_UNITS,
    encode_splits,
    fit_training_tokenizer,
    flat_report,
    read_split_texts,
    read_stream,
    summary_line,
)
from lstmkit.data.tokenize import EOS, UNK

TRAIN = "".join(f"the cat sat {k}\n" for k in range(10))  # 10 lines, 4 words each


def _fit(text, kind="whitespace", unk_token="<unk>"):
    return fit_training_tokenizer(
        text, kind, lowercase=False, min_count=1, max_size=0, vocab_size=50, unk_token=unk_token
    )


def test_held_out_text_is_cut_at_a_line_end_unless_the_split_has_its_own_files(tmp_path):
    train, valid = tmp_path / "train.txt", tmp_path / "valid.txt"
    train.write_text(TRAIN)
    valid.write_text("a dog sat\n")
    cut = read_split_texts(str(train), "", "", 0.2, 0.1, "utf-8", at_line_end=True)
    assert (
        cut.texts["valid"] == "the cat sat 7\nthe cat sat 8\n"
        and cut.texts["test"] == "the cat sat 9\n"
    )
    assert cut.texts["train"] + cut.texts["valid"] + cut.texts["test"] == TRAIN
    assert set(cut.files) == {"train"} and cut.files["train"]["lines"] == 10
    own = read_split_texts(str(train), str(valid), "", 0.2, 0.0, "utf-8", at_line_end=True)
    assert own.texts == {"train": TRAIN, "valid": "a dog sat\n", "test": ""}
    assert own.files["valid"]["characters"] == 10 and own.files["valid"]["files"] == [str(valid)]


def test_counts_of_each_split_and_their_flat_columns(tmp_path):
    (tmp_path / "train.txt").write_text(TRAIN)
    (tmp_path / "valid.txt").write_text("a cat <unk> sat\n")
    read = read_split_texts(
        str(tmp_path / "train.txt"),
        str(tmp_path / "valid.txt"),
        "",
        0.0,
        0.0,
        "utf-8",
        at_line_end=True,
    )
    tok = _fit(read.texts["train"])
    splits = encode_splits(tok, read)
    assert splits.ids["valid"].tolist() == [UNK, tok.stoi["cat"], UNK, tok.stoi["sat"], EOS]
    assert splits.words == {"train": 50, "valid": 5, "test": 0}
    # the training text's types: the, cat, sat, 0-9 and <eos>
    assert splits.stats["types"] == 14 and splits.stats["unk"] == {
        "train": 0,
        "valid": 2,
        "test": 0,
    }
    report = flat_report(splits.stats, vocab=-1)
    assert report["train_files_lines"] == 10 and report["valid_files_characters"] == 16
    assert report["valid_tokens"] == 5 and report["test_words"] == 0
    assert report["vocab"] == len(tok) and report["token"] == TOKEN_UNITS["whitespace"]
    assert "train_files_files" not in report
    assert flat_report({}, vocab=7) == {"vocab": 7}  # an old checkpoint kept no counts
    line = summary_line(splits, read.corpus, tok, "whitespace")
    assert line.startswith(f"read {tmp_path / 'train.txt'}: 140 characters, 10 lines (0 empty")
    assert "tokens train 50, valid 5, test 0" in line and "(--unk-token <unk>" in line


def test_the_data_unknown_token_is_kept_by_word_tokens_only(tmp_path):
    assert _fit("a <unk> b\n", "whitespace").unk_token == "<unk>"
    assert _fit("a <unk> b\n", "char").unk_token == ""
    p = tmp_path / "more.txt"
    p.write_text("the cat\nsat\n")
    ids, words = read_stream(str(p), "--data", "utf-8", _fit(TRAIN))
    assert len(ids) == words == 5  # the, cat, <eos>, sat, <eos>
