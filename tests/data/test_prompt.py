"""A language model's text at use time: prompts to ids, the line start, generated tokens to text."""

import pytest

from lstmkit.data.prompt import echo, encode_prompt, never_drawn, piece, show_token, start_ids
from lstmkit.data.tokenize import BOS, EOS, PAD, UNK, fit_tokenizer
from lstmkit.utils.errors import UserError

WORDS = fit_tokenizer(["the cat sat", "a dog"], "whitespace", lowercase=False, unk_token="<unk>")
CHARS = fit_tokenizer(["ab\nc"], "char", lowercase=False)


def test_word_prompts_end_lines_with_eos_and_name_their_unknown_words(capsys):
    s = WORDS.stoi
    assert encode_prompt(WORDS, "the cat\na <unk>") == [s["the"], s["cat"], EOS, s["a"], UNK]
    with pytest.raises(UserError, match=r"--prompt: 1 token\(s\) not in .*'zebra'; pass"):
        encode_prompt(WORDS, "the zebra")
    assert encode_prompt(WORDS, "the zebra zebra", "drop") == [s["the"]]
    assert "2 prompt token(s) not in the vocabulary left out: 'zebra'" in capsys.readouterr().err
    with pytest.raises(UserError, match="--on-unknown must be one of error, unk, drop"):
        encode_prompt(WORDS, "the", "skip")


def test_generation_starts_after_a_line_end_and_prints_tokens_as_text():
    nl = CHARS.stoi["\n"]
    assert start_ids(CHARS, [5]) == [nl, 5] and start_ids(CHARS, [nl, 5]) == [nl, 5]
    assert start_ids(WORDS, []) == [EOS]
    assert piece(WORDS, EOS) == "\n" and piece(WORDS, WORDS.stoi["cat"]) == "cat "
    assert (
        piece(CHARS, nl) == "\n" and echo(WORDS, "a dog") == "a dog " and echo(CHARS, "ab") == "ab"
    )


def test_end_of_line_token_is_a_line_end_and_chars_never_draw_it():
    bpe = fit_tokenizer(["the cat sat on the mat"] * 20, "bpe", vocab_size=40)
    assert piece(CHARS, EOS) == piece(bpe, EOS) == "\n"  # never the literal '</s>' (or '')
    assert never_drawn(CHARS) == (PAD, UNK, BOS, EOS) and never_drawn(WORDS) == (PAD, UNK, BOS)


def test_unknown_tokens_are_shown_readably():
    assert show_token("\t") == "U+0009" and show_token("é") == "'é' (U+00E9)"
    assert show_token("  ") == "'  '" and show_token("zebra") == "'zebra'"
