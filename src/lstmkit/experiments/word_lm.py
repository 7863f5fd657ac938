"""A word-level language-modelling corpus in the Penn Treebank / WikiText format, built from the
English side of Multi30k, and the configuration to start from.

There is no PTB or WikiText in ``../shared/data``; ``prepare`` makes a corpus of the same kind:
one sentence per line, lower-cased, punctuation split off consistently (``.`` ``,`` ``"`` and the
clitics ``'s`` ``n't`` ``'re`` ... become tokens of their own, as in the Penn Treebank; hyphenated
words stay whole, as in PTB), and every word seen fewer than ``--min-count`` times in the training
text (or outside the ``--max-vocab`` most frequent) replaced by ``<unk>``, in all three splits. Such
a corpus is read with ``lstmkit train lm --tokenizer whitespace`` (one token per word, ``<eos>``
per line, ``<unk>`` is the model's unknown word), and its ``word_ppl`` is comparable to the
word-level perplexities papers report for their corpora::

    python -m lstmkit.experiments.word_lm prepare [--src ../shared/data/multi30k] [--out DIR]
    python -m lstmkit.experiments.word_lm command [--data DIR]   # the training command

The training command is :data:`RECOMMENDED`: a 2-layer LSTM with tied embedding and read-out and
the AWD-LSTM regularisers lstmkit has (embedding dropout, variational dropout on the LSTM input
and output, DropConnect on W_hh), sized for a few CPU-minutes; docs/RESULTS.md gives its result.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from collections import Counter
from pathlib import Path

from lstmkit.utils.errors import UserError

SRC = Path("../shared/data/multi30k")
OUT = Path("runs/word-lm-data")
SPLITS = {"train": "train.en.gz", "valid": "val.en.gz", "test": "test_2016_flickr.en.gz"}
UNK_TOKEN = "<unk>"

_CLITIC = r"(?:n't|'(?:s|re|ve|ll|d|m))\b"
# a word that a clitic follows gives up the clitic; hyphenated words stay whole (PTB keeps
# "well-known"); any other non-space character is a token of its own
TOKEN_RE = re.compile(rf"\w+?(?={_CLITIC})|{_CLITIC}|\w+(?:-\w+)*|[^\w\s]")

RECOMMENDED = (
    "--tokenizer whitespace --unk-token <unk> "
    "--hidden-size 256 --num-layers 2 --tie-weights "
    "--dropout-embed 0.1 --dropout-input 0.3 --dropout 0.2 --dropout-output 0.3 "
    "--weight-drop 0.2 --seq-len 35 --batch-size 32 --lr 3e-3 --weight-decay 1e-6 "
    "--clip-norm 0.25 --eval-every 200 --eval-streams 10"
).split()
"""``lstmkit train lm`` options of the word-level configuration to start from (add the data
files, ``--steps`` or ``--max-cpu-time``, ``--threads`` and ``--out``)."""


def pretokenize(line: str) -> list[str]:
    """The tokens of one line of raw English text, lower-cased, in the PTB style."""
    return TOKEN_RE.findall(line.lower())


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        raise UserError(f"--src: {path} not found (the Multi30k English files: {SPLITS})")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def prepare(
    src: Path = SRC, out: Path = OUT, *, min_count: int = 2, max_vocab: int = 10000
) -> dict:
    """Write ``train.txt``, ``valid.txt``, ``test.txt`` and ``stats.json`` under ``out``; returns
    the statistics (lines, words with one ``<eos>`` per line, ``<unk>``, vocabulary)."""
    if min_count < 1:
        raise UserError(f"--min-count must be >= 1, got {min_count}")
    if max_vocab < 2:
        raise UserError(f"--max-vocab must be >= 2 (<unk> and <eos> included), got {max_vocab}")
    tokenized = {
        split: [pretokenize(line) for line in _read_lines(Path(src) / name)]
        for split, name in SPLITS.items()
    }
    counts = Counter(w for line in tokenized["train"] for w in line)
    ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    # the vocabulary counts <unk> and <eos> as PTB's 10,000 does
    vocab = set(ranked[: max_vocab - 2])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stats: dict = {
        "src": str(src),
        "min_count": min_count,
        "max_vocab": max_vocab,
        "vocab": len(vocab) + 2,
        "splits": {},
    }
    for split, lines in tokenized.items():
        text_lines = [" ".join(w if w in vocab else UNK_TOKEN for w in line) for line in lines]
        (out / f"{split}.txt").write_text("\n".join(text_lines) + "\n", encoding="utf-8")
        words = sum(len(line) for line in lines)
        unk = sum(1 for line in lines for w in line if w not in vocab)
        stats["splits"][split] = {
            "lines": len(lines),
            "words": words,
            "tokens": words + len(lines),  # + one <eos> per line
            "unk": unk,
            "unk_share": round(unk / max(words, 1), 4),
        }
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return stats


def command(data: Path = OUT) -> list[str]:
    """The ``lstmkit train lm`` arguments of :data:`RECOMMENDED` on a prepared corpus."""
    files = ["--train", str(Path(data) / "train.txt"), "--valid", str(Path(data) / "valid.txt")]
    return ["train", "lm", *files, "--test", str(Path(data) / "test.txt"), *RECOMMENDED]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lstmkit.experiments.word_lm", description=__doc__)
    sub = p.add_subparsers(dest="verb", required=True)
    prep = sub.add_parser("prepare", help="write the pre-tokenized corpus")
    prep.add_argument("--src", type=Path, default=SRC, help="folder of the Multi30k files")
    prep.add_argument("--out", type=Path, default=OUT, help="folder to write (outside the repo)")
    prep.add_argument("--min-count", type=int, default=2, help="rarer training words -> <unk>")
    prep.add_argument("--max-vocab", type=int, default=10000, help="<unk> and <eos> included")
    cmd = sub.add_parser("command", help="print the recommended training command")
    cmd.add_argument("--data", type=Path, default=OUT, help="the prepared folder")
    a = p.parse_args(argv)
    try:
        if a.verb == "prepare":
            stats = prepare(a.src, a.out, min_count=a.min_count, max_vocab=a.max_vocab)
            print(f"wrote {a.out}: vocabulary {stats['vocab']:,} (<unk>, <eos> included)")
            for split, s in stats["splits"].items():
                print(
                    f"  {split}: {s['lines']:,} lines, {s['tokens']:,} tokens "
                    f"({s['words']:,} words + <eos>), <unk> {s['unk']:,} ({s['unk_share']:.1%})"
                )
        else:
            print("lstmkit " + " ".join(command(a.data)))
    except UserError as e:
        print(f"word_lm: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
