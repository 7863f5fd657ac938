"""The labelled text sets of a classifier: read from the user's files, split, and turned into
token ids.

:class:`LabelledSets` reads the training examples (:func:`lstmkit.data.text.read_labelled`),
takes the validation and test sets from their own files or a seeded share of the training
set, or, with k-fold cross-validation, fold k as the test set (:func:`split_labelled`); it fits
the labels and the tokenizer on the training set and keeps what reading found for the ``data``
log line. Stratified orders and folds (:func:`stratified_order`, :func:`stratified_folds`)
keep every fold and validation share in the labels' proportions; :func:`pad_ids` batches the
token ids.

Its options are the fields of a task's config (sentiment's ``SentimentConfig``): how to read
(``format``, ``text_column``, ``label_column``, ``header``, ``quoting``, ``encoding``), where
the sets come from (``train``, ``valid``, ``test``, ``valid_fraction``, ``test_fraction``,
``split_seed``, ``cv``, ``fold``) and how to tokenise (``tokenizer``, ``lowercase``,
``split_contractions``, ``min_count``, ``max_vocab``, ``vocab_size``, ``max_tokens``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lstmkit.data.text import LabelledText, check_encoding, read_labelled
from lstmkit.data.tokenize import PAD, UNK, TextTokenizer, fit_tokenizer
from lstmkit.utils.errors import UserError


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


def split_labelled(
    data: LabelledText,
    read: Callable[[str, str], LabelledText],
    *,
    valid: str = "",
    test: str = "",
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    cv: int = 0,
    fold: int = -1,
) -> dict[str, LabelledText]:
    """``test``, ``valid`` and ``train`` sets from the training examples ``data``.

    A set given as a file (``valid``, ``test``) is read by ``read(split, path)``; otherwise it
    is a seeded share of ``data``. With ``cv`` folds, fold ``fold`` (stratified) is the test
    set and the first ``valid_fraction`` of the rest (still stratified) validates. The
    training set keeps the file order."""
    rng = np.random.default_rng(seed)
    out: dict[str, LabelledText] = {}
    if cv:
        if valid or test:
            raise UserError("--cv takes its test folds from --train; drop --valid/--test")
        if fold < 0:
            raise UserError("--cv: give --fold, or let `lstmkit train` run every fold")
        order = stratified_order(data.labels, rng)
        in_fold = stratified_folds(data.labels, order, cv) == fold
        out["test"] = data.subset(np.flatnonzero(in_fold))
        rest = order[~in_fold[order]]  # still spread evenly: its first share validates
    else:
        rest = rng.permutation(len(data))
        if test:
            out["test"] = read("test", test)
        else:
            n_test = round(len(data) * test_fraction)
            out["test"], rest = data.subset(rest[:n_test]), rest[n_test:]
    if valid:
        out["valid"] = read("valid", valid)
    else:
        n_valid = round(len(rest) * valid_fraction) if cv else round(len(data) * valid_fraction)
        out["valid"], rest = data.subset(rest[:n_valid]), rest[n_valid:]
    out["train"] = data.subset(np.sort(rest))
    for split in ("valid", "test"):
        if not len(out[split]):
            raise UserError(
                f"the {split} set is empty; give --{split} or a larger --{split}-fraction"
            )
    return out


def describe_read(split: str, data: LabelledText) -> dict[str, str]:
    """What reading the file of ``split`` gave, against its lines, for the ``data`` log line."""
    report = {f"{split}_file": data.summary()}
    if data.notes:
        report[f"{split}_notes"] = "; ".join(data.notes)
    if data.warnings:
        more = data.warned - len(data.warnings)
        report[f"{split}_warnings"] = "; ".join(data.warnings) + (
            f" (and {more} more)" if more else ""
        )
    return report


def read_with(cfg: Any, path: str, **kw: Any) -> LabelledText:
    """:func:`read_labelled` of ``path`` with the read options of the config ``cfg``."""
    check_encoding(cfg.encoding)
    return read_labelled(
        path,
        fmt=cfg.format,
        text_column=cfg.text_column,
        label_column=cfg.label_column,
        encoding=cfg.encoding,
        header=cfg.header,
        quoting=cfg.quoting,
        **kw,
    )


def pad_ids(seqs: list[list[int]]) -> tuple[Tensor, Tensor]:
    """A batch of token-id sequences: ``tokens`` ``(B, T)`` padded with ``PAD`` to the
    longest, and ``lengths`` ``(B,)``."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    tokens = torch.full((len(seqs), int(lengths.max())), PAD, dtype=torch.long)
    for k, s in enumerate(seqs):
        tokens[k, : len(s)] = torch.tensor(s, dtype=torch.long)
    return tokens, lengths


@dataclass
class EncodedSplit:
    """One set as the model reads it: token ids and label indices."""

    ids: list[list[int]]
    labels: np.ndarray
    source: str


class LabelledSets:
    """The sets of a classifier given by ``cfg`` (see the module docstring), read on first
    use; ``tokenizer`` and ``labels`` come from a checkpoint or are fitted on the training
    set. :attr:`report` gathers what was read, for the ``data`` log line."""

    def __init__(self, cfg: Any, tokenizer: TextTokenizer | None = None, labels=()) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.labels: list[str] = list(labels)
        self.report: dict = {}
        self._splits: dict[str, EncodedSplit] | None = None
        self._files: dict[str, EncodedSplit] = {}  # evaluate --data: files read after training

    def read(self, split: str, path: str) -> LabelledText:
        data = read_with(self.cfg, path)
        self.report.update(describe_read(split, data))
        return data

    def raw_splits(self) -> dict[str, LabelledText]:
        """The sets as read (texts and label names), before tokenising."""
        c = self.cfg
        if not c.train:
            raise UserError("--train is required: the file or folder of training examples")
        data = read_with(c, c.train)
        if not len(data):
            raise UserError(f"{c.train}: no examples (empty file or only empty lines)")
        self.report["skipped_empty"] = data.skipped
        self.report.update(describe_read("train", data))
        return split_labelled(
            data,
            self.read,
            valid=c.valid,
            test=c.test,
            valid_fraction=c.valid_fraction,
            test_fraction=c.test_fraction,
            seed=c.split_seed,
            cv=c.cv,
            fold=c.fold,
        )

    def fit(self, raw: dict[str, LabelledText] | None = None) -> None:
        """The labels and the tokenizer of the training set, unless they are known."""
        if self.tokenizer is not None:
            return
        c = self.cfg
        train = (raw or self.raw_splits())["train"]
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

    def splits(self) -> dict[str, EncodedSplit]:
        if self._splits is None:
            raw = self.raw_splits()
            self.fit(raw)
            self._splits, truncated = {}, 0
            for name, d in raw.items():
                self._splits[name], cut = self.encode_split(name, d)
                truncated += cut
            self.report.update(
                {f"{k}_examples": len(v.ids) for k, v in self._splits.items()}
                | {"labels": self.labels, "vocabulary": len(self.tokenizer), "truncated": truncated}
            )
        return self._splits

    def split(self, name: str) -> EncodedSplit:
        """A set of the run (``train``, ``valid``, ``test``) or a file added by :meth:`add`."""
        return self._files[name] if name in self._files else self.splits()[name]

    def add(self, name: str, data: LabelledText) -> None:
        """``data`` (read after training) as the set ``name``."""
        self.fit()
        self._files[name], _ = self.encode_split(name, data)

    def encode(self, texts: list[str]) -> tuple[list[list[int]], int]:
        """Token ids of ``texts`` cut to ``max_tokens``, and how many were cut; a text of
        unknown characters only is one ``<unk>``."""
        ids = self.tokenizer.encode_batch(texts)
        truncated = 0
        if self.cfg.max_tokens:
            truncated = sum(len(x) > self.cfg.max_tokens for x in ids)
            ids = [x[: self.cfg.max_tokens] for x in ids]
        return [x or [UNK] for x in ids], truncated

    def encode_split(self, name: str, d: LabelledText) -> tuple[EncodedSplit, int]:
        """Token ids and label indices of ``d``, and how many texts were cut to max_tokens."""
        index = {label: k for k, label in enumerate(self.labels)}
        unseen = sorted(set(d.labels) - set(index))
        if unseen:
            raise UserError(
                f"{d.source or name}: label(s) {', '.join(map(repr, unseen[:5]))} in the "
                f"{name} set never occur in training (labels: {', '.join(self.labels)})"
            )
        ids, truncated = self.encode(d.texts)
        labels = np.array([index[label] for label in d.labels], dtype=np.int64)
        return EncodedSplit(ids, labels, d.source), truncated

    def source(self, split: str) -> str:
        """Where the set ``split`` (``valid`` or ``test``) comes from, in words."""
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
