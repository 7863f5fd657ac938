import json

import pytest

from lstmkit.data.tokenize import PAD, UNK, TextTokenizer, fit_tokenizer
from lstmkit.utils.errors import UserError

TEXTS = ["The film is good .", "the film isn't bad!", "A good, good film"]


def roundtrip(tok):
    return TextTokenizer.from_state(json.loads(json.dumps(tok.state())))


def test_word_vocabulary_min_count_max_size_and_unknown():
    tok = fit_tokenizer(TEXTS, "word", min_count=2)
    assert tok.itos[:4] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert tok.itos[4:] == ["film", "good", "the"]  # by count, then by token
    assert tok.split("Isn't it?") == ["isn't", "it", "?"]
    assert tok.encode("the bad film") == [tok.stoi["the"], UNK, tok.stoi["film"]]
    assert len(fit_tokenizer(TEXTS, "word", max_size=6)) == 6
    with pytest.raises(UserError, match="--min-count"):
        fit_tokenizer(TEXTS, min_count=0)


def test_case_is_kept_when_asked():
    tok = fit_tokenizer(TEXTS, "word", lowercase=False)
    assert "The" in tok.stoi and "A" in tok.stoi


def test_char_and_word_round_trip_through_json():
    for kind in ("word", "char"):
        tok = fit_tokenizer(TEXTS, kind)
        back = roundtrip(tok)
        assert back.encode("the good film") == tok.encode("the good film")
    char = fit_tokenizer(TEXTS, "char")
    assert char.decode(char.encode("the good film")) == "the good film"
    assert PAD not in char.encode("the")


def test_bpe_round_trips_text_exactly_and_survives_json():
    texts = [f"sentence number {i} with some words, repeated words." for i in range(200)]
    tok = fit_tokenizer(texts, "bpe", lowercase=False, vocab_size=120)
    ids = tok.encode("sentence number 7  with words.")
    assert tok.decode(ids) == "sentence number 7  with words."
    assert len(tok) <= 120
    assert roundtrip(tok).encode("some words") == tok.encode("some words")
    lower = fit_tokenizer(texts, "bpe", lowercase=True, vocab_size=120)
    assert lower.encode("WORDS") == lower.encode("words")


def test_damaged_state_is_a_user_error():
    with pytest.raises(UserError, match="tokenizer"):
        TextTokenizer.from_state({"kind": "bpe", "lowercase": False, "bpe": "{not json"})
    with pytest.raises(UserError, match="--tokenizer"):
        TextTokenizer.from_state({"kind": "morse", "lowercase": False, "tokens": []})


def test_contractions_split_as_in_the_penn_treebank():
    tok = fit_tokenizer(["It's not bad, it doesn't bore; we're sure I'd go."], contractions=True)
    assert tok.split("It's good, doesn't it? can't won't we're I'm they've you'll he'd") == [
        "it", "'s", "good", ",", "does", "n't", "it", "?", "ca", "n't", "wo", "n't",
        "we", "'re", "i", "'m", "they", "'ve", "you", "'ll", "he", "'d",
    ]  # fmt: skip
    # other apostrophes stay inside words or are punctuation of their own
    assert tok.split("o'brien said 'hello'") == ["o'brien", "said", "'", "hello", "'"]
    assert "n't" in tok.stoi and "doesn't" not in tok.stoi
    back = roundtrip(tok)
    assert back.contractions and back.encode("isn't it") == tok.encode("isn't it")
    cased = fit_tokenizer(TEXTS, lowercase=False, contractions=True)
    assert cased.split("DON'T") == ["DO", "N'T"]
    # older checkpoints have no "contractions" key: they keep whole words
    old = TextTokenizer.from_state({"kind": "word", "lowercase": True, "tokens": ["<pad>"]})
    assert old.split("isn't") == ["isn't"]
    with pytest.raises(UserError, match="--tokenizer word"):
        fit_tokenizer(TEXTS, "char", contractions=True)
