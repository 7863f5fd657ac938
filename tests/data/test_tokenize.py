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


# a pre-tokenized corpus in the PTB/WikiText style: rare words are already <unk>
PRETOKENIZED = [
    "mr. smith 's well-known <unk> is n't here",
    "the <unk> 's firm said mr. jones",
    "",
    "well-known firm",
]


def test_whitespace_tokens_are_the_words_of_a_pretokenized_corpus():
    tok = fit_tokenizer(PRETOKENIZED, "whitespace", lowercase=False)
    words = [w for line in PRETOKENIZED for w in line.split()]
    assert tok.split(PRETOKENIZED[0]) == PRETOKENIZED[0].split()
    # the data's <unk> is the model's <unk>: no vocabulary entry of its own, encoded as UNK
    types = set(words) - {"<unk>"}
    assert sorted(tok.itos[4:]) == sorted(types) and len(tok) == 4 + len(types)
    ids = tok.encode(PRETOKENIZED[1])
    assert ids[1] == UNK and ids.count(UNK) == 1 and len(ids) == 7
    assert tok.itos[3] == "<eos>"  # the end-of-line token, named as the benchmarks name it
    assert tok.decode(tok.encode("mr. jones 's")) == "mr. jones 's"
    back = roundtrip(tok)
    assert back.kind == "whitespace" and back.encode(PRETOKENIZED[0]) == tok.encode(PRETOKENIZED[0])
    # the regex word tokenizer cuts every one of these words in pieces
    assert len(fit_tokenizer(PRETOKENIZED, "word").split(PRETOKENIZED[0])) == 14


def test_another_unknown_token_of_the_data_is_the_models_unknown():
    texts = ["a UNK b", "b UNK UNK c"]
    tok = fit_tokenizer(texts, "whitespace", unk_token="UNK")
    assert "UNK" not in tok.stoi and tok.encode("a UNK c") == [tok.stoi["a"], UNK, tok.stoi["c"]]
    assert roundtrip(tok).encode("UNK") == [UNK]
    plain = fit_tokenizer(texts, "whitespace")
    assert "unk" in plain.stoi  # lower-cased and kept as a word when not named
    # the regex word tokenizer keeps the named token whole instead of cutting it in three
    word = fit_tokenizer(["the <unk> 's firm"], "word", unk_token="<unk>")
    assert word.split("the <unk> 's firm") == ["the", "<unk>", "'", "s", "firm"]
    assert word.encode("the <unk>") == [word.stoi["the"], UNK]
    assert fit_tokenizer(["the <unk>"], "word").split("the <unk>") == ["the", "<", "unk", ">"]
    with pytest.raises(UserError, match="--unk-token 'a b'"):
        fit_tokenizer(texts, "whitespace", unk_token="a b")


def test_whitespace_tokenizer_counts_words_and_lowercases():
    tok = fit_tokenizer(["The Cat  sat\tdown"], "whitespace")
    assert tok.split("The Cat  sat\tdown") == ["the", "cat", "sat", "down"]
    with pytest.raises(UserError, match="--tokenizer must be one of word, char, bpe, whitespace"):
        TextTokenizer("space", False)
