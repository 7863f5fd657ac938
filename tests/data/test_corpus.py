"""Text corpora for language models: reading, splits, token streams and the TBPTT layout."""

import gzip

import numpy as np
import pytest

from lstmkit.data.corpus import (
    StreamLayout,
    count_words,
    encode_stream,
    parse_paths,
    read_corpus,
    split_text,
)
from lstmkit.data.tokenize import EOS, UNK, fit_tokenizer
from lstmkit.utils.errors import UserError


def test_files_are_joined_counted_and_normalised(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt.gz"
    a.write_bytes(b"one\r\n\r\ntwo")  # CRLF, an empty line, no final newline
    with gzip.open(b, "wb") as f:
        f.write(b"three\n")
    c = read_corpus(parse_paths(f"{a},{b}", "--train"))
    assert c.text == "one\n\ntwo\nthree\n"
    assert (c.lines, c.empty_lines, c.crlf) == (4, 1, 2)


def test_empty_file_and_missing_file_are_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(UserError, match="empty.txt is empty"):
        read_corpus([str(empty)])
    with pytest.raises(UserError, match="--valid: file not found: .*nope.txt"):
        parse_paths(f"{empty},{tmp_path / 'nope.txt'}", "--valid")
    with pytest.raises(UserError, match="--train: no file given"):
        parse_paths(" , ", "--train")


def test_undecodable_bytes_name_file_and_line_and_encoding_option_reads_them(tmp_path):
    p = tmp_path / "latin.txt"
    p.write_bytes("first line\nsecond caf\u00e9\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin.txt, line 2: byte 0xe9 .* not valid utf-8"):
        read_corpus([str(p)])
    assert read_corpus([str(p)], "latin-1").text.endswith("caf\u00e9\n")


def test_split_follows_nanogpt_and_keeps_words_whole():
    text = "".join(chr(97 + i % 26) for i in range(1000))
    train, valid, test = split_text(text, 0.1, 0.0, at_line_end=False)
    assert (len(train), len(valid), test) == (900, 100, "")
    train, valid, test = split_text(text, 0.1, 0.05, at_line_end=False)
    assert (len(train), len(valid), len(test)) == (850, 100, 50)
    lines = "aaaa bbbb\n" * 10  # 100 characters
    train, valid, _ = split_text(lines, 0.15, 0.0, at_line_end=True)
    assert train + valid == lines and train.endswith("\n") and len(train) == 90


def test_streams_char_round_trip_and_word_line_ends():
    text = "Hi there.\n\nBye!\n"
    char = fit_tokenizer([text], "char", lowercase=False)
    ids = encode_stream(char, text)
    assert ids.dtype == np.int32 and char.decode(ids) == text
    word = fit_tokenizer(text.split("\n"), "word", lowercase=False)
    ids = encode_stream(word, text).tolist()
    assert ids.count(EOS) == 2  # the empty line gives nothing
    assert word.decode(ids) == "Hi there . Bye !"


# PTB/WikiText style: tokenized, rare words already <unk>, an empty line between paragraphs
PRETOKENIZED = "mr. smith 's well-known <unk> is n't here\n\nthe <unk> 's firm said mr. jones\n"


def test_whitespace_stream_counts_as_the_word_level_benchmarks():
    tok = fit_tokenizer(PRETOKENIZED.split("\n"), "whitespace", lowercase=False)
    ids = encode_stream(tok, PRETOKENIZED).tolist()
    # 8 + 7 words and one <eos> per line, the empty line included (as the PyTorch
    # word_language_model and AWD-LSTM data.py count, which gives WikiText-2's 2,088,628)
    assert len(ids) == 8 + 7 + 3 and ids.count(EOS) == 3
    assert ids[8:10] == [EOS, EOS] and ids.count(UNK) == 2
    words = [tok.token(i) for i in ids]
    assert words[:8] == PRETOKENIZED.split("\n")[0].split() and words[8] == "<eos>"
    assert count_words(PRETOKENIZED) == len(ids)
    assert encode_stream(tok, "").tolist() == [] and count_words("") == 0
    assert count_words("no line end") == 4


def _layout(n=1000, B=4, T=16):
    return StreamLayout(n, B, T), np.arange(n, dtype=np.int32)


def test_layout_carries_each_stream_from_chunk_to_chunk():
    layout, data = _layout()
    for step in range(layout.n_chunks - 1):
        x, y, chunk = layout.batch(data, step, seed=3)
        x2, _, chunk2 = layout.batch(data, step + 1, seed=3)
        assert chunk2 == chunk + 1
        np.testing.assert_array_equal(y, x + 1)  # targets are the next tokens
        np.testing.assert_array_equal(x2[:, 0], x[:, -1] + 1)  # the stream goes on


def test_layout_is_a_pure_function_and_covers_every_pass_in_bounds():
    layout, data = _layout(n=1003, B=4, T=16)
    steps = range(4 * layout.n_chunks)
    first = [layout.batch(data, s, seed=7) for s in steps]
    again = [layout.batch(data, s, seed=7) for s in reversed(steps)][::-1]
    for (x, y, c), (x2, _, c2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(x, x2)
        assert c == c2
        assert y.max() <= 1002
    # a pass reads each position of each stream once; passes start at different offsets
    one_pass = np.concatenate([b[0] for b in first[: layout.n_chunks]], 1)
    assert one_pass.shape == (4, layout.length)
    np.testing.assert_array_equal(np.diff(one_pass, axis=1), 1)
    offsets = {layout.where(p * layout.n_chunks, 7)[2] for p in range(4)}
    assert len(offsets) > 1
    assert first[layout.n_chunks][2] == 0  # a new pass starts at chunk 0


def test_processes_take_slices_of_the_same_global_batch():
    layout, data = _layout(B=6)
    full = layout.batch(data, 5, seed=1)[0]
    parts = [layout.batch(data, 5, seed=1, rank=r, world=4)[0] for r in range(4)]
    np.testing.assert_array_equal(np.concatenate(parts), full)


def test_too_little_text_names_the_options():
    with pytest.raises(UserError, match="--batch-size 64 .* --seq-len 128"):
        StreamLayout(100, 64, 128).check()
