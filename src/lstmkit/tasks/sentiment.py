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
from lstmkit.data.sampling import epoch_batch, rank_slice
from lstmkit.data.text import FORMATS, QUOTING, LabelledText, check_encoding, read_labelled
from lstmkit.data.tokenize import KINDS, PAD, UNK, TextTokenizer, fit_tokenizer
from lstmkit.models.classifier import SentimentModelConfig, TextClassifier
from lstmkit.nn import LSTM, record_gates
from lstmkit.tasks.base import InputRecords, Task, chunks, register
from lstmkit.utils.errors import UserError
from lstmkit.utils.meta import help_meta as _help
from lstmkit.utils.metrics import macro_f1


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


@dataclass
class _Split:
    ids: list[list[int]]
    labels: np.ndarray
    source: str


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


def stratified_order(labels: list[str], rng: np.random.Generator) -> np.ndarray:
    """A seeded order of ``range(len(labels))`` in which every stretch has the labels in about
    the data's proportions: each label's examples, shuffled, are spread evenly over the order,
    so any prefix (of it or of a subset dealt by :func:`stratified_folds`) is a stratified
    sample."""
    labels_arr = np.asarray(labels)
    key = np.empty(len(labels))
    for label in sorted(set(labels)):
        idx = np.flatnonzero(labels_arr == label)
        idx = rng.permutation(idx)
        key[idx] = (np.arange(len(idx)) + rng.random()) / len(idx)
    return np.lexsort((rng.random(len(labels)), key))


def stratified_folds(labels: list[str], order: np.ndarray, k: int) -> np.ndarray:
    """The fold (0..k-1) of each example: each label's examples, in ``order``, dealt to the
    folds in turn, each label continuing where the one before stopped, so that every fold
    has its share of every label and the fold sizes differ by at most one."""
    labels_arr = np.asarray(labels)[order]
    fold = np.empty(len(order), dtype=np.int64)
    start = 0
    for label in sorted(set(labels)):
        members = order[labels_arr == label]
        fold[members] = (start + np.arange(len(members))) % k
        start += len(members)
    return fold


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
    capabilities = frozenset({"predict", "evaluate", "inspect", "cross-validate"})
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
        check_encoding(cfg.encoding)
        if cfg.cv < 0 or cfg.cv == 1:
            raise UserError(f"--cv must be 0 (off) or at least 2, got {cfg.cv}")
        if cfg.cv and not -1 <= cfg.fold < cfg.cv:
            raise UserError(f"--fold must be in 0..{cfg.cv - 1} with --cv {cfg.cv}, got {cfg.fold}")
        if cfg.cv_jobs < 1:
            raise UserError(f"--cv-jobs must be >= 1, got {cfg.cv_jobs}")
        for name in ("valid_fraction", "test_fraction"):
            if not 0 <= getattr(cfg, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be in [0, 1)")
        self.from_checkpoint = bool(state)
        self.tokenizer: TextTokenizer | None = None
        self.labels: list[str] = []
        if state:
            self.tokenizer = TextTokenizer.from_state(state["tokenizer"])
            self.labels = list(state["labels"])
        self._splits: dict[str, _Split] | None = None
        self._files: dict[str, _Split] = {}  # evaluate --data: files read after training
        self.report: dict = {}

    # ----- data
    def state(self) -> dict:
        self._ensure_vocab()
        return {"tokenizer": self.tokenizer.state(), "labels": self.labels}

    def _read(self, path: str, cfg: SentimentConfig | None = None, **kw) -> LabelledText:
        c = cfg or self.cfg
        check_encoding(c.encoding)
        return read_labelled(
            path,
            fmt=c.format,
            text_column=c.text_column,
            label_column=c.label_column,
            encoding=c.encoding,
            header=c.header,
            quoting=c.quoting,
            **kw,
        )

    def split_source(self, split: str) -> str:
        c = self.cfg
        if split not in ("valid", "test"):
            return ""
        if split == "test" and c.cv:
            return f"fold {c.fold} of --cv {c.cv} (of --train {c.train})"
        given = getattr(c, split)
        if given:
            return f"--{split} {given}"
        share = c.test_fraction if split == "test" else c.valid_fraction
        return f"a seeded {100 * share:g}% of --train {c.train} (--split-seed {c.split_seed})"

    def read_input_file(self, path, **options) -> InputRecords | None:
        """A CSV/TSV/JSONL file (by its extension, read with the run's columns; the label
        column may be missing), a folder, or any file with ``--format``: the texts with their
        rows. Other files (``.txt``): one text per line (None)."""
        cfg = self.read_config(options)
        p = Path(path)
        table = p.name.removesuffix(".gz").lower().endswith((".csv", ".tsv", ".jsonl", ".json"))
        if not (options.get("format") or p.is_dir() or table):
            return None
        if not options.get("format"):
            cfg = replace(cfg, format="auto")  # the run's --format was for its training files
        data = self._read(path, cfg, label_required=False, keep_columns=True)
        if not len(data):
            raise UserError(f"--input: {path} holds no text ({data.summary()})")
        return InputRecords(list(data.texts), list(data.columns or []), f"{path}: {data.summary()}")

    def use_data(self, path, **options) -> str:
        cfg = self.read_config(options)
        if not options.get("format"):
            cfg = replace(cfg, format="auto")  # the run's --format was for its training files
        data = self._read(path, cfg)
        if not len(data):
            raise UserError(f"--data: {path} holds no examples ({data.summary()})")
        self._ensure_vocab()
        self._files["data"], _ = self._to_split("data", data)
        self.report["data_file"] = data.summary()
        return "data"

    def _split(self, name: str) -> _Split:
        return self._files[name] if name in self._files else self.splits()[name]

    def _report_read(self, split: str, data: LabelledText) -> None:
        """What reading the file gave, against its lines, for the ``data`` log line."""
        self.report[f"{split}_file"] = data.summary()
        if data.notes:
            self.report[f"{split}_notes"] = "; ".join(data.notes)
        if data.warnings:
            more = data.warned - len(data.warnings)
            self.report[f"{split}_warnings"] = "; ".join(data.warnings) + (
                f" (and {more} more)" if more else ""
            )

    def train_config(self, cfg):
        """``cfg`` with the schedule left to the task set from the training set's size by
        :func:`default_schedule`: ``--steps 0`` and ``--eval-every 0`` (the CLI defaults) are
        derived; with derived steps the warm-up is at most 4% of them (100 on MR)."""
        if cfg.steps and cfg.eval_every:
            return cfg
        n = len(self.splits()["train"].ids)
        steps, warmup, every = default_schedule(n, cfg.batch_size)
        if cfg.steps:  # given: the evaluations follow it
            steps, warmup, every = cfg.steps, cfg.warmup_steps, max(1, round(cfg.steps / 25))
        cfg = replace(
            cfg,
            steps=steps,
            warmup_steps=min(cfg.warmup_steps, warmup),
            eval_every=cfg.eval_every or every,
        )
        self.report["schedule"] = (
            f"{cfg.steps} steps ({cfg.steps * cfg.batch_size / n:.1f} epochs of {n}), warm-up "
            f"{cfg.warmup_steps}, evaluation every {cfg.eval_every} (set from the training set)"
        )
        return cfg

    def _raw_splits(self) -> dict[str, LabelledText]:
        c = self.cfg
        if not c.train:
            raise UserError("--train is required: the file or folder of training examples")
        data = self._read(c.train)
        if not len(data):
            raise UserError(f"{c.train}: no examples (empty file or only empty lines)")
        self.report["skipped_empty"] = data.skipped
        self._report_read("train", data)
        rng = np.random.default_rng(c.split_seed)
        out: dict[str, LabelledText] = {}
        if c.cv:
            if c.valid or c.test:
                raise UserError("--cv takes its test folds from --train; drop --valid/--test")
            if c.fold < 0:
                raise UserError("--cv: give --fold, or let `lstmkit train` run every fold")
            order = stratified_order(data.labels, rng)
            in_fold = stratified_folds(data.labels, order, c.cv) == c.fold
            out["test"] = data.subset(np.flatnonzero(in_fold))
            rest = order[~in_fold[order]]  # still spread evenly: its first share validates
        else:
            rest = rng.permutation(len(data))
            if c.test:
                out["test"] = self._read(c.test)
                self._report_read("test", out["test"])
            else:
                n_test = round(len(data) * c.test_fraction)
                out["test"], rest = data.subset(rest[:n_test]), rest[n_test:]
        if c.valid:
            out["valid"] = self._read(c.valid)
            self._report_read("valid", out["valid"])
        else:
            n_valid = (
                round(len(rest) * c.valid_fraction) if c.cv else round(len(data) * c.valid_fraction)
            )
            out["valid"], rest = data.subset(rest[:n_valid]), rest[n_valid:]
        out["train"] = data.subset(np.sort(rest))
        for split in ("valid", "test"):
            if not len(out[split]):
                raise UserError(
                    f"the {split} set is empty; give --{split} or a larger --{split}-fraction"
                )
        return out

    def _ensure_vocab(self, raw: dict[str, LabelledText] | None = None) -> None:
        if self.tokenizer is not None:
            return
        raw = raw or self._raw_splits()
        c = self.cfg
        train = raw["train"]
        self.labels = sorted(set(train.labels))
        if len(self.labels) < 2:
            raise UserError(
                f"{c.train}: only one label in the training data ({self.labels[0]!r}); a "
                "classifier needs at least two"
            )
        self.tokenizer = fit_tokenizer(
            train.texts,
            c.tokenizer,
            lowercase=c.lowercase,
            min_count=c.min_count,
            max_size=c.max_vocab,
            vocab_size=c.vocab_size,
            contractions=c.split_contractions and c.tokenizer == "word",
        )

    def splits(self) -> dict[str, _Split]:
        if self._splits is None:
            raw = self._raw_splits()
            self._ensure_vocab(raw)
            self._splits, truncated = {}, 0
            for name, d in raw.items():
                self._splits[name], cut = self._to_split(name, d)
                truncated += cut
            self.report.update(
                {f"{k}_examples": len(v.ids) for k, v in self._splits.items()}
                | {"labels": self.labels, "vocabulary": len(self.tokenizer), "truncated": truncated}
            )
        return self._splits

    def _to_split(self, name: str, d: LabelledText) -> tuple[_Split, int]:
        """Token ids and label indices of ``d``, and how many texts were cut to --max-tokens."""
        index = {label: k for k, label in enumerate(self.labels)}
        unseen = sorted(set(d.labels) - set(index))
        if unseen:
            raise UserError(
                f"{d.source or name}: label(s) {', '.join(map(repr, unseen[:5]))} in the "
                f"{name} set never occur in training (labels: {', '.join(self.labels)})"
            )
        ids = self.tokenizer.encode_batch(d.texts)
        truncated = 0
        if self.cfg.max_tokens:
            truncated = sum(len(x) > self.cfg.max_tokens for x in ids)
            ids = [x[: self.cfg.max_tokens] for x in ids]
        ids = [x or [UNK] for x in ids]  # text of unknown characters only: one <unk>
        labels = np.array([index[label] for label in d.labels], dtype=np.int64)
        return _Split(ids, labels, d.source), truncated

    def data_report(self) -> dict:
        self.splits()
        return dict(self.report)

    # ----- model
    def build_model(self) -> nn.Module:
        self._ensure_vocab()
        model = TextClassifier(self.model_cfg, len(self.tokenizer), len(self.labels))
        if self.cfg.embeddings and not self.from_checkpoint:
            self._load_vectors(model)
        if self.cfg.freeze_embeddings:
            model.embedding.weight.requires_grad_(False)
        return model

    def _load_vectors(self, model: TextClassifier) -> None:
        if self.tokenizer.kind != "word":
            raise UserError("--embeddings needs --tokenizer word")
        vectors, dim = read_vectors(self.cfg.embeddings, self.tokenizer.stoi)
        if dim != self.model_cfg.embedding_dim:
            raise UserError(
                f"--embeddings {self.cfg.embeddings} has {dim}-dimensional vectors; pass "
                f"--embedding-dim {dim}"
            )
        with torch.no_grad():
            for word, vec in vectors.items():
                model.embedding.weight[self.tokenizer.stoi[word]] = torch.from_numpy(vec)
        self.report["pretrained_vectors"] = f"{len(vectors)} of {len(self.tokenizer) - 4} words"

    # ----- batches
    @staticmethod
    def collate(seqs: list[list[int]]) -> tuple[Tensor, Tensor]:
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
        tokens = torch.full((len(seqs), int(lengths.max())), PAD, dtype=torch.long)
        for k, s in enumerate(seqs):
            tokens[k, : len(s)] = torch.tensor(s, dtype=torch.long)
        return tokens, lengths

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
        data = self._split(split)
        pred = self.logits(model, data.ids, device).argmax(1).numpy()
        k = len(self.labels)
        return np.bincount(data.labels * k + pred, minlength=k * k).reshape(k, k)

    def evaluate(self, model, split, device) -> dict[str, float]:
        data = self._split(split)
        logits = self.logits(model, data.ids, device)
        labels = torch.from_numpy(data.labels)
        pred = logits.argmax(1)
        k = len(self.labels)
        conf = np.bincount(data.labels * k + pred.numpy(), minlength=k * k).reshape(k, k)
        return {
            "accuracy": float((pred == labels).float().mean()),
            "macro_f1": macro_f1(conf),
            "loss": float(F.cross_entropy(logits, labels)),
        }

    def evaluation_plots(self, model, split, out, device) -> list[Path]:
        from lstmkit.viz import plot_heatmap

        conf = self.confusion(model, split, device)
        acc = np.trace(conf) / max(1, conf.sum())
        path = plot_heatmap(
            conf,
            Path(out) / f"confusion-{split}.png",
            row_labels=self.labels,
            col_labels=self.labels,
            title=f"{split}: accuracy {100 * acc:.1f}%, macro-F1 {100 * macro_f1(conf):.1f}%",
            xlabel="predicted",
            ylabel="true",
            cmap="Blues",
            fmt="d",
        )
        return [path]

    # ----- using a trained model
    def _encode_inputs(self, texts: list[str]) -> list[list[int]]:
        ids = self.tokenizer.encode_batch(texts)
        if self.cfg.max_tokens:
            ids = [x[: self.cfg.max_tokens] for x in ids]
        return [x or [UNK] for x in ids]

    def predict(self, model, inputs, device) -> list[dict]:
        probs = torch.softmax(self.logits(model, self._encode_inputs(inputs), device), -1)
        out = []
        for text, p in zip(inputs, probs, strict=True):
            out.append(
                {
                    "text": text,
                    "label": self.labels[int(p.argmax())],
                    "probabilities": {
                        lab: round(float(q), 4) for lab, q in zip(self.labels, p, strict=True)
                    },
                }
            )
        return out

    def examples(self) -> list[str]:
        return [
            "a gripping , beautifully acted film that stays with you",
            "a dull , lifeless mess with nothing to say",
        ]

    def inspect(self, model, inputs, out, device) -> list[Path]:
        """Per input: a PNG of the gates of both directions (the units that weigh most in the
        predicted class's score) under each token's share of that score, and an HTML page of
        the tokens shaded by that share (and by the attention weights, with attention)."""
        from lstmkit.viz import LinePanel, plot_gates
        from lstmkit.viz.html import TokenRow, write_token_page

        if not isinstance(model.encoder, LSTM):
            raise UserError(
                f"inspect needs an LSTM model (this one was trained with --cell "
                f"{self.model_cfg.encoder.cell})"
            )
        inputs = inputs or self.examples()[:1]
        paths: list[Path] = []
        out = Path(out)
        enc = model.encoder
        H, D, layer = enc.hidden_size, 2 if enc.bidirectional else 1, enc.num_layers - 1
        arrows = ("→", "←")
        for k, text in enumerate(inputs, 1):
            ids = self._encode_inputs([text])[0]
            pieces = [self.tokenizer.token(i) for i in ids]
            tokens, lengths = self.collate([ids])
            tokens, lengths = tokens.to(device), lengths.to(device)
            with torch.no_grad(), record_gates(model) as rec:
                p = torch.softmax(model(tokens, lengths)[0].float(), -1)
            cls = int(p.argmax())
            label = self.labels[cls]
            parts = token_contributions(model, tokens, lengths, cls)
            units = parts["units"]  # (T, D*H): each unit's share of the score at each step
            # the traces of the last layer, the one the classifier reads; (T, 1, H) when packed
            traces = [rec[layer, d] for d in range(D)]
            gates = {
                g: torch.cat(
                    [
                        (getattr(t, g)[:, 0] if t.i.shape[0] != 1 else getattr(t, g)[0]).cpu()
                        for t in traces
                    ],
                    dim=1,
                )
                for g in ("i", "f", "o", "c")
            }
            per_unit = units.sum(0)
            shown = [int(u) for u in per_unit.abs().argsort(descending=True, stable=True)[:16]]
            labels = [f"{arrows[u // H]}{u % H} ({float(per_unit[u]):+.2f})" for u in shown]
            steps = {"forward →": units[:, :H].sum(1)}
            if D == 2:
                steps["backward ←"] = units[:, H:].sum(1)
                steps["both"] = units.sum(1)
            panels = [
                LinePanel(
                    f"each token's share of the score of {label!r}",
                    steps,
                    ylabel="share",
                    emphasize="both" if D == 2 else None,
                    zero_line=True,
                )
            ]
            if parts["attention"] is not None:
                panels.append(
                    LinePanel("attention weight", {"attention": parts["attention"]}, ylabel="α")
                )
            directions = "forward → and backward ← directions" if D == 2 else "forward direction"
            caption = (
                f"Units shown: the {len(shown)} of {D * H} ({directions}, layer {layer + 1}) "
                f"with the largest share, in size, of the score of {label!r} (its logit less "
                "the mean logit), largest first; in brackets that share. A token's share is "
                f"{_SHARE_RULE[model.pooling]}; the encoder output at a token has read the "
                "tokens before it (forward) or after it (backward), not that token alone."
            )
            title = f"{label} ({float(p[cls]):.2f}): “{_short(text)}”"
            paths.append(
                plot_gates(
                    gates,
                    out / f"gates-{k}.png",
                    step_labels=pieces,
                    units=shown,
                    unit_labels=labels,
                    c_lines=0,
                    line_panels=panels,
                    title=title,
                    caption=caption,
                )
            )
            total = units.sum(1)
            scale = float(torch.cat(list(steps.values())).abs().max())
            rows = [TokenRow(f"share of the score of {label!r}", total, signed=True, scale=scale)]
            if D == 2:
                rows += [
                    TokenRow("read by the forward direction", steps["forward →"], True, scale),
                    TokenRow("read by the backward direction", steps["backward ←"], True, scale),
                ]
            if parts["attention"] is not None:
                rows.append(TokenRow("attention weight", parts["attention"]))
            probs = ", ".join(
                f"{lab} {float(q):.3f}" for lab, q in zip(self.labels, p, strict=True)
            )
            notes = [
                f"Blue: the token's share pushes towards {label!r}; orange-red: against it; "
                "the darker, the larger (rows of shares on one scale). Hover for values.",
                f"A token's share is {_SHARE_RULE[model.pooling]}, summed over the units of "
                f"layer {layer + 1}; the shares add up to the score of {label!r} (its logit less "
                f"the mean logit, here {float(total.sum() + parts['bias']):+.3f}) less a "
                f"constant {float(parts['bias']):+.3f}. The encoder output at a token has read "
                "the tokens before it (forward) or after it (backward), not that token alone.",
            ]
            if parts["attention"] is not None:
                notes.append("Attention weight: the softmax weight of the token in the pooling.")
            paths.append(
                write_token_page(
                    out / f"gates-{k}.html",
                    title=f"lstmkit inspect: {text[:60]}",
                    heading=f"{label} ({float(p[cls]):.2f})",
                    text=text,
                    pieces=pieces,
                    rows=rows,
                    lines=[probs],
                    notes=notes,
                )
            )
        return paths


_SHARE_RULE = {
    "attention": "its attention weight × (w_c − mean w)·y_t, the class weights w against the "
    "encoder output y_t",
    "mean": "(w_c − mean w)·y_t / T, the class weights w against the encoder output y_t",
    "max": "(w_c − mean w)·y_t over the units whose maximum over time is at that token",
    "last": "(w_c − mean w)·y_t at the last token (forward units) and the first (backward)",
}


@torch.no_grad()
def token_contributions(model: TextClassifier, tokens: Tensor, lengths: Tensor, cls: int) -> dict:
    """Exact split of the score of class ``cls`` (its logit less the mean logit) over the time
    steps and units of one text, from how the classifier pools.

    Returns ``units`` ``(T, D*H)``: the share of each unit at each step, which add up to the
    score less ``bias`` (the class bias less the mean bias); ``attention`` ``(T,)`` with
    attention pooling, else None. ``tokens`` and ``lengths`` hold one text, ``(1, T)`` and
    ``(1,)``.
    """
    y = model.encode(tokens, lengths)[0].float()
    T = int(lengths[0])
    y = y[:T]
    W, b = model.head.weight.float(), model.head.bias.float()
    w = W[cls] - W.mean(0)  # (D*H,)
    attention = None
    if model.pooling == "attention":
        attention = torch.softmax(model.attn(y).squeeze(-1).float(), 0)
        weight = attention[:, None].expand_as(y)
    elif model.pooling == "mean":
        weight = torch.full_like(y, 1.0 / T)
    elif model.pooling == "max":
        weight = torch.zeros_like(y)
        weight[y.argmax(0), torch.arange(y.shape[1])] = 1.0
    else:  # last: the forward half at the last step, the backward half at the first
        weight = torch.zeros_like(y)
        half = y.shape[1] // 2 if model.encoder.bidirectional else y.shape[1]
        weight[T - 1, :half] = 1.0
        weight[0, half:] = 1.0
    return {
        "units": (weight * y * w).cpu(),
        "attention": attention.cpu() if attention is not None else None,
        "bias": float(b[cls] - b.mean()),
    }


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
