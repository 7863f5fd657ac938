import numpy as np
import pytest
import torch

from lstmkit.data.labelled_sets import (
    describe_read,
    pad_ids,
    split_labelled,
    stratified_folds,
    stratified_order,
)
from lstmkit.data.text import LabelledText
from lstmkit.data.tokenize import PAD
from lstmkit.utils.errors import UserError


def labelled(n: int, rare_every: int = 4) -> LabelledText:
    labels = ["rare" if k % rare_every == 0 else "common" for k in range(n)]
    return LabelledText([f"text {k}" for k in range(n)], labels, source="d.csv")


def test_pad_ids_pads_to_the_longest_and_keeps_the_lengths():
    tokens, lengths = pad_ids([[5, 6], [7, 8, 9], [4]])
    assert tokens.tolist() == [[5, 6, PAD], [7, 8, 9], [4, PAD, PAD]]
    assert lengths.tolist() == [2, 3, 1] and tokens.dtype == lengths.dtype == torch.long


def test_stratified_folds_have_every_label_in_proportion():
    data = labelled(103)
    order = stratified_order(data.labels, np.random.default_rng(0))
    assert sorted(order.tolist()) == list(range(103))
    fold = stratified_folds(data.labels, order, 5)
    sizes = np.bincount(fold, minlength=5)
    assert sizes.max() - sizes.min() <= 1
    rare = np.array(data.labels) == "rare"
    per_fold = np.bincount(fold[rare], minlength=5)
    assert per_fold.max() - per_fold.min() <= 1  # 26 rare examples: 5 or 6 per fold


def test_split_labelled_shares_files_and_folds():
    data = labelled(40)
    read = []

    def reader(split, path):
        read.append((split, path))
        return labelled(8)

    sets = split_labelled(data, reader, test="t.csv", valid_fraction=0.25, seed=1)
    assert read == [("test", "t.csv")] and len(sets["test"]) == 8
    assert len(sets["valid"]) == 10 and len(sets["train"]) == 30
    assert not set(sets["valid"].texts) & set(sets["train"].texts)
    assert sets["train"].texts == sorted(sets["train"].texts, key=lambda t: int(t.split()[1]))
    folds = [split_labelled(data, None, cv=4, fold=k, seed=2) for k in range(4)]
    assert sorted(t for f in folds for t in f["test"].texts) == sorted(data.texts)
    with pytest.raises(UserError, match="drop --valid/--test"):
        split_labelled(data, None, cv=4, fold=0, valid="v.csv")
    with pytest.raises(UserError, match="give --fold"):
        split_labelled(data, None, cv=4)
    with pytest.raises(UserError, match="the valid set is empty"):
        split_labelled(labelled(3), None, valid_fraction=0.0)


def test_describe_read_names_the_split_and_counts_warnings_left_out():
    data = labelled(4)
    data.lines, data.header = 5, 1
    data.notes = ["read as --format csv"]
    data.warnings, data.warned = ["d.csv:3: odd"], 3
    assert describe_read("valid", data) == {
        "valid_file": "4 examples from 5 lines: 1 header; 3 warnings",
        "valid_notes": "read as --format csv",
        "valid_warnings": "d.csv:3: odd (and 2 more)",
    }
