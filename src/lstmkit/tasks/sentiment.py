"""Text classification (sentiment analysis) from the user's own files.

Data: CSV, TSV or JSONL with chosen text and label columns (TSV without quoting unless
``--quoting csv``; ``--no-header`` with column numbers), a folder per class,
one-example-per-line files per class, ``LABEL TEXT`` lines or fastText ``__label__X TEXT``
lines (see :func:`lstmkit.data.text.read_labelled`), in any encoding. What was read is logged
against the lines of each file. Separate ``--valid``/``--test`` files, a seeded split of
``--train``, or stratified k-fold cross-validation (``--cv K``: fold k is the test set, a seeded
share of the rest validates; every fold and validation share has the labels in the data's
proportions).

Schedule: ``--steps 0`` and ``--eval-every 0`` (the defaults) follow the size of the training
set (:func:`default_schedule`): 14.5 epochs, the 2,500 steps of the 10-fold MR result on its
8,636 training sentences (232 steps on 800), 25 evaluations, and a warm-up of at most 4% of the
steps, so that early stopping (``--patience 8``) acts as soon on small sets.

Model: token embedding (optionally initialised from word2vec/GloVe vectors), a (bi)directional
multi-layer :class:`lstmkit.LSTM` with any variant, pooling over time, dropout and a linear
classifier. With outputs :math:`h_1..h_T` (both directions concatenated):

- ``last``: the forward state at the last token with the backward state at the first,
- ``mean``: :math:`\\frac1T \\sum_t h_t`,  ``max``: :math:`\\max_t h_t` per feature,
- ``attention``: :math:`\\alpha = \\mathrm{softmax}_t(v^\\top \\tanh(W h_t + b))`,
  :math:`\\sum_t \\alpha_t h_t` (Yang et al. 2016), padding masked out.

Metrics: accuracy, macro-F1 (the unweighted mean over classes of
:math:`F_1 = 2PR/(P+R)`), cross-entropy loss, and the confusion matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmkit.data.embeddings import read_vectors
from lstmkit.data.labelled_sets import EncodedSplit, LabelledSets, pad_ids, read_with
from lstmkit.data.sampling import epoch_batch, rank_slice
from lstmkit.data.text import FORMATS, QUOTING, LabelledText, check_encoding
from lstmkit.data.tokenize import KINDS, TextTokenizer
from lstmkit.models.classifier import SentimentModelConfig, TextClassifier
from lstmkit.nn import LSTM
from lstmkit.tasks.base import InputRecords, Task, chunks, register
from lstmkit.utils.errors import UserError
from lstmkit.utils.meta import help_meta as _help
from lstmkit.utils.metrics import macro_f1
from lstmkit.viz.confusion import confusion_matrix, plot_confusion
from lstmkit.viz.token_shares import draw_token_shares


@dataclass(frozen=True)
class SentimentConfig:
    """Where the examples are and how to read, split and tokenise them."""

    train: str = field(
        default="",
        metadata=_help(
            "training data: a CSV/TSV/JSONL file, a folder with a subfolder per label, a folder "
            "of line files (LABEL.txt), or line files joined by commas (a.pos,a.neg)"
        ),
    )
    valid: str = field(default="", metadata=_help("validation data (default: split of --train)"))
    test: str = field(default="", metadata=_help("test data (default: split of --train)"))
    format: str = field(
        default="auto",
        metadata=_help(
            "data format; auto: from the extension, or for other files from the lines "
            "(label-text: LABEL TEXT per line; fasttext: __label__X TEXT)",
            choices=FORMATS,
        ),
    )
    text_column: str = field(
        default="text",
        metadata=_help("CSV/TSV/JSONL column of the text (a 0-based number with --no-header)"),
    )
    label_column: str = field(
        default="label",
        metadata=_help("CSV/TSV/JSONL column of the label (a 0-based number with --no-header)"),
    )
    header: bool = field(
        default=True,
        metadata=_help(
            "CSV/TSV: the first line names the columns; --no-header: it is data (columns by "
            "number, or chosen from the data and said so); a first line without the default "
            "columns that looks like data is read as data"
        ),
    )
    quoting: str = field(
        default="auto",
        metadata=_help(
            'CSV/TSV quoting; auto: CSV quoted, TSV not (a " is a character); csv: CSV '
            "quoting for both; none: split at every delimiter",
            choices=QUOTING,
        ),
    )
    encoding: str = field(
        default="utf-8", metadata=_help("text encoding of the files (e.g. latin-1)")
    )
    valid_fraction: float = field(
        default=0.1, metadata=_help("share of --train held out for validation when no --valid")
    )
    test_fraction: float = field(
        default=0.1, metadata=_help("share of --train held out for testing when no --test")
    )
    split_seed: int = field(default=0, metadata=_help("seed of the splits and the folds"))
    cv: int = field(
        default=0,
        metadata=_help("k-fold cross-validation: train K models, each testing on one fold"),
    )
    fold: int = field(
        default=-1,
        metadata=_help(
            "with --cv: train only this fold (0-based); -1 trains every fold in turn", signed=True
        ),
    )
    cv_jobs: int = field(
        default=1,
        metadata=_help(
            "with --cv: train this many folds at once, each in its own process (with --threads "
            "0, each gets cores // N threads)"
        ),
    )
    tokenizer: str = field(default="word", metadata=_help("token unit", choices=KINDS))
    lowercase: bool = field(default=True, metadata=_help("lower-case the text"))
    split_contractions: bool = field(
        default=True,
        metadata=_help(
            "word tokens: split English clitics as the Penn Treebank (doesn't -> does n't); "
            "char and bpe tokens ignore it"
        ),
    )
    min_count: int = field(
        default=1, metadata=_help("word/char tokens seen fewer times become <unk>")
    )
    max_vocab: int = field(default=0, metadata=_help("largest vocabulary (word/char); 0: any"))
    vocab_size: int = field(default=8000, metadata=_help("BPE vocabulary size"))
    max_tokens: int = field(
        default=0,
        metadata=_help("cut texts to this many tokens (0: no limit); cut texts are counted"),
    )
    embeddings: str = field(
        default="", metadata=_help("pretrained word vectors (word2vec text or GloVe file)")
    )
    freeze_embeddings: bool = field(
        default=False, metadata=_help("keep the pretrained vectors fixed")
    )

    def __post_init__(self) -> None:
        check_encoding(self.encoding)
        if self.cv < 0 or self.cv == 1:
            raise UserError(f"--cv must be 0 (off) or at least 2, got {self.cv}")
        if self.cv and not -1 <= self.fold < self.cv:
            raise UserError(
                f"--fold must be in 0..{self.cv - 1} with --cv {self.cv}, got {self.fold}"
            )
        if self.cv_jobs < 1:
            raise UserError(f"--cv-jobs must be >= 1, got {self.cv_jobs}")
        for name in ("valid_fraction", "test_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be in [0, 1)")


REFERENCE_TRAIN = 8636
"""Training sentences of a 10-fold MR fold: the set the default schedule was tuned on."""
REFERENCE_EPOCHS = 2500 * 50 / 8636
"""That schedule in epochs: 2,500 steps of 50 sentences (14.47 epochs)."""
MIN_STEPS = 20


def default_schedule(n_train: int, batch_size: int) -> tuple[int, int, int]:
    """``(steps, warmup_steps, eval_every)`` for a training set of ``n_train`` examples:
    :data:`REFERENCE_EPOCHS` epochs (at least :data:`MIN_STEPS` steps), warm-up 4% of the
    steps and 25 evaluations, as MR's 100 of 2,500; with patience 8 a run stops a third of
    the schedule after its best evaluation.

    Measured on MR subsets (docs/RESULTS.md): on 2,400 training sentences validation
    accuracy peaked at step 675 of a 732-step schedule (this gives 695); on 800 the best of
    schedules of 58, 116 and 232 steps (this gives 232) were equal within the noise of 100
    validation sentences. A too-long schedule costs time that early stopping cuts short; a
    too-short one costs accuracy.
    """
    steps = max(MIN_STEPS, round(REFERENCE_EPOCHS * n_train / batch_size))
    return steps, round(0.04 * steps), max(1, round(steps / 25))


def derive_schedule(cfg, n_train: int):
    """The training config ``cfg`` with ``steps 0`` and ``eval_every 0`` set from the
    ``n_train`` training examples by :func:`default_schedule` (given steps: 25 evaluations of
    them; derived steps: a warm-up of at most 4% of them), and the sentence that says so."""
    steps, warmup, every = default_schedule(n_train, cfg.batch_size)
    if cfg.steps:  # given: the evaluations follow it
        steps, warmup, every = cfg.steps, cfg.warmup_steps, max(1, round(cfg.steps / 25))
    cfg = replace(
        cfg,
        steps=steps,
        warmup_steps=min(cfg.warmup_steps, warmup),
        eval_every=cfg.eval_every or every,
    )
    return cfg, (
        f"{cfg.steps} steps ({cfg.steps * cfg.batch_size / n_train:.1f} epochs of {n_train}), "
        f"warm-up {cfg.warmup_steps}, evaluation every {cfg.eval_every} (set from the "
        "training set)"
    )


def load_vectors(embedding: nn.Embedding, path: str, tokenizer: TextTokenizer) -> str:
    """Fill the rows of ``embedding`` of the words in the vector file ``path``; says how many."""
    if tokenizer.kind != "word":
        raise UserError("--embeddings needs --tokenizer word")
    vectors, dim = read_vectors(path, tokenizer.stoi)
    if dim != embedding.embedding_dim:
        raise UserError(
            f"--embeddings {path} has {dim}-dimensional vectors; pass --embedding-dim {dim}"
        )
    with torch.no_grad():
        for word, vec in vectors.items():
            embedding.weight[tokenizer.stoi[word]] = torch.from_numpy(vec)
    return f"{len(vectors)} of {len(tokenizer) - 4} words"


@register
class SentimentTask(Task):
    """Text classification from CSV/TSV/JSONL, a folder per class, or line files per class.

    For the movie-review polarity set (10-fold cross-validation, docs/RESULTS.md):

    \b
      D=../shared/data/rt-polarity
      lstmkit train sentiment --train $D/rt-polarity.pos,$D/rt-polarity.neg \\
          --encoding latin-1 --cv 10 --out runs/mr
    """

    name = "sentiment"
    capabilities = frozenset(
        {"predict", "evaluate", "inspect", "export", "quantize", "cross-validate"}
    )
    checkpoint_state = ("tokenizer", "labels")
    summary = "text classification (sentiment) from your CSV/TSV/JSONL or folders"
    Config = SentimentConfig
    ModelConfig = SentimentModelConfig
    metric = "accuracy"
    mode = "max"
    # the configuration of the 10-fold MR result in docs/RESULTS.md (77.2%); steps and
    # evaluations from the training set's size (train_config): 2500 and 100 on MR
    train_defaults = {
        "steps": 0,
        "batch_size": 50,
        "lr": 2e-3,
        "schedule": "cosine",
        "warmup_steps": 100,
        "ema": 0.995,
        "eval_every": 0,
        "patience": 8,
        "clip_norm": 5.0,
    }

    def __init__(self, cfg, model_cfg, state: dict | None = None) -> None:
        super().__init__(cfg, model_cfg, state)
        self.from_checkpoint = bool(state)
        tokenizer = TextTokenizer.from_state(state["tokenizer"]) if state else None
        self.data = LabelledSets(cfg, tokenizer, state["labels"] if state else ())
        self.report = self.data.report  # one dict: what was read, and the schedule

    @property
    def tokenizer(self) -> TextTokenizer:
        return self.data.tokenizer

    @property
    def labels(self) -> list[str]:
        return self.data.labels

    def state(self) -> dict:
        self.data.fit()
        return {"tokenizer": self.tokenizer.state(), "labels": self.labels}

    # ----- data
    def splits(self) -> dict[str, EncodedSplit]:
        return self.data.splits()

    def data_report(self) -> dict:
        self.splits()
        return dict(self.report)

    def split_source(self, split: str) -> str:
        return self.data.source(split)

    def train_config(self, cfg):
        """``cfg`` with ``--steps 0`` and ``--eval-every 0`` (the CLI defaults) set from the
        training set's size (:func:`derive_schedule`)."""
        if cfg.steps and cfg.eval_every:
            return cfg
        cfg, self.report["schedule"] = derive_schedule(cfg, len(self.splits()["train"].ids))
        return cfg

    def _read_file(self, path: str, options: dict, **kw) -> LabelledText:
        """A file of the user's, read with the run's options or ``options``; the run's
        ``--format`` was for its training files, so without one the format is ``auto``."""
        cfg = self.read_config(options)
        return read_with(replace(cfg, format=options.get("format") or "auto"), path, **kw)

    def read_input_file(self, path, **options) -> InputRecords | None:
        """A CSV/TSV/JSONL file (by its extension, read with the run's columns; the label
        column may be missing), a folder, or any file with ``--format``: the texts with their
        rows. Other files (``.txt``): one text per line (None)."""
        self.read_config(options)
        p = Path(path)
        table = p.name.removesuffix(".gz").lower().endswith((".csv", ".tsv", ".jsonl", ".json"))
        if not (options.get("format") or p.is_dir() or table):
            return None
        data = self._read_file(path, options, label_required=False, keep_columns=True)
        if not len(data):
            raise UserError(f"--input: {path} holds no text ({data.summary()})")
        return InputRecords(list(data.texts), list(data.columns or []), f"{path}: {data.summary()}")

    def use_data(self, path, **options) -> str:
        data = self._read_file(path, options)
        if not len(data):
            raise UserError(f"--data: {path} holds no examples ({data.summary()})")
        self.data.add("data", data)
        self.report["data_file"] = data.summary()
        return "data"

    # ----- model and batches
    def build_model(self) -> nn.Module:
        self.data.fit()
        model = TextClassifier(self.model_cfg, len(self.tokenizer), len(self.labels))
        if self.cfg.embeddings and not self.from_checkpoint:
            vectors = load_vectors(model.embedding, self.cfg.embeddings, self.tokenizer)
            self.report["pretrained_vectors"] = vectors
        if self.cfg.freeze_embeddings:
            model.embedding.weight.requires_grad_(False)
        return model

    collate = staticmethod(pad_ids)  # token ids -> (tokens (B, T) padded, lengths (B,))

    def train_batch(self, step, seed, batch_size, rank, world):
        train = self.splits()["train"]
        idx = rank_slice(epoch_batch(len(train.ids), step, batch_size, seed), rank, world)
        tokens, lengths = self.collate([train.ids[i] for i in idx])
        return tokens, lengths, torch.from_numpy(train.labels[idx])

    def batch_tokens(self, batch) -> int:
        return int(batch[1].sum())

    def loss(self, model, batch) -> Tensor:
        tokens, lengths, labels = batch
        return F.cross_entropy(model(tokens, lengths), labels)

    # ----- evaluation
    @torch.no_grad()
    def logits(self, model, seqs: list[list[int]], device, batch_size: int = 256) -> Tensor:
        """Class scores for token-id sequences, in batches of similar lengths."""
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        out = torch.empty(len(seqs), len(self.labels))
        for sl in chunks(len(order), batch_size):
            picked = order[sl]
            tokens, lengths = self.collate([seqs[i] for i in picked])
            out[picked] = model(tokens.to(device), lengths.to(device)).float().cpu()
        return out

    def confusion(self, model, split: str, device) -> np.ndarray:
        data = self.data.split(split)
        pred = self.logits(model, data.ids, device).argmax(1).numpy()
        return confusion_matrix(data.labels, pred, len(self.labels))

    def evaluate(self, model, split, device) -> dict[str, float]:
        data = self.data.split(split)
        logits = self.logits(model, data.ids, device)
        labels, pred = torch.from_numpy(data.labels), logits.argmax(1)
        return {
            "accuracy": float((pred == labels).float().mean()),
            "macro_f1": macro_f1(confusion_matrix(data.labels, pred.numpy(), len(self.labels))),
            "loss": float(F.cross_entropy(logits, labels)),
        }

    def evaluation_plots(self, model, split, out, device) -> list[Path]:
        conf = self.confusion(model, split, device)
        acc = np.trace(conf) / max(1, conf.sum())
        title = f"{split}: accuracy {100 * acc:.1f}%, macro-F1 {100 * macro_f1(conf):.1f}%"
        return [plot_confusion(conf, Path(out) / f"confusion-{split}.png", self.labels, title)]

    # ----- using a trained model
    def examples(self) -> list[str]:
        return [
            "a gripping , beautifully acted film that stays with you",
            "a dull , lifeless mess with nothing to say",
        ]

    def predict(self, model, inputs, device) -> list[dict]:
        probs = torch.softmax(self.logits(model, self.data.encode(inputs)[0], device), -1)
        return [
            {
                "text": text,
                "label": self.labels[int(p.argmax())],
                "probabilities": {
                    lab: round(float(q), 4) for lab, q in zip(self.labels, p, strict=True)
                },
            }
            for text, p in zip(inputs, probs, strict=True)
        ]

    def inspect(self, model, inputs, out, device) -> list[Path]:
        """Per input, ``gates-K.png`` and ``gates-K.html``: each token's share of the predicted
        class's score, with the gates of the units that weigh most (:func:`draw_token_shares`)."""
        if not isinstance(model.encoder, LSTM):
            raise UserError(
                f"inspect needs an LSTM model (this one was trained with --cell "
                f"{self.model_cfg.encoder.cell})"
            )
        paths: list[Path] = []
        for k, text in enumerate(inputs or self.examples()[:1], 1):
            (ids,), _ = self.data.encode([text])
            pieces = [self.tokenizer.token(i) for i in ids]
            stem = Path(out) / f"gates-{k}"
            paths += draw_token_shares(model, ids, pieces, text, self.labels, stem, device)
        return paths
