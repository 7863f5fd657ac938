"""The word-level corpus built from Multi30k: PTB-style tokens, <unk> by training frequency,
counts with one <eos> per line, and the recommended command's options all exist."""

import gzip
import json
from pathlib import Path

import pytest

from lstmkit.experiments.word_lm import RECOMMENDED, SPLITS, command, prepare, pretokenize
from lstmkit.utils.errors import UserError

MULTI30K = Path(__file__).resolve().parents[2].parent / "shared/data/multi30k"


def test_pretokenize_splits_punctuation_and_clitics_as_the_penn_treebank():
    assert pretokenize('A man\'s "well-known" dog isn\'t here, Mr. Smith.') == [
        "a", "man", "'s", '"', "well-known", '"', "dog", "is", "n't", "here", ",",
        "mr", ".", "smith", ".",
    ]  # fmt: skip


def _write(folder: Path, lines: dict[str, list[str]]) -> None:
    for split, name in SPLITS.items():
        with gzip.open(folder / name, "wt", encoding="utf-8") as f:
            f.write("\n".join(lines[split]) + "\n")


def test_prepare_replaces_rare_training_words_in_every_split(tmp_path):
    _write(
        tmp_path,
        {
            "train": ["A dog runs.", "A dog sits.", "A cat runs!"],
            "valid": ["A bird runs."],
            "test": ["The dog's ball."],
        },
    )
    stats = prepare(tmp_path, tmp_path / "out", min_count=2)
    out = tmp_path / "out"
    assert (out / "train.txt").read_text() == ("a dog runs .\na dog <unk> .\na <unk> runs <unk>\n")
    assert (out / "valid.txt").read_text() == "a <unk> runs .\n"
    assert (out / "test.txt").read_text() == "<unk> dog <unk> <unk> .\n"
    assert stats["vocab"] == 4 + 2  # a dog runs . + <unk> <eos>
    assert stats["splits"]["train"] == {
        "lines": 3, "words": 12, "tokens": 15, "unk": 3, "unk_share": 0.25,
    }  # fmt: skip
    assert json.loads((out / "stats.json").read_text()) == stats
    assert prepare(tmp_path, tmp_path / "o2", max_vocab=4)["vocab"] == 4  # a, dog + <unk> <eos>
    with pytest.raises(UserError, match="--src: .*nowhere.*not found"):
        prepare(tmp_path / "nowhere", tmp_path / "o3")


def test_recommended_command_parses(tmp_path):
    from lstmkit.cli.main import cli_main

    args = command(tmp_path) + ["--help"]
    assert cli_main(args) == 0
    assert "--unk-token" in RECOMMENDED and "--tie-weights" in RECOMMENDED


@pytest.mark.skipif(not MULTI30K.exists(), reason=f"no Multi30k at {MULTI30K} (shared data)")
def test_multi30k_corpus_counts(tmp_path):
    stats = prepare(MULTI30K, tmp_path)
    assert stats["vocab"] == 5927
    assert stats["splits"]["train"]["lines"] == 29000
    assert stats["splits"]["train"]["tokens"] == 406584
    text = (tmp_path / "train.txt").read_text()
    assert sum(len(line.split()) + 1 for line in text.splitlines()) == 406584
