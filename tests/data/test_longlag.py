"""The long-time-lag generators against their papers' definitions, checked from the outputs."""

from __future__ import annotations

import math
import re

import pytest
import torch

from lstmkit.data import (
    ADDING_BASELINE_MSE,
    PAPER_RESULTS,
    REBER_SYMBOLS,
    TEMPORAL_ORDER_CLASSES,
    TEMPORAL_ORDER_SYMBOLS,
    LongLagBatch,
    adding_baseline_mse,
    adding_problem,
    continual_embedded_reber,
    copy_memory,
    copy_memory_baseline,
    embedded_reber,
    multiplication_baseline_mse,
    multiplication_problem,
    reber_prediction_correct,
    reber_step_correct,
    temporal_order,
)

# Statistical checks use this many samples; relative tolerances are about 5 standard errors.
N_STAT = 20_000


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def valid_mask(batch: LongLagBatch) -> torch.Tensor:
    return torch.arange(batch.inputs.shape[1]) < batch.lengths[:, None]


# ---------------------------------------------------------------------------------------------
# Adding problem, 1997
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def adding97() -> LongLagBatch:
    return adding_problem(N_STAT, 100, generator=gen(1))


def test_adding97_shapes_and_lengths(adding97):
    x, y, lengths, marks = adding97
    assert x.shape == (N_STAT, 110, 2) and x.dtype == torch.float32
    assert y.shape == (N_STAT,) and y.dtype == torch.float32
    assert lengths.dtype == torch.int64 and marks.shape == (N_STAT, 2)
    # "random lengths between the minimal sequence length T and T + T/10", both ends included
    assert set(lengths.tolist()) == set(range(100, 111))


def test_adding97_markers(adding97):
    x, _, lengths, marks = adding97
    values, markers = x[..., 0], x[..., 1]
    rows = torch.arange(N_STAT)
    assert (markers[:, 0] == -1).all() and (markers[rows, lengths - 1] == -1).all()
    # X1 among the first ten pairs, X2 among the first T/2 - 1 pairs other than X1's.
    assert marks[:, 0].min() == 0 and marks[:, 0].max() == 9
    assert marks[:, 1].min() == 0 and marks[:, 1].max() == 49
    assert (marks[:, 0] != marks[:, 1]).all()
    # +1 exactly at the marks, except a mark on the first pair, which keeps -1 and value 0.
    expected = torch.zeros_like(markers)
    expected[rows, marks[:, 0]] = 1
    expected[rows, marks[:, 1]] = 1
    expected[:, 0] = -1
    expected[rows, lengths - 1] = -1
    assert torch.equal(markers, expected)
    on_first = (marks == 0).any(dim=1)
    assert (values[on_first, 0] == 0).all()
    assert abs(on_first.float().mean().item() - (0.1 + 0.9 / 49)) < 0.01
    # Values in [-1, 1]; nothing past the length.
    assert values.abs().max() <= 1
    assert (x[~valid_mask(adding97)] == 0).all()


def test_adding97_targets_follow_from_inputs(adding97):
    x, y, _, _ = adding97
    marked_sum = (x[..., 0] * (x[..., 1] == 1)).sum(dim=1)
    assert torch.allclose(y, 0.5 + marked_sum / 4)


def test_adding97_target_statistics(adding97):
    y = adding97.targets.double()
    assert abs(y.mean().item() - 0.5) < 0.005
    assert y.var().item() == pytest.approx(ADDING_BASELINE_MSE["hochreiter1997"], rel=0.04)
    assert y.min() >= 0 and y.max() <= 1


def test_adding_baseline_values():
    assert ADDING_BASELINE_MSE["le2015"] == pytest.approx(1 / 6)
    # (2 - 1/10 - (9/10)/49) / 48 = 461/11760 at T = 100
    assert ADDING_BASELINE_MSE["hochreiter1997"] == pytest.approx(461 / 11760, rel=1e-12)
    assert adding_baseline_mse(1000) == pytest.approx((1.9 - 0.9 / 499) / 48)
    assert adding_baseline_mse(7, variant="le2015") == pytest.approx(1 / 6)


# ---------------------------------------------------------------------------------------------
# Adding problem, Le et al. 2015
# ---------------------------------------------------------------------------------------------


def test_adding_le2015():
    x, y, lengths, marks = adding_problem(N_STAT, 60, variant="le2015", generator=gen(2))
    assert x.shape == (N_STAT, 60, 2) and (lengths == 60).all()
    values, markers = x[..., 0], x[..., 1]
    assert ((markers == 0) | (markers == 1)).all()
    assert (markers[:, :30].sum(dim=1) == 1).all() and (markers[:, 30:].sum(dim=1) == 1).all()
    assert (marks[:, 0] < 30).all() and (marks[:, 1] >= 30).all()
    assert values.min() >= 0 and values.max() < 1
    assert torch.allclose(y, (values * markers).sum(dim=1))
    assert abs(y.double().mean().item() - 1.0) < 0.01
    assert y.double().var().item() == pytest.approx(1 / 6, rel=0.04)


# ---------------------------------------------------------------------------------------------
# Multiplication problem
# ---------------------------------------------------------------------------------------------


def test_multiplication():
    batch = multiplication_problem(N_STAT, 100, generator=gen(3))
    x, y, lengths, marks = batch
    values, markers = x[..., 0], x[..., 1]
    rows = torch.arange(N_STAT)
    assert x.shape == (N_STAT, 110, 2)
    assert (markers[:, 0] == -1).all() and (markers[rows, lengths - 1] == -1).all()
    assert values.min() >= 0 and values.max() <= 1
    on_first = (marks == 0).any(dim=1)
    assert (values[on_first, 0] == 1).all()  # "we set X1 to 1.0"
    product = torch.where(markers == 1, values, torch.ones_like(values)).prod(dim=1)
    assert torch.allclose(y, product)
    assert torch.equal(y, values[rows, marks[:, 0]] * values[rows, marks[:, 1]])
    assert y.double().var().item() == pytest.approx(multiplication_baseline_mse(100), rel=0.05)
    assert (batch.inputs[~valid_mask(batch)] == 0).all()


# ---------------------------------------------------------------------------------------------
# Temporal order
# ---------------------------------------------------------------------------------------------

SYM = {s: i for i, s in enumerate(TEMPORAL_ORDER_SYMBOLS)}
# The paper's rules, written out.
RULES = {
    "6a": {"XX": "Q", "XY": "R", "YX": "S", "YY": "U"},
    "6b": {
        "XXX": "Q",
        "XXY": "R",
        "XYX": "S",
        "XYY": "U",
        "YXX": "V",
        "YXY": "A",
        "YYX": "B",
        "YYY": "C",
    },
}


@pytest.mark.parametrize(
    ("variant", "ranges"),
    [("6a", [(10, 20), (50, 60)]), ("6b", [(10, 20), (33, 43), (66, 76)])],
)
def test_temporal_order(variant, ranges):
    n = 6000
    batch = temporal_order(n, variant=variant, generator=gen(4))
    x, y, lengths, marks = batch
    k = len(ranges)
    assert x.shape == (n, 110, 8) and y.dtype == torch.int64 and marks.shape == (n, k)
    valid = valid_mask(batch)
    assert (x.sum(dim=-1) == valid).all()  # one-hot inside the length, zero past it
    assert set(lengths.tolist()) == set(range(100, 111))
    symbols = x.argmax(dim=-1)
    rows = torch.arange(n)
    # The paper's order: E starts, B (the trigger) ends.
    assert (symbols[:, 0] == SYM["E"]).all() and (symbols[rows, lengths - 1] == SYM["B"]).all()
    relevant = (symbols == SYM["X"]) | (symbols == SYM["Y"])
    assert (relevant.sum(dim=1) == k).all()
    for j, (lo, hi) in enumerate(ranges):  # paper positions are 1-based
        assert marks[:, j].min() == lo - 1 and marks[:, j].max() == hi - 1
        assert relevant[rows, marks[:, j]].all()
    # The class is the X/Y pattern in the paper's rule order (XX -> Q, XY -> R, ...).
    names = TEMPORAL_ORDER_CLASSES[variant]
    for i in range(200):
        pattern = "".join(TEMPORAL_ORDER_SYMBOLS[s] for s in symbols[i][relevant[i]].tolist())
        assert names[y[i]] == RULES[variant][pattern]
    freq = torch.bincount(y, minlength=2**k).double() / n
    assert (freq - 1 / 2**k).abs().max() < 0.03


# ---------------------------------------------------------------------------------------------
# Embedded Reber grammar: an independent acceptor
# ---------------------------------------------------------------------------------------------

# Regular expression of the Reber grammar, derived by hand from the transition graph, and of the
# embedded grammar around it.
_REBER_TAIL = "(XT*VP)*(SE|XT*VVE)"
_REBER_RE = f"B(TS*X{_REBER_TAIL}|PT*V(VE|P{_REBER_TAIL}))"
EMBEDDED_RE = re.compile(f"B(T{_REBER_RE}T|P{_REBER_RE}P)E")

# The same grammar as an explicit graph: state -> {symbol: next state}.
_INNER = {
    "0": {"T": "1", "P": "2"},
    "1": {"S": "1", "X": "3"},
    "2": {"T": "2", "V": "4"},
    "3": {"X": "2", "S": "5"},
    "4": {"P": "3", "V": "5"},
    "5": {"E": "out"},
}
GRAPH: dict[str, dict[str, str]] = {"start": {"B": "o1"}, "o1": {"T": "T.in", "P": "P.in"}}
for _br in "TP":
    GRAPH[f"{_br}.in"] = {"B": f"{_br}.0"}
    for _s, _edges in _INNER.items():
        GRAPH[f"{_br}.{_s}"] = {sym: f"{_br}.{nxt}" for sym, nxt in _edges.items()}
    GRAPH[f"{_br}.out"] = {_br: "pen"}
GRAPH["pen"] = {"E": "end"}
GRAPH["end"] = {}


def walk(text: str, continual: bool = False) -> list[set[str]]:
    """Legal next symbols after each symbol of ``text``; fails on an illegal symbol."""
    graph = dict(GRAPH, end={"B": "o1"}) if continual else GRAPH
    state, legal = "start", []
    for sym in text:
        assert sym in graph[state], f"{sym!r} not allowed in state {state} of {text!r}"
        state = graph[state][sym]
        legal.append(set(graph[state]))
    return legal


def decode(row: torch.Tensor) -> str:
    return "".join(REBER_SYMBOLS[i] for i in row.argmax(dim=-1).tolist())


def hot_to_set(row: torch.Tensor) -> set[str]:
    return {REBER_SYMBOLS[i] for i in torch.nonzero(row).flatten().tolist()}


def test_grammar_regex_matches_graph():
    # The two encodings of the grammar agree on a few hand-written strings.
    good = ["BTBTXSETE", "BPBPVVEPE", "BTBTSSXXTVVETE", "BPBPVPXVPXVPXVVEPE", "BTBTXXVPSETE"]
    bad = ["BTBTXSEPE", "BTBTSSSETE", "BPBPVSPSEPE", "BTBPVVE", "BTBTXSET"]
    for s in good:
        assert EMBEDDED_RE.fullmatch(s)
        walk(s)
    for s in bad:
        assert not EMBEDDED_RE.fullmatch(s)


@pytest.fixture(scope="module")
def reber() -> LongLagBatch:
    return embedded_reber(2000, generator=gen(5))


def test_embedded_reber_strings(reber):
    x, y, lengths, marks = reber
    n, t_max, nsym = x.shape
    assert nsym == 7 and y.shape == x.shape and t_max == lengths.max()
    valid = valid_mask(reber)
    assert (x.sum(dim=-1) == valid).all() and (y[~valid] == 0).all()
    assert lengths.min() == 9  # "short time lags (of as few as 9 steps)"
    assert torch.equal(marks, torch.stack([torch.ones_like(lengths), lengths - 2], dim=1))
    seconds = []
    for i in range(n):
        s = decode(x[i, : lengths[i]])
        assert EMBEDDED_RE.fullmatch(s), s
        assert s[1] == s[-2] and s[marks[i, 0]] == s[marks[i, 1]]
        seconds.append(s[1])
        legal = walk(s)
        for t in range(len(s)):
            assert hot_to_set(y[i, t]) == legal[t]
            if t + 1 < len(s):
                assert s[t + 1] in legal[t]
        assert legal[-1] == set() and (y[i, lengths[i] - 1] == 0).all()
    assert abs(seconds.count("T") / n - 0.5) < 0.05
    # Expected length: 4 outer symbols + B + 7 expected symbols of the Reber walk = 12.
    assert abs(lengths.double().mean().item() - 12.0) < 0.3


def test_continual_embedded_reber():
    length = 5000
    x, y, lengths, marks = continual_embedded_reber(length, generator=gen(6))
    assert x.shape == (1, length, 7) and y.shape == (1, length, 7)
    assert lengths.tolist() == [length] and (x.sum(dim=-1) == 1).all()
    stream = decode(x[0])
    legal = walk(stream, continual=True)  # the whole stream is a walk of the looped grammar
    for t in range(length):
        assert hot_to_set(y[0, t]) == legal[t]
    # Cut after every E that ends a string (the one followed by the next string's B).
    pieces = re.findall(r".*?E(?=B|$)|.+$", stream)
    assert "".join(pieces) == stream
    starts = [sum(map(len, pieces[:j])) for j in range(len(pieces))]
    for piece in pieces[:-1]:
        assert EMBEDDED_RE.fullmatch(piece), piece
    assert marks[0].tolist() == [s + 1 for s in starts if s + 1 < length]
    assert all(stream[m] in "TP" for m in marks[0].tolist())


def test_continual_embedded_reber_short():
    one = continual_embedded_reber(1, generator=gen(0))
    assert one.marks.tolist() == [[-1]] and decode(one.inputs[0]) == "B"
    assert hot_to_set(one.targets[0, 0]) == {"T", "P"}


def test_reber_prediction_correct(reber):
    x, y, lengths, _ = reber
    assert reber_prediction_correct(y, y, lengths).all()
    # Garbage past the length and at the final E (nothing to predict) is not judged.
    outputs = y.clone()
    outputs[~valid_mask(reber)] = 5.0
    outputs[torch.arange(len(y)), lengths - 1] = torch.rand(7)
    assert reber_prediction_correct(outputs, y, lengths).all()
    # At the step before last, an illegal unit as active as the legal one fails the string.
    bad = y.clone()
    bad[0, lengths[0] - 3] = 1.0
    verdict = reber_prediction_correct(bad, y, lengths)
    assert not verdict[0] and verdict[1:].all()
    steps = reber_step_correct(bad, y, lengths)
    assert steps.shape == y.shape[:2] and (~steps).sum() == 1
    # Gers et al. 2000: squared error of every unit below 0.49.
    soft = 0.1 + 0.8 * y
    assert reber_prediction_correct(soft, y, lengths, criterion="gers2000").all()
    soft[2, 0, 0] = 0.75  # target 0 at B after B: error 0.75^2 > 0.49
    assert not reber_prediction_correct(soft, y, lengths, criterion="gers2000")[2]
    with pytest.raises(ValueError, match="'nope'"):
        reber_prediction_correct(y, y, lengths, criterion="nope")
    with pytest.raises(ValueError, match="shape"):
        reber_prediction_correct(y[:, :-1], y, lengths)


# ---------------------------------------------------------------------------------------------
# Copy memory
# ---------------------------------------------------------------------------------------------


def test_copy_memory_layout():
    n, delay, k, m = 500, 30, 10, 8
    x, y, lengths, marks = copy_memory(n, delay, n_symbols=m, copy_len=k, generator=gen(7))
    total = delay + 2 * k
    assert x.shape == (n, total, m + 2) and y.shape == (n, total) and y.dtype == torch.int64
    assert (lengths == total).all() and (x.sum(dim=-1) == 1).all()
    seq = x.argmax(dim=-1)
    data = seq[:, :k]
    assert data.min() == 1 and data.max() == m
    assert (seq[:, k : k + delay - 1] == 0).all()  # delay - 1 blanks
    assert (seq[:, k + delay - 1] == m + 1).all()  # the delimiter
    assert (seq[:, k + delay :] == 0).all()  # copy_len blanks
    assert (y[:, : total - k] == 0).all() and torch.equal(y[:, total - k :], data)
    assert marks.tolist() == [list(range(k)) + [k + delay - 1]] * n


def test_copy_memory_baseline_is_memoryless_cross_entropy():
    delay, k, m = 100, 10, 8
    assert copy_memory_baseline(delay) == pytest.approx(10 * math.log(8) / 120)
    _, y, _, _ = copy_memory(200, delay, generator=gen(8))
    # Blank with certainty until the copy phase, then uniform over the data symbols.
    logits = torch.full((200, delay + 2 * k, m + 2), -1e9)
    logits[:, : delay + k, 0] = 0
    logits[:, delay + k :, 1 : m + 1] = 0
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), y)
    assert ce.item() == pytest.approx(copy_memory_baseline(delay, m, k), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# Randomness, arguments, paper table
# ---------------------------------------------------------------------------------------------

CALLS = [
    lambda g: adding_problem(64, 40, generator=g),
    lambda g: adding_problem(64, 40, variant="le2015", generator=g),
    lambda g: multiplication_problem(64, 40, generator=g),
    lambda g: temporal_order(64, variant="6b", generator=g),
    lambda g: embedded_reber(64, generator=g),
    lambda g: continual_embedded_reber(300, generator=g),
    lambda g: copy_memory(64, 20, generator=g),
]


@pytest.mark.parametrize("call", CALLS)
def test_seeds(call):
    a, b, c = call(gen(11)), call(gen(11)), call(gen(12))
    for u, v in zip(a, b, strict=True):
        assert torch.equal(u, v)
    assert not torch.equal(a.inputs, c.inputs)
    torch.manual_seed(3)
    d = call(None)
    torch.manual_seed(3)
    e = call(None)
    assert torch.equal(d.inputs, e.inputs) and torch.equal(d.targets, e.targets)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: adding_problem(0), "n must be >= 1, got 0"),
        (lambda: adding_problem(4, 19), "seq_len must be >= 20, got 19"),
        (lambda: adding_problem(4, 1, variant="le2015"), "seq_len must be >= 2, got 1"),
        (lambda: adding_problem(4, variant="1997"), r"'1997'.*'hochreiter1997', 'le2015'"),
        (lambda: multiplication_problem(4, 10), "seq_len must be >= 20, got 10"),
        (lambda: multiplication_problem(-1), "n must be >= 1, got -1"),
        (lambda: temporal_order(4, variant="6c"), r"'6c'.*'6a', '6b'"),
        (lambda: temporal_order(0), "n must be >= 1, got 0"),
        (lambda: embedded_reber(0), "n must be >= 1, got 0"),
        (lambda: continual_embedded_reber(0), "length must be >= 1, got 0"),
        (lambda: copy_memory(4, 0), "delay must be >= 1, got 0"),
        (lambda: copy_memory(4, n_symbols=0), "n_symbols must be >= 1, got 0"),
        (lambda: copy_memory(4, copy_len=0), "copy_len must be >= 1, got 0"),
        (lambda: copy_memory_baseline(0), "delay must be >= 1, got 0"),
        (lambda: adding_baseline_mse(10), "seq_len must be >= 20, got 10"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_types():
    with pytest.raises(TypeError, match="n must be an int"):
        adding_problem(2.5)
    with pytest.raises(TypeError, match="generator"):
        embedded_reber(2, generator=0)


def test_paper_results_table():
    expected = {
        "embedded_reber": 8440,
        "continual_embedded_reber": None,
        "adding_problem_hochreiter1997_T100": 74000,
        "adding_problem_hochreiter1997_T500": 209000,
        "adding_problem_hochreiter1997_T1000": 853000,
        "adding_problem_le2015": None,
        "multiplication_problem_T100": 482000,
        "temporal_order_6a": 31390,
        "temporal_order_6b": 571100,
        "copy_memory": None,
    }
    assert {k: v["lstm_sequences"] for k, v in PAPER_RESULTS.items()} == expected
    for entry in PAPER_RESULTS.values():
        assert set(entry) == {"paper", "criterion", "lstm_sequences", "lstm_solved", "notes"}
        assert all(isinstance(entry[f], str) and entry[f] for f in entry if f != "lstm_sequences")
        if entry["lstm_sequences"] is None:
            assert "unverified" in entry["notes"].lower() or "not verified" in entry["notes"]
