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

from lstmkit.data import prompt as text_io
from lstmkit.data.corpus import StreamLayout
from lstmkit.data.corpus_splits import (
    TOKEN_UNITS,
    CorpusSplits,
    encode_splits,
    fit_training_tokenizer,
    flat_report,
    read_split_texts,
    read_stream,
    summary_line,
)
from lstmkit.data.prompt import ON_UNKNOWN  # noqa: F401 (re-exported)
from lstmkit.data.text import check_encoding
from lstmkit.data.tokenize import TextTokenizer
from lstmkit.models.lm import LanguageModel, LMModelConfig, detach_state
from lstmkit.models.lm_decode import check_sampling, sample_tokens, stream_nll
from lstmkit.tasks.base import Task, register
from lstmkit.utils.errors import UserError
from lstmkit.utils.meta import help_meta as _help

TOKENIZERS = ("char", "word", "bpe", "whitespace")
INSPECT_MAX = 200


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
    capabilities = frozenset({"predict", "evaluate", "inspect", "generate", "export", "quantize"})
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
        _check_config(cfg, from_checkpoint=state is not None)
        state = state or {}
        self._tok: TextTokenizer | None = None
        if "tokenizer" in state:
            self._tok = TextTokenizer.from_state(state["tokenizer"])
        elif not cfg.train:
            raise UserError("--train: give the training text file(s)")
        self._data_stats: dict = dict(state.get("data", {}))
        self._splits: CorpusSplits | None = None
        self._carry: Carry | None = None  # the state after the last training step
        self._files: dict[str, tuple[np.ndarray, int]] = {}  # evaluate --data: (ids, words)

    # ----- data, loaded on first use
    @property
    def tokenizer(self) -> TextTokenizer:
        if self._tok is None:
            self._load()
        return self._tok

    def state(self) -> dict:
        return {"tokenizer": self.tokenizer.state(), "data": self._data_stats}

    def _load(self) -> dict[str, np.ndarray]:
        if self._splits is None:
            self._tok, self._splits = load_splits(self.cfg, self._tok)
            self._data_stats = self._splits.stats
        return self._splits.ids

    def data_report(self) -> dict:
        """Characters, lines and empty lines of the files read (``train_files_*`` for the
        --train files, before the validation and test text is cut off them), tokens and
        ``<unk>`` per split, vocabulary size."""
        self._load()
        return flat_report(self._data_stats, len(self.tokenizer))

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
        if self._carry is not None and batch.chunk > 0 and self._carry.step == batch.step - 1:
            state = self._carry.on(batch.inputs.device)  # a state restored on resume: CPU
        nll, new_state = model(batch.inputs, state, batch.targets)
        self._carry = Carry(batch.step, detach_state(new_state))
        return nll.mean()

    def carried_tensors(self) -> dict[str, Tensor]:
        return {} if self._carry is None else self._carry.tensors()

    def load_carried_tensors(self, tensors: dict[str, Tensor]) -> None:
        if "lm_step" in tensors:  # else a checkpoint of an older version, or of step 0
            self._carry = Carry.from_tensors(tensors)

    def split_source(self, split: str) -> str:
        return split_source(self.cfg, split)

    def use_data(self, path, **options) -> str:
        """Text file(s) (comma-separated, plain or .gz) scored as one stream, as --test is."""
        cfg = self.read_config(options)
        check_encoding(cfg.encoding)
        ids, words = read_stream(path, "--data", cfg.encoding, self.tokenizer)
        if len(ids) < 2:
            raise UserError(f"--data: {path} has {len(ids)} tokens; at least 2 are scored")
        self._files["data"] = (ids, words)
        return "data"

    def evaluate(self, model, split, device):
        if split in self._files:
            ids, words = self._files[split]
        else:
            ids = self._load()[split]
            words = self._splits.words[split] if len(ids) >= 2 else 0
        if len(ids) < 2:
            return {}
        total, count = stream_nll(model, ids, self.cfg.eval_streams, self.cfg.seq_len, device)
        return self.metrics(total, count, words - 1)

    def metrics(self, total_nll: float, count: int, words: int) -> dict[str, float | str]:
        """``loss`` and ``ppl`` per token, ``word_ppl`` per word (``words`` predicted words),
        ``bpc`` per character (character tokens); see the module docstring."""
        return lm_metrics(total_nll, count, words, self.tokenizer.kind)

    # ----- using a trained model (the text side in lstmkit.data.prompt)
    def encode_prompt(self, prompt: str, on_unknown: str = "error") -> list[int]:
        return text_io.encode_prompt(self.tokenizer, prompt, on_unknown)

    def start_ids(self, prompt_ids: list[int]) -> list[int]:
        return text_io.start_ids(self.tokenizer, prompt_ids)

    def echo(self, prompt: str) -> str:
        return text_io.echo(self.tokenizer, prompt)

    def piece(self, token: int) -> str:
        return text_io.piece(self.tokenizer, token)

    def generate(
        self, model, prompt_ids, length, *, temperature=1.0, top_k=0, seed=None, device=None
    ) -> Iterator[int]:
        """Sample ``length`` tokens after a line end and ``prompt_ids`` (:func:`start_ids`, then
        :func:`~lstmkit.models.lm_decode.sample_tokens`); ``<pad>``, ``<unk>`` and ``<s>`` are
        never drawn, nor ``</s>`` for characters (:func:`~lstmkit.data.prompt.never_drawn`)."""
        check_sampling(length, temperature, top_k)
        device = device or torch.device("cpu")
        ids = self.start_ids(prompt_ids)
        banned = text_io.never_drawn(self.tokenizer)
        yield from sample_tokens(model, ids, length, temperature, top_k, seed, banned, device)

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
        from lstmkit.nn import LSTM
        from lstmkit.viz.token_gates import plot_top_layer

        if not isinstance(model.encoder, LSTM):
            raise UserError(
                f"inspect needs an LSTM model (this one is --cell {self.model_cfg.encoder.cell})"
            )
        paths = []
        for k, text in enumerate(inputs or self.examples()[:1], 1):
            ids = _inspected(self.encode_prompt(text, "unk"), k)
            title = f"lm: top layer ({model.encoder.num_layers}) over {len(ids)} tokens"
            pieces, path = [self.piece(i) for i in ids], Path(out) / f"gates-{k}.png"
            paths.append(plot_top_layer(model, ids, pieces, path, device, title))
        return paths

    def examples(self) -> list[str]:
        return ["ROMEO:\nWhat light through yonder window breaks?"]


class Carry(NamedTuple):
    """The recurrent state after training step ``step``, carried into the next step's batch
    (truncated BPTT) and saved with the resumable checkpoint as ``lm_step``, ``lm_state.K``."""

    step: int
    state: Any
    """A tensor, or a tuple of them (``(h, c)``)."""

    def on(self, device: torch.device) -> Any:
        s = self.state
        return s.to(device) if isinstance(s, Tensor) else tuple(t.to(device) for t in s)

    def tensors(self) -> dict[str, Tensor]:
        parts = [self.state] if isinstance(self.state, Tensor) else list(self.state)
        return {
            "lm_step": torch.tensor([self.step]),
            **{f"lm_state.{i}": p for i, p in enumerate(parts)},
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> Carry:
        # cloned: a tensor read from the file may be laid out (aligned) otherwise than torch's
        # own, and the matrix kernels can round differently on it
        parts = [tensors[f"lm_state.{i}"].clone() for i in range(len(tensors) - 1)]
        return cls(int(tensors["lm_step"].item()), parts[0] if len(parts) == 1 else tuple(parts))


def lm_metrics(total_nll: float, count: int, words: int, kind: str) -> dict[str, float | str]:
    """The metrics of :meth:`LanguageModelTask.metrics` for ``kind`` tokens."""
    loss = total_nll / max(count, 1)
    out: dict[str, float | str] = {"loss": loss, "ppl": math.exp(min(loss, 700.0))}
    out["word_ppl"] = math.exp(min(total_nll / max(words, 1), 700.0))
    if kind == "char":
        out["bpc"] = loss / math.log(2)
    out["tokens"] = float(count)
    out["words"] = float(words)
    out["token"] = TOKEN_UNITS[kind]
    return out


def load_splits(cfg: LMConfig, tok: TextTokenizer | None) -> tuple[TextTokenizer, CorpusSplits]:
    """Read the splits of ``cfg``, fit the tokenizer on the training text unless ``tok`` is
    given, encode them and say on stderr what was read."""
    if not cfg.train:
        raise UserError(
            "this model was rebuilt from a checkpoint without its training files; "
            "evaluation needs --train (and --valid/--test) of the run to exist"
        )
    read = read_split_texts(
        cfg.train,
        cfg.valid,
        cfg.test,
        cfg.valid_fraction,
        cfg.test_fraction,
        cfg.encoding,
        at_line_end=cfg.tokenizer != "char",
    )
    if tok is None:
        tok = fit_training_tokenizer(
            read.texts["train"],
            cfg.tokenizer,
            lowercase=cfg.lowercase,
            min_count=cfg.min_count,
            max_size=cfg.max_vocab,
            vocab_size=cfg.vocab_size,
            unk_token=cfg.unk_token,
        )
    splits = encode_splits(tok, read)
    _check_splits(cfg, splits.ids)
    _note("lm: " + summary_line(splits, read.corpus, tok, cfg.tokenizer))
    return tok, splits


def split_source(cfg: LMConfig, split: str) -> str:
    """Where ``split``'s text comes from, as the metrics table names it."""
    given = getattr(cfg, split, "")
    if split not in ("valid", "test") or given:
        return f"--{split} {given}" if given else ""
    share = cfg.valid_fraction if split == "valid" else cfg.test_fraction
    return f"the last {100 * share:g}% of --train {cfg.train}" if share else ""


_NO_VALID = (
    "no validation text ({where}): training keeps the best checkpoint and stops early by the "
    "validation loss; give --valid FILE or a --valid-fraction above 0"
)


def _check_config(cfg: LMConfig, from_checkpoint: bool) -> None:
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
    if not from_checkpoint and not cfg.valid and cfg.valid_fraction == 0:
        raise UserError(_NO_VALID.format(where="--valid-fraction 0 and no --valid"))


def _check_splits(cfg: LMConfig, ids: dict[str, np.ndarray]) -> None:
    if len(ids["train"]) < 2:
        raise UserError(f"--train: {cfg.train} has fewer than 2 tokens to learn from")
    if len(ids["valid"]) < 2:
        where = (
            f"--valid {cfg.valid}"
            if cfg.valid
            else f"the last --valid-fraction {cfg.valid_fraction:g} of --train"
        )
        raise UserError(_NO_VALID.format(where=f"{where} gives {len(ids['valid'])} tokens"))


def _inspected(ids: list[int], k: int) -> list[int]:
    """The tokens of input ``k`` that inspect plots: the first ``INSPECT_MAX``."""
    if not ids:
        raise UserError(f"inspect: input {k} is empty")
    if len(ids) > INSPECT_MAX:
        _note(f"inspect: input {k} has {len(ids)} tokens; plotting the first {INSPECT_MAX}")
    return ids[:INSPECT_MAX]


def _note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
