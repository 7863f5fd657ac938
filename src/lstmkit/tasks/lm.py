"""Language modelling: predict the next character or word of a text.

The model (:class:`LanguageModel`) embeds tokens, runs them through the recurrent encoder of
:mod:`lstmkit.models.encoder` (so every :class:`lstmkit.LSTM` variant and option works, weight
drop included) and reads out a distribution over the vocabulary, optionally with the output
matrix tied to the embedding. Training uses truncated backpropagation through time: the hidden
state is carried from one step to the next (see :mod:`lstmkit.data.corpus` for the layout).

Metrics, with :math:`N` the number of predicted tokens of a split and :math:`W` its number of
predicted words in the word-level benchmarks' convention (whitespace-separated words plus one
``<eos>`` per line, the first word of the split not predicted: :func:`lstmkit.data.corpus.
count_words` minus 1):

.. math::
    \\text{loss} = -\\frac{1}{N}\\sum_{t=1}^{N} \\ln p(x_t \\mid x_{<t}) \\quad
    \\text{(nats per token)}, \\qquad
    \\text{ppl} = e^{\\text{loss}}, \\qquad
    \\text{word\\_ppl} = e^{N \\cdot \\text{loss} / W}, \\qquad
    \\text{bpc} = \\text{loss} / \\ln 2 \\quad \\text{(bits per character, character tokens)}.

``ppl`` is per token, and what one token is depends on ``--tokenizer`` (the ``token`` entry of
the metrics and of the data report says it). ``word_ppl`` is the same likelihood spread over the
words, the number to put beside a paper's word-level perplexity; for ``whitespace`` tokens on a
pre-tokenized corpus (PTB, WikiText) the tokens are those words and the two are equal. For the
``word`` regex or ``bpe`` pieces, ``ppl`` is per piece and looks better than it is: the
split-off pieces (``'`` ``s``, ``-``, ``.``) are nearly free to predict.

The read-out is a full softmax over the vocabulary or, with ``--adaptive-softmax CUTOFFS``,
torch's adaptive softmax (Grave et al. 2017, :class:`torch.nn.AdaptiveLogSoftmaxWithLoss`): the
vocabulary is ordered by training frequency, so the cutoffs split it into a frequent head and
rarer clusters that cost less per token.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from lstmkit.data.corpus import (
    CorpusText,
    StreamLayout,
    count_words,
    encode_stream,
    parse_paths,
    read_corpus,
    split_text,
)
from lstmkit.data.text import check_encoding
from lstmkit.data.tokenize import BOS, EOS, PAD, UNK, TextTokenizer, fit_tokenizer
from lstmkit.models.lm import LanguageModel, LMModelConfig, detach_state
from lstmkit.tasks.base import Task, register
from lstmkit.utils.errors import UserError
from lstmkit.utils.meta import help_meta as _help

TOKENIZERS = ("char", "word", "bpe", "whitespace")
TOKEN_UNITS = {
    "char": "character (newlines included)",
    "word": "regex piece (\\w+(?:'\\w+)*|[^\\w\\s]) or </s> per non-empty line",
    "bpe": "BPE piece or </s> per non-empty line",
    "whitespace": "whitespace-separated word or <eos> per line",
}
"""What one token of each tokenizer is: the unit of ``loss`` and ``ppl``."""
INSPECT_MAX = 200
ON_UNKNOWN = ("error", "unk", "drop")


# ----------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class LMConfig:
    """Data and tokens of ``lstmkit train lm``."""

    train: str = field(
        default="", metadata=_help("training text file(s), comma-separated (plain or .gz)")
    )
    valid: str = field(
        default="",
        metadata=_help("validation text file(s); default: the last --valid-fraction of --train"),
    )
    test: str = field(
        default="",
        metadata=_help("test text file(s); default: the last --test-fraction of --train"),
    )
    valid_fraction: float = field(
        default=0.1,
        metadata=_help("share of the training text held out for validation when no --valid"),
    )
    test_fraction: float = field(
        default=0.0,
        metadata=_help("share of the training text held out for testing when no --test (0: none)"),
    )
    encoding: str = field(default="utf-8", metadata=_help("text encoding of the files"))
    tokenizer: str = field(
        default="char",
        metadata=_help(
            "char (newlines kept), word (regex pieces + </s> per line), bpe, or whitespace "
            "(a pre-tokenized corpus such as PTB/WikiText: its words + <eos> per line)",
            choices=TOKENIZERS,
        ),
    )
    unk_token: str = field(
        default="<unk>",
        metadata=_help(
            "the data's own unknown-word token (word/whitespace): read as the model's <unk>, "
            "counted as unknown, kept whole; '' for none"
        ),
    )
    lowercase: bool = field(default=False, metadata=_help("lower-case the text first"))
    min_count: int = field(
        default=1, metadata=_help("tokens seen fewer times in training become <unk>")
    )
    max_vocab: int = field(default=0, metadata=_help("keep the N most frequent tokens; 0: all"))
    vocab_size: int = field(default=8000, metadata=_help("BPE vocabulary size (bpe only)"))
    seq_len: int = field(
        default=128, metadata=_help("truncated-BPTT length: tokens per stream and step")
    )
    eval_streams: int = field(
        default=16,
        metadata=_help("parallel streams the evaluation text is cut into (state carried)"),
    )


class LMBatch(NamedTuple):
    inputs: Tensor
    """(B, T) token ids."""
    targets: Tensor
    """(B, T) the next token of each input."""
    step: int
    chunk: int
    """Chunk of the pass; 0 starts a pass (zero state)."""


# ----------------------------------------------------------------------------- task


@register
class LanguageModelTask(Task):
    """Character or word language model on your text files, trained with truncated
    backpropagation through time (the state carried across batches). Metrics: loss (nats per
    token), perplexity, bits per character. Sample text with `lstmkit generate RUN --prompt`.

    Example: lstmkit train lm --train ../shared/data/tinyshakespeare/input.txt --threads 1

    Word level, on a pre-tokenized corpus (PTB/WikiText style; python -m
    lstmkit.experiments.word_lm prepare makes one): --tokenizer whitespace (one token per word,
    <eos> per line, the data's <unk> is the model's); word_ppl is the perplexity per word to put
    beside a paper's. --adaptive-softmax 1000,3000 for a cheaper read-out.

    Validation text: --valid files, or the last --valid-fraction of the training text (nanoGPT's
    90/10 split by default). The carried state is saved with the resumable checkpoint, so a
    resumed run continues it (in one process; under DDP a resumed run restarts it from zero);
    every new pass over the data starts from a zero state.
    """

    name = "lm"
    capabilities = frozenset({"predict", "evaluate", "inspect", "generate"})
    checkpoint_state = ("tokenizer",)
    prints_data_summary = True  # "lm: read FILE: ..." when the text is read
    summary = "text files as a character or word language model (then lstmkit generate)"
    split_options = "--test or --test-fraction"
    Config = LMConfig
    ModelConfig = LMModelConfig
    metric = "loss"
    mode = "min"
    train_defaults = {
        "lr": 2e-3,
        "batch_size": 32,
        "steps": 10000,
        "eval_every": 500,
        "schedule": "cosine",
        "warmup_steps": 100,
    }

    def __init__(self, cfg: LMConfig, model_cfg: LMModelConfig, state: dict | None = None):
        super().__init__(cfg, model_cfg, state)
        check_encoding(cfg.encoding)
        for name in ("valid_fraction", "test_fraction"):
            v = getattr(cfg, name)
            if not 0 <= v < 1:
                raise UserError(f"--{name.replace('_', '-')} must be in [0, 1), got {v}")
        if cfg.valid_fraction + cfg.test_fraction >= 1:
            raise UserError("--valid-fraction plus --test-fraction must leave training text")
        for name in ("seq_len", "eval_streams"):
            if getattr(cfg, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1")
        if state is None and not cfg.valid and cfg.valid_fraction == 0:
            raise UserError(_NO_VALID.format(where="--valid-fraction 0 and no --valid"))
        state = state or {}
        self._tok: TextTokenizer | None = None
        if "tokenizer" in state:
            self._tok = TextTokenizer.from_state(state["tokenizer"])
        elif not cfg.train:
            raise UserError("--train: give the training text file(s)")
        self._data_stats: dict = dict(state.get("data", {}))
        self._splits: dict[str, np.ndarray] | None = None
        self._carry: tuple[int, Any] | None = None  # (step, state after that step)
        self._files: dict[str, tuple[np.ndarray, int]] = {}  # evaluate --data: (ids, words)

    # ----- data, loaded on first use
    @property
    def tokenizer(self) -> TextTokenizer:
        if self._tok is None:
            self._load()
        return self._tok

    def state(self) -> dict:
        return {"tokenizer": self.tokenizer.state(), "data": self._data_stats}

    def _read(self, spec: str, option: str) -> CorpusText:
        return read_corpus(parse_paths(spec, option), self.cfg.encoding)

    def _load(self) -> dict[str, np.ndarray]:
        if self._splits is not None:
            return self._splits
        cfg = self.cfg
        if not cfg.train:
            raise UserError(
                "this model was rebuilt from a checkpoint without its training files; "
                "evaluation needs --train (and --valid/--test) of the run to exist"
            )
        corpus = self._read(cfg.train, "--train")
        texts = {"train": corpus.text, "valid": "", "test": ""}
        stats = {"train": _text_stats(corpus)}
        fractions = (
            0.0 if cfg.valid else cfg.valid_fraction,
            0.0 if cfg.test else cfg.test_fraction,
        )
        if any(fractions):
            texts["train"], texts["valid"], texts["test"] = split_text(
                corpus.text, *fractions, at_line_end=cfg.tokenizer != "char"
            )
        for split in ("valid", "test"):
            spec = getattr(cfg, split)
            if spec:
                other = self._read(spec, f"--{split}")
                texts[split] = other.text
                stats[split] = _text_stats(other)
        if self._tok is None:
            self._tok = fit_tokenizer(
                [texts["train"]] if cfg.tokenizer == "char" else texts["train"].split("\n"),
                cfg.tokenizer,
                lowercase=cfg.lowercase,
                min_count=cfg.min_count,
                max_size=cfg.max_vocab,
                vocab_size=cfg.vocab_size,
                unk_token=cfg.unk_token if cfg.tokenizer in ("word", "whitespace") else "",
            )
        tok = self._tok
        splits = {k: encode_stream(tok, v) for k, v in texts.items()}
        if len(splits["train"]) < 2:
            raise UserError(f"--train: {cfg.train} has fewer than 2 tokens to learn from")
        if len(splits["valid"]) < 2:
            where = (
                f"--valid {cfg.valid}"
                if cfg.valid
                else f"the last --valid-fraction {cfg.valid_fraction:g} of --train"
            )
            raise UserError(_NO_VALID.format(where=f"{where} gives {len(splits['valid'])} tokens"))
        self._words = {k: count_words(v) for k, v in texts.items()}
        specials = set(range(4)) - {UNK, EOS}
        seen = np.unique(splits["train"])
        summary = {
            "tokens": {k: int(len(v)) for k, v in splits.items()},
            "words": dict(self._words),
            "unk": {k: int((v == UNK).sum()) for k, v in splits.items()},
            "vocab": len(tok),
            # the word types of the training text, its <unk> and <eos> included, as the
            # benchmarks count their vocabulary (PTB: 10,000); the model's vocabulary adds the
            # special tokens it never sees
            "types": int(sum(1 for i in seen.tolist() if i not in specials)),
            "token": TOKEN_UNITS[tok.kind],
        }
        self._data_stats = {**stats, **summary}
        self._splits = splits
        empty = {"char": ", kept as newlines", "whitespace": ", one <eos> each"}
        _note(
            f"lm: read {', '.join(corpus.files)}: {len(corpus.text):,} characters, "
            f"{corpus.lines:,} lines ({corpus.empty_lines:,} empty"
            + empty.get(cfg.tokenizer, ", skipped")
            + (f"; {corpus.crlf:,} \\r\\n line ends read as \\n" if corpus.crlf else "")
            + f"); one token = one {TOKEN_UNITS[tok.kind]} ({cfg.tokenizer}); vocabulary "
            + f"{len(tok):,} ({summary['types']:,} types in the training text); tokens "
            + ", ".join(f"{k} {n:,}" for k, n in summary["tokens"].items())
            + "; words (+ <eos> per line) "
            + ", ".join(f"{k} {n:,}" for k, n in summary["words"].items())
            + "; <unk> "
            + ", ".join(f"{k} {n:,}" for k, n in summary["unk"].items())
            + (f" (--unk-token {tok.unk_token} in the data included)" if tok.unk_token else "")
        )
        return splits

    def data_report(self) -> dict:
        """Characters, lines and empty lines of the files read (``train_files_*`` for the
        --train files, before the validation and test text is cut off them), tokens and
        ``<unk>`` per split, vocabulary size."""
        self._load()
        out: dict = {}
        for split in ("train", "valid", "test"):
            for key, value in self._data_stats.get(split, {}).items():
                if key != "files":
                    out[f"{split}_files_{key}"] = value
        for key in ("tokens", "words", "unk"):
            for split, n in self._data_stats.get(key, {}).items():
                out[f"{split}_{key}"] = n
        out["vocab"] = self._data_stats.get("vocab", len(self.tokenizer))
        for key in ("types", "token"):
            if key in self._data_stats:
                out[key] = self._data_stats[key]
        return out

    # ----- training
    def build_model(self) -> nn.Module:
        return LanguageModel(self.model_cfg, len(self.tokenizer))

    def layout(self, batch_size: int) -> StreamLayout:
        layout = StreamLayout(len(self._load()["train"]), batch_size, self.cfg.seq_len)
        layout.check()
        return layout

    def train_batch(self, step, seed, batch_size, rank, world):
        x, y, chunk = self.layout(batch_size).batch(self._load()["train"], step, seed, rank, world)
        return LMBatch(torch.from_numpy(x).long(), torch.from_numpy(y).long(), step, chunk)

    def batch_tokens(self, batch: LMBatch) -> int:
        return batch.targets.numel()

    def loss(self, model, batch: LMBatch) -> Tensor:
        # The state carried from the previous step is the right start only when this batch is
        # the next chunk of the same streams: not at a pass start, nor after a resume.
        state = None
        if self._carry is not None and batch.chunk > 0 and self._carry[0] == batch.step - 1:
            state = self._carry[1]
            device = batch.inputs.device  # a state restored on resume is on the CPU
            state = (
                state.to(device)
                if isinstance(state, Tensor)
                else tuple(s.to(device) for s in state)
            )
        nll, new_state = model(batch.inputs, state, batch.targets)
        self._carry = (batch.step, detach_state(new_state))
        return nll.mean()

    def carried_tensors(self) -> dict[str, Tensor]:
        if self._carry is None:
            return {}
        step, state = self._carry
        parts = [state] if isinstance(state, Tensor) else list(state)
        return {
            "lm_step": torch.tensor([step]),
            **{f"lm_state.{i}": p for i, p in enumerate(parts)},
        }

    def load_carried_tensors(self, tensors: dict[str, Tensor]) -> None:
        if "lm_step" not in tensors:  # a checkpoint of an older version, or of step 0
            return
        # cloned: a tensor read from the file may be laid out (aligned) otherwise than torch's
        # own, and the matrix kernels can round differently on it
        parts = [tensors[f"lm_state.{i}"].clone() for i in range(len(tensors) - 1)]
        state = parts[0] if len(parts) == 1 else tuple(parts)
        self._carry = (int(tensors["lm_step"].item()), state)

    def split_source(self, split: str) -> str:
        c = self.cfg
        given = getattr(c, split, "")
        if split not in ("valid", "test") or given:
            return f"--{split} {given}" if given else ""
        share = c.valid_fraction if split == "valid" else c.test_fraction
        return f"the last {100 * share:g}% of --train {c.train}" if share else ""

    def use_data(self, path, **options) -> str:
        """Text file(s) (comma-separated, plain or .gz) scored as one stream, as --test is."""
        cfg = self.read_config(options)
        check_encoding(cfg.encoding)
        corpus = read_corpus(parse_paths(path, "--data"), cfg.encoding)
        ids = encode_stream(self.tokenizer, corpus.text)
        if len(ids) < 2:
            raise UserError(f"--data: {path} has {len(ids)} tokens; at least 2 are scored")
        self._files["data"] = (ids, count_words(corpus.text))
        return "data"

    def evaluate(self, model, split, device):
        if split in self._files:
            ids, words = self._files[split]
        else:
            ids = self._load()[split]
            words = self._words[split] if len(ids) >= 2 else 0
        if len(ids) < 2:
            return {}
        total, count = stream_nll(model, ids, self.cfg.eval_streams, self.cfg.seq_len, device)
        return self.metrics(total, count, words - 1)

    def metrics(self, total_nll: float, count: int, words: int) -> dict[str, float | str]:
        """``loss`` and ``ppl`` per token, ``word_ppl`` per word (``words`` predicted words),
        ``bpc`` per character (character tokens); see the module docstring."""
        loss = total_nll / max(count, 1)
        out: dict[str, float | str] = {"loss": loss, "ppl": math.exp(min(loss, 700.0))}
        out["word_ppl"] = math.exp(min(total_nll / max(words, 1), 700.0))
        if self.tokenizer.kind == "char":
            out["bpc"] = loss / math.log(2)
        out["tokens"] = float(count)
        out["words"] = float(words)
        out["token"] = TOKEN_UNITS[self.tokenizer.kind]
        return out

    # ----- using a trained model
    def encode_prompt(self, prompt: str, on_unknown: str = "error") -> list[int]:
        """Token ids of ``prompt``; tokens outside the vocabulary raise an error naming them
        (``error``), become ``<unk>`` (``unk``) or are left out (``drop``), counted on stderr."""
        if on_unknown not in ON_UNKNOWN:
            raise UserError(f"--on-unknown must be one of {', '.join(ON_UNKNOWN)}")
        tok = self.tokenizer
        if tok.kind == "char":
            prompt = prompt.lower() if tok.lowercase else prompt
            pieces = list(prompt)
            ids = [tok.stoi.get(c, UNK) for c in pieces]
        elif tok.kind in ("word", "whitespace"):
            lines = prompt.split("\n")
            pieces, ids = [], []
            for k, line in enumerate(lines):
                words = tok.split(line)
                pieces += words
                ids += [UNK if w == tok.unk_token else tok.stoi.get(w, UNK) for w in words]
                if k < len(lines) - 1:
                    pieces.append("\n")
                    ids.append(EOS)
        else:
            ids = tok.encode(prompt)
            pieces = tok.split(prompt)
        unknown = [p for p, i in zip(pieces, ids, strict=True) if i == UNK and p != tok.unk_token]
        if unknown:
            shown = ", ".join(dict.fromkeys(_show(u) for u in unknown))
            if on_unknown == "error":
                raise UserError(
                    f"--prompt: {len(unknown)} token(s) not in the model's vocabulary: {shown}; "
                    "pass --on-unknown unk (read as <unk>) or drop (leave them out)"
                )
            what = "read as <unk>" if on_unknown == "unk" else "left out"
            _note(f"generate: {len(unknown)} prompt token(s) not in the vocabulary {what}: {shown}")
            if on_unknown == "drop":
                ids = [i for i in ids if i != UNK]
        return ids

    def start_ids(self, prompt_ids: list[int]) -> list[int]:
        """What generation conditions on: a line end, then the prompt.

        The model was trained on streams whose state is almost always warm (it is reset only
        at pass starts), so a bare zero state is a situation it has hardly seen: from one,
        "ROMEO:" continued greedily as "SLABELT:" on tinyshakespeare, and after a line end as
        a new line of verse. So the prompt is read as the start of a line of the text.
        """
        tok = self.tokenizer
        if tok.kind in ("word", "whitespace"):
            line_end: int | None = EOS
        else:
            line_end = tok.stoi.get("\n")
        if line_end is None:
            if prompt_ids:
                return prompt_ids
            raise UserError("--prompt: give a prompt (this vocabulary has no line end)")
        if prompt_ids[:1] == [line_end]:
            return prompt_ids
        return [line_end, *prompt_ids]

    def echo(self, prompt: str) -> str:
        """The prompt as printed before the generated text (words get a separating space)."""
        if self.tokenizer.kind in ("word", "whitespace") and prompt and not prompt[-1].isspace():
            return prompt + " "
        return prompt

    def piece(self, token: int) -> str:
        """Text of one generated token, as printed while streaming."""
        tok = self.tokenizer
        if tok.kind == "char":
            return tok.itos[token]
        if tok.kind in ("word", "whitespace"):
            return "\n" if token == EOS else tok.itos[token] + " "
        return tok.decode([token])

    def generate(
        self,
        model: nn.Module,
        prompt_ids: list[int],
        length: int,
        *,
        temperature: float = 1.0,
        top_k: int = 0,
        seed: int | None = None,
        device: torch.device | None = None,
    ) -> Iterator[int]:
        """Sample ``length`` tokens after ``prompt_ids``, yielding each as it is drawn.

        Logits are divided by ``temperature`` (0: always the most likely token) and cut to the
        ``top_k`` most likely (0: all). ``<pad>``, ``<unk>`` and ``<s>`` are never drawn. The
        same ``seed`` gives the same tokens.
        """
        if length < 0:
            raise UserError(f"--length must be >= 0, got {length}")
        if temperature < 0:
            raise UserError(f"--temperature must be >= 0, got {temperature}")
        if top_k < 0:
            raise UserError(f"--top-k must be >= 0, got {top_k}")
        device = device or torch.device("cpu")
        gen = torch.Generator(device=device)
        gen.manual_seed(seed if seed is not None else torch.seed())
        ids = self.start_ids(prompt_ids)
        model.eval()
        banned = torch.tensor([PAD, UNK, BOS], device=device)
        with torch.no_grad():
            logits, state = model(torch.tensor([ids], device=device), None)
            for _ in range(length):
                last = logits[0, -1].float()
                last[banned[banned < last.numel()]] = -math.inf
                token = _sample(last, temperature, top_k, gen)
                yield token
                logits, state = model(torch.tensor([[token]], device=device), state)

    def predict(self, model, inputs, device):
        out = []
        for text in inputs:
            ids = np.asarray(self.encode_prompt(text, "unk"), dtype=np.int32)
            if len(ids) < 2:
                raise UserError(f"predict: {text!r} has fewer than 2 tokens to score")
            total, count = stream_nll(model, ids, 1, self.cfg.seq_len, device)
            # the prompt's words and its line ends (no <eos> after the last line), less the first
            words = len(text.split()) + text.count("\n") - 1
            out.append({"text": text, **self.metrics(total, count, words)})
        return out

    def inspect(self, model, inputs, out, device):
        """One PNG per input: the gates and cell state of the top LSTM layer over the text's
        tokens (the first ``INSPECT_MAX`` tokens; the rest are left out and counted)."""
        from lstmkit.nn import LSTM, record_gates
        from lstmkit.viz import plot_gates

        if not isinstance(model.encoder, LSTM):
            raise UserError(
                f"inspect needs an LSTM model (this one is --cell {self.model_cfg.encoder.cell})"
            )
        paths = []
        for k, text in enumerate(inputs or self.examples()[:1]):
            ids = self.encode_prompt(text, "unk")
            if not ids:
                raise UserError(f"inspect: input {k + 1} is empty")
            if len(ids) > INSPECT_MAX:
                _note(
                    f"inspect: input {k + 1} has {len(ids)} tokens; plotting the first "
                    f"{INSPECT_MAX}"
                )
                ids = ids[:INSPECT_MAX]
            with torch.no_grad(), record_gates(model) as rec:
                model(torch.tensor([ids], device=device), None)
            trace = rec[model.encoder.num_layers - 1, 0]
            gates = {g: getattr(trace, g)[0].cpu() for g in ("i", "f", "o", "c")}
            labels = [self.piece(i).strip() or repr(self.piece(i))[1:-1] for i in ids]
            paths.append(
                plot_gates(
                    gates,
                    Path(out) / f"gates-{k + 1}.png",
                    step_labels=labels,
                    title=f"lm: top layer ({model.encoder.num_layers}) over {len(ids)} tokens",
                )
            )
        return paths

    def examples(self) -> list[str]:
        return ["ROMEO:\nWhat light through yonder window breaks?"]


def _sample(logits: Tensor, temperature: float, top_k: int, gen: torch.Generator) -> int:
    if temperature == 0:
        return int(logits.argmax())
    logits = logits / temperature
    if top_k:
        k = min(top_k, logits.numel())
        kth = torch.topk(logits, k).values[-1]
        logits = logits.masked_fill(logits < kth, -math.inf)
    probs = torch.softmax(logits, -1)
    return int(torch.multinomial(probs, 1, generator=gen))


def stream_nll(
    model: nn.Module, ids: np.ndarray, streams: int, seq_len: int, device: torch.device
) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) of ``ids[1:]`` given what precedes each token.

    The inputs ``ids[:-1]`` are cut into ``streams`` contiguous pieces, run side by side in
    chunks of ``seq_len`` with the state carried, so every token but the first of a piece sees
    its whole piece as context.
    """
    x_all, y_all = ids[:-1].astype(np.int64), ids[1:].astype(np.int64)
    n = len(x_all)
    streams = max(1, min(streams, n))
    bounds = np.linspace(0, n, streams + 1).round().astype(int)
    width = int(np.diff(bounds).max())
    x = np.zeros((streams, width), dtype=np.int64)
    y = np.full((streams, width), -100, dtype=np.int64)  # -100: cross_entropy's ignore_index
    for b in range(streams):
        piece = slice(bounds[b], bounds[b + 1])
        x[b, : piece.stop - piece.start] = x_all[piece]
        y[b, : piece.stop - piece.start] = y_all[piece]
    x_t, y_t = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    total, state = 0.0, None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for s in range(0, width, seq_len):
                nll, state = model(x_t[:, s : s + seq_len], state, y_t[:, s : s + seq_len])
                total += float(nll.float().sum())
    finally:
        model.train(was_training)
    return total, n


_NO_VALID = (
    "no validation text ({where}): training keeps the best checkpoint and stops early by the "
    "validation loss; give --valid FILE or a --valid-fraction above 0"
)


def _text_stats(c: CorpusText) -> dict:
    return {
        "files": c.files,
        "characters": len(c.text),
        "lines": c.lines,
        "empty_lines": c.empty_lines,
        "crlf_line_ends": c.crlf,
    }


def _show(token: str) -> str:
    if len(token) == 1 and not token.isprintable() or token.isspace():
        return f"U+{ord(token[0]):04X}" if len(token) == 1 else repr(token)
    if len(token) == 1 and ord(token) > 127:
        return f"{token!r} (U+{ord(token):04X})"
    return repr(token)


def _note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
