"""Machine translation from parallel text: subword vocabularies, token-budget batches,
teacher-forced training with label smoothing, greedy and beam-search decoding, sacreBLEU.

The default data is Multi30k (``../shared/data/multi30k``: ``train``, ``val`` and
``test_2016_flickr``, German-English); any pair of line-aligned files works through
``--train-src/--train-tgt`` (and ``--valid-*``, ``--test-*``), plain or gzipped, in any
``--encoding``.

Batching: training batches are cut by length under ``--max-tokens`` padded positions (the
longer of source and target) per global batch; ``--batch-size`` of the trainer is not used by
this task (its ``seq/s`` figure in the log counts ``--batch-size`` per step, so read ``tok/s``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from lstmkit.data.bitext import (
    by_length,
    data_arg_paths,
    encode_within,
    fit_vocabularies,
    split_paths,
    vocabularies_from_state,
    vocabularies_state,
)
from lstmkit.data.parallel import ParallelText, read_parallel
from lstmkit.data.sampling import BucketBatches, rank_slice
from lstmkit.data.text import check_encoding
from lstmkit.data.tokenize import BOS, EOS, PAD, TextTokenizer
from lstmkit.models.seq2seq import (
    Seq2Seq,
    Seq2SeqConfig,
    beam_search,
    greedy_decode,
    label_smoothed_loss,
)
from lstmkit.tasks.base import Task, register
from lstmkit.utils.errors import UserError
from lstmkit.utils.meta import help_meta as _help
from lstmkit.utils.metrics import bleu_chrf

TOKENIZERS = ("bpe", "word", "char")
SPLITS = {"train": "train_prefix", "valid": "valid_prefix", "test": "test_prefix"}


@dataclass(frozen=True)
class TranslationConfig:
    """Data, subwords, batching, loss and decoding of the translation task."""

    data_dir: str = field(
        default="../shared/data/multi30k",
        metadata=_help("folder of PREFIX.LANG[.gz] files (Multi30k layout)"),
    )
    src_lang: str = field(default="de", metadata=_help("source language suffix"))
    tgt_lang: str = field(default="en", metadata=_help("target language suffix"))
    train_prefix: str = field(default="train", metadata=_help("training files' prefix"))
    valid_prefix: str = field(default="val", metadata=_help("validation files' prefix"))
    test_prefix: str = field(default="test_2016_flickr", metadata=_help("test files' prefix"))
    train_src: str = field(default="", metadata=_help("training source file (overrides the dir)"))
    train_tgt: str = field(default="", metadata=_help("training target file"))
    valid_src: str = field(default="", metadata=_help("validation source file"))
    valid_tgt: str = field(default="", metadata=_help("validation target file"))
    test_src: str = field(default="", metadata=_help("test source file"))
    test_tgt: str = field(default="", metadata=_help("test target file"))
    encoding: str = field(default="utf-8", metadata=_help("text encoding of the data files"))
    train_limit: int = field(default=0, metadata=_help("use the first N training pairs; 0: all"))
    valid_limit: int = field(
        default=0, metadata=_help("score the first N validation pairs during training; 0: all")
    )
    tokenizer: str = field(
        default="bpe",
        metadata=_help("subword model fitted on the training data", choices=TOKENIZERS),
    )
    vocab_size: int = field(default=8000, metadata=_help("vocabulary size per vocabulary"))
    shared_vocab: bool = field(
        default=False,
        metadata=_help("one vocabulary (and embedding table) for both languages"),
    )
    lowercase: bool = field(default=False, metadata=_help("lower-case all text"))
    max_tokens: int = field(
        default=4000, metadata=_help("padded tokens per global training batch (length buckets)")
    )
    max_len: int = field(
        default=100, metadata=_help("skip training pairs with more subwords on either side")
    )
    label_smoothing: float = field(default=0.1, metadata=_help("label smoothing epsilon"))
    beam: int = field(default=5, metadata=_help("beam size for test scores and translate"))
    valid_beam: int = field(
        default=1, metadata=_help("beam size for validation BLEU (1: greedy, fast)")
    )
    len_penalty: float = field(
        default=1.0, metadata=_help("length normalisation: score = log p / length^alpha")
    )
    max_len_ratio: float = field(
        default=2.0, metadata=_help("output at most ratio * source subwords + 5 tokens")
    )
    decode_batch: int = field(default=64, metadata=_help("sentences decoded together"))
    select: str = field(
        default="bleu",
        metadata=_help(
            "validation metric for the best checkpoint and early stopping", choices=("bleu", "loss")
        ),
    )


class TranslationBatch(NamedTuple):
    """``src (B, S)``, ``src_len (B,)``, ``tgt_in (B, T)`` = ``<s> y``, ``tgt_out (B, T)`` =
    ``y </s>``; padding is 0."""

    src: Tensor
    src_len: Tensor
    tgt_in: Tensor
    tgt_out: Tensor


def _pad(rows: list[list[int]]) -> Tensor:
    out = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def make_batch(src: list[list[int]], tgt: list[list[int]]) -> TranslationBatch:
    src = [s or [EOS] for s in src]  # an input with no subwords still gets one step
    return TranslationBatch(
        _pad(src),
        torch.tensor([len(s) for s in src], dtype=torch.long),
        _pad([[BOS, *t] for t in tgt]),
        _pad([[*t, EOS] for t in tgt]),
    )


def check_config(cfg: TranslationConfig) -> None:
    """One :class:`UserError` line naming the first option out of its range."""
    check_encoding(cfg.encoding)
    for name in ("vocab_size", "max_tokens", "max_len", "beam", "valid_beam", "decode_batch"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    for name in ("train_limit", "valid_limit"):
        if getattr(cfg, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(cfg, name)}")
    if not 0 <= cfg.label_smoothing < 1:
        raise UserError(f"--label-smoothing must be in [0, 1), got {cfg.label_smoothing}")
    if cfg.max_len_ratio <= 0:
        raise UserError(f"--max-len-ratio must be > 0, got {cfg.max_len_ratio}")
    if cfg.tokenizer not in TOKENIZERS:
        raise UserError(f"--tokenizer must be one of {', '.join(TOKENIZERS)}")


def search(model, src: Tensor, src_len: Tensor, cfg: TranslationConfig, beam: int) -> list:
    """Greedy decoding for ``beam`` 1, else beam search with ``cfg``'s length options."""
    if beam == 1:
        return greedy_decode(model, src, src_len, max_len_ratio=cfg.max_len_ratio)
    return beam_search(
        model, src, src_len, beam=beam, len_penalty=cfg.len_penalty, max_len_ratio=cfg.max_len_ratio
    )


@torch.no_grad()
def decode_ids(model, ids: list[list[int]], cfg: TranslationConfig, beam: int, device) -> list:
    """A hypothesis per source in ``ids``, decoded ``cfg.decode_batch`` of similar length at a
    time in eval mode, returned in input order."""
    out: list = [None] * len(ids)
    was_training = model.training
    model.eval()
    for part in by_length(ids, cfg.decode_batch):
        b = make_batch([ids[i] for i in part], [[] for _ in part])
        hyps = search(model, b.src.to(device), b.src_len.to(device), cfg, beam)
        for i, h in zip(part, hyps, strict=True):
            out[i] = h
    model.train(was_training)
    return out


@torch.no_grad()
def teacher_forced_nll(model, src: list[list[int]], tgt: list[list[int]], size: int, device):
    """Negative log-likelihood per target token of the pairs (no label smoothing), ``size``
    pairs of similar source length at a time."""
    total, count = 0.0, 0
    for part in by_length(src, size):
        b = make_batch([src[i] for i in part], [tgt[i] for i in part])
        b = TranslationBatch(*(t.to(device) for t in b))
        n = int((b.tgt_out != PAD).sum())
        loss = label_smoothed_loss(model(b.src, b.src_len, b.tgt_in), b.tgt_out, 0.0)
        total, count = total + float(loss) * n, count + n
    return total / max(count, 1)


@register
class TranslationTask(Task):
    """Translate sentences with an LSTM encoder-decoder with attention (Luong et al. 2015).

    Subword vocabularies (BPE by default) are fitted on the training data and saved in the
    checkpoint; test scores are sacreBLEU and chrF on detokenised output with --beam. Training
    batches hold about --max-tokens padded tokens each; --batch-size is not used.
    """

    name = "translation"
    capabilities = frozenset({"predict", "evaluate", "inspect", "translate", "export", "quantize"})
    checkpoint_state = ("src_tokenizer",)
    summary = "translation of parallel sentences (Multi30k de-en by default)"
    Config = TranslationConfig
    ModelConfig = Seq2SeqConfig
    metric = "bleu"
    mode = "max"
    train_defaults = {"lr": 2e-3, "eval_every": 1000, "steps": 100000, "log_every": 50}

    def __init__(self, cfg, model_cfg, state=None):
        super().__init__(cfg, model_cfg, state)
        check_config(cfg)
        self.metric, self.mode = ("bleu", "max") if cfg.select == "bleu" else ("loss", "min")
        self.src_tok, self.tgt_tok = vocabularies_from_state(state) if state else (None, None)
        self._data: dict[str, ParallelText] = {}
        self._train_ids: tuple[list[list[int]], list[list[int]]] | None = None
        self._buckets: dict[int, BucketBatches] = {}
        self.train_skipped_long = 0
        self.signatures: dict[str, str] = {}

    # ----- data, read when first needed
    def paths(self, split: str) -> tuple[Path, Path]:
        cfg = self.cfg
        explicit = getattr(cfg, f"{split}_src"), getattr(cfg, f"{split}_tgt")
        prefix = getattr(cfg, SPLITS[split])
        return split_paths(split, explicit, cfg.data_dir, prefix, (cfg.src_lang, cfg.tgt_lang))

    def data(self, split: str) -> ParallelText:
        if split not in self._data:
            src, tgt = self.paths(split)
            d = read_parallel(src, tgt, self.cfg.encoding, what=f"{split} data")
            self._data[split] = d.head(self.cfg.train_limit) if split == "train" else d
        return self._data[split]

    def tokenizers(self) -> tuple[TextTokenizer, TextTokenizer]:
        """The vocabularies: from the checkpoint, else fitted on the training data."""
        if self.src_tok is None:
            c, train = self.cfg, self.data("train")
            toks = fit_vocabularies(train, c.tokenizer, c.vocab_size, c.lowercase, c.shared_vocab)
            self.src_tok, self.tgt_tok = toks
        return self.src_tok, self.tgt_tok

    def state(self) -> dict:
        return vocabularies_state(*self.tokenizers())

    def train_ids(self) -> tuple[list[list[int]], list[list[int]]]:
        if self._train_ids is None:
            src, tgt, skipped = encode_within(
                self.data("train"), *self.tokenizers(), self.cfg.max_len
            )
            self._train_ids, self.train_skipped_long = (src, tgt), skipped
        return self._train_ids

    # ----- training
    def build_model(self) -> nn.Module:
        src, tgt = self.tokenizers()
        return Seq2Seq(self.model_cfg, len(src), len(tgt), share_embeddings=src is tgt)

    def buckets(self, seed: int) -> BucketBatches:
        if seed not in self._buckets:
            src, tgt = self.train_ids()
            lengths = [max(len(s), len(t) + 1) for s, t in zip(src, tgt, strict=True)]
            self._buckets[seed] = BucketBatches(lengths, self.cfg.max_tokens, seed)
        return self._buckets[seed]

    def train_batch(self, step, seed, batch_size, rank, world):
        idx = rank_slice(self.buckets(seed).batch(step), rank, world)
        if len(idx) == 0:  # more processes than sentences in this batch
            idx = np.asarray(self.buckets(seed).batch(step)[:1])
        src, tgt = self.train_ids()
        return make_batch([src[i] for i in idx], [tgt[i] for i in idx])

    def batch_tokens(self, batch) -> int:
        return int((batch.tgt_out != PAD).sum())

    def loss(self, model, batch):
        logits = model(batch.src, batch.src_len, batch.tgt_in)
        return label_smoothed_loss(logits, batch.tgt_out, self.cfg.label_smoothing)

    # ----- the user's own files
    def split_source(self, split: str) -> str:
        if split not in SPLITS:
            return ""
        src, tgt = self.paths(split)
        return f"{src} and {tgt}"

    def use_data(self, path, **options) -> str:
        """``SRC,TGT`` (two line-aligned files), or a ``PREFIX`` with PREFIX.SRC_LANG and
        PREFIX.TGT_LANG beside it (``.gz`` too), as Multi30k's files are named."""
        cfg = self.read_config(options)
        check_encoding(cfg.encoding)
        src, tgt = data_arg_paths(path, (cfg.src_lang, cfg.tgt_lang))
        self._data["data"] = read_parallel(src, tgt, cfg.encoding, what="--data")
        return "data"

    # ----- evaluation
    def eval_pairs(self, split: str) -> ParallelText:
        d = self.data(split)
        return d.head(self.cfg.valid_limit) if split == "valid" else d

    def evaluate(self, model, split, device):
        pairs = self.eval_pairs(split)
        beam = self.cfg.valid_beam if split == "valid" else self.cfg.beam
        hyps = self.translate(model, pairs.src, device, beam=beam)
        bleu, chrf, bleu_sig, chrf_sig = bleu_chrf(hyps, pairs.tgt)
        self.signatures = {"bleu": bleu_sig, "chrf": chrf_sig}
        nll = self.nll(model, pairs, device)
        return {"bleu": bleu, "chrf": chrf, "loss": nll, "ppl": math.exp(min(nll, 50.0))}

    def nll(self, model, pairs: ParallelText, device) -> float:
        """Teacher-forced negative log-likelihood per target token (no label smoothing)."""
        src_tok, tgt_tok = self.tokenizers()
        src, tgt = src_tok.encode_batch(pairs.src), tgt_tok.encode_batch(pairs.tgt)
        return teacher_forced_nll(model, src, tgt, self.cfg.decode_batch, device)

    # ----- decoding
    def decode(self, model, sentences: list[str], device, *, beam: int | None = None) -> list:
        """Hypotheses (:class:`lstmkit.models.seq2seq.Hypothesis`) for ``sentences``, decoded in
        batches of similar length and returned in input order."""
        beam = self.cfg.beam if beam is None else beam
        if beam < 1:
            raise UserError(f"--beam must be >= 1, got {beam}")
        ids = self.tokenizers()[0].encode_batch(list(sentences))
        return decode_ids(model, ids, self.cfg, beam, device)

    def translate(
        self, model, sentences: list[str], device, *, beam: int | None = None
    ) -> list[str]:
        """Detokenised translations of ``sentences``."""
        _, tgt_tok = self.tokenizers()
        return [tgt_tok.decode(h.tokens) for h in self.decode(model, sentences, device, beam=beam)]

    def predict(self, model, inputs, device):
        outs = self.translate(model, inputs, device)
        return [{"source": s, "translation": t} for s, t in zip(inputs, outs, strict=True)]

    def examples(self) -> list[str]:
        if self.cfg.src_lang == "en":
            return ["A man rides a bicycle.", "Two dogs are playing in the snow."]
        return ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."]

    def inspect(self, model, inputs, out, device):
        """One attention heatmap per input (:func:`lstmkit.viz.attention.plot_attention`),
        decoded with ``--beam``."""
        from lstmkit.viz.attention import plot_attention

        inputs = list(inputs) or self.examples()[:1]
        hyps = self.decode(model, inputs, device)
        langs = (self.cfg.src_lang, self.cfg.tgt_lang)
        return [
            plot_attention(h, text, self.tokenizers(), langs, Path(out) / f"attention-{k + 1}.png")
            for k, (text, h) in enumerate(zip(inputs, hyps, strict=True))
        ]
