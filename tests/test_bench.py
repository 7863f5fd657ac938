"""`lstmkit bench`: its options and the rules that decide which ratios it prints (issue 16, part 7).

No test here times anything: the verdicts are checked on made-up timings, and main() runs with
a stand-in for the timed part.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lstmkit import bench
from lstmkit.utils.errors import UserError


def _rows(times: dict[str, list[float]], shape_index: int = 0) -> dict[str, bench.Row]:
    return {r.name: r for r in bench.rows_for("fwdbwd T=100", times, shape_index)}


STEADY = [10.0, 10.2, 9.9, 10.1, 10.0, 10.3, 9.8]


def test_steady_times_give_a_ratio_and_a_verdict():
    rows = _rows(
        {
            "torch.nn.LSTM": STEADY,
            "lstmkit vanilla": [t * 1.0 for t in STEADY],  # target 1.05: met
            "lstmkit layernorm": [t * 1.3 for t in STEADY],  # target 1.5: met
            "lstmkit peephole": [t * 1.8 for t in STEADY],  # target 1.5: missed
        }
    )
    assert rows["lstmkit vanilla"].ratio == pytest.approx(1.0)
    assert rows["lstmkit vanilla"].verdict == "met" and rows["lstmkit vanilla"].ok is True
    assert rows["lstmkit layernorm"].ratio == pytest.approx(1.3)
    assert rows["lstmkit peephole"].verdict == "missed" and rows["lstmkit peephole"].ok is False
    assert rows["torch.nn.LSTM"].verdict is None  # no target for the baseline itself
    assert bench.summary(list(rows.values())) == "targets met: 2, missed: 1"


def test_the_issue_case_is_noisy_not_a_ratio_of_zero():
    """Under load --quick printed torch.nn.LSTM at 317 ms against 0.314 ms (3 rounds, two of them
    slow spells of the baseline), so ratios of 0.00 and 'targets met: 0, missed: 0'."""
    rows = _rows(
        {
            "torch.nn.LSTM": [317.0, 290.0, 0.31],
            "lstmkit vanilla": [0.314, 0.32, 0.31],
        },
        shape_index=-1,
    )
    v = rows["lstmkit vanilla"]
    assert v.ratio is None and "baseline IQR" in v.why_noisy
    table = bench.format_table(list(rows.values()))
    assert "noisy" in table and "0.00 " not in table


def test_a_ratio_whose_spread_straddles_the_target_is_undecided():
    base = STEADY
    cand = [t * r for t, r in zip(base, [0.95, 1.12, 1.0, 1.1, 0.97, 1.08, 1.02], strict=True)]
    rows = _rows({"torch.nn.LSTM": base, "lstmkit vanilla": cand})
    v = rows["lstmkit vanilla"]
    assert v.verdict == "noisy" and v.ok is None and "straddles the target 1.05" in v.why_noisy
    line = bench.summary(list(rows.values()))
    assert line.startswith("targets met: 0, missed: 0, undecided: 1")
    assert "neither met nor missed" in line


def test_a_slow_spell_in_one_round_cancels_in_the_paired_ratio():
    base = [10.0, 10.0, 30.0, 10.0, 10.0]  # round 3 hit both candidates
    cand = [11.0, 11.0, 33.0, 11.0, 11.0]
    v = bench.judge(cand, base, target=1.5)
    assert v.ratio == pytest.approx(1.1) and v.verdict == "met"


def test_a_spread_over_half_the_median_is_refused():
    wild = [1.0, 5.0, 1.2, 4.0, 0.9, 6.0]
    v = bench.judge(wild, [2.0] * 6, target=None)
    assert v.ratio is None and v.verdict is None and "time IQR" in v.why_noisy
    v = bench.judge(wild, [2.0] * 6, target=2.0)
    assert v.ratio is None and v.verdict == "noisy"


def test_tiny_ratios_keep_their_digits():
    assert bench._num(0.00099) == "0.00099" and bench._num(1.234) == "1.23"


def test_no_targets_is_said_as_such():
    rows = _rows({"torch.nn.LSTM": STEADY, "lstmkit vanilla": STEADY}, shape_index=-1)
    assert bench.summary(list(rows.values())).startswith("no targets apply to these shapes")


@pytest.fixture
def untimed(monkeypatch):
    """main() with made-up times: records the shapes, repeats, warm-up and torch threads."""
    calls = []

    def fake_bench_shape(shape, variants, repeats, extra_python, warmup_s):
        calls.append((shape, repeats, warmup_s, torch.get_num_threads()))
        names = ["torch.nn.LSTM", *(f"lstmkit {v}" for v in variants)]
        return bench.rows_for(shape.label, {n: STEADY for n in names}, -1)

    monkeypatch.setattr(bench, "bench_shape", fake_bench_shape)
    return calls


def test_threads_and_quick(untimed, tmp_path, capsys):
    out = tmp_path / "b.json"
    assert (
        bench.main(["--quick", "--threads", "2", "--variants", "vanilla", "--out", str(out)]) == 0
    )
    assert [(s.T, s.H) for s, *_ in untimed] == [(10, 16), (10, 16)]
    assert all(r == 21 and w == 0.3 and n == 2 for _, r, w, n in untimed)
    data = json.loads(out.read_text())
    assert data["machine"]["torch_threads"] == 2
    assert {"median_ms", "q1_ms", "q3_ms", "ratio", "verdict"} <= set(data["rows"][0])
    assert "no targets apply" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--threads", "x"], "bench: argument --threads: invalid int value: 'x'"),
        (["--threads", "-1"], "bench: --threads must be >= 0, got -1"),
        (["--repeats", "1"], "bench: --repeats must be >= 2"),
        (["--warmup", "nan"], "bench: --warmup must be a number of seconds >= 0, got nan"),
    ],
)
def test_bad_options_are_one_user_error(untimed, argv, message):
    with pytest.raises(UserError) as e:
        bench.main(argv)
    assert str(e.value).startswith(message)
    assert untimed == []


def test_the_baseline_row_is_one_and_says_when_it_is_noisy():
    wild = [1.0, 5.0, 1.2, 4.0, 0.9, 6.0]
    rows = _rows({"torch.nn.LSTM": wild, "lstmkit vanilla": STEADY[:6]})
    assert rows["torch.nn.LSTM"].ratio == 1.0 and rows["torch.nn.LSTM"].verdict is None
    assert "the baseline's IQR" in rows["torch.nn.LSTM"].why_noisy
    assert rows["lstmkit vanilla"].ratio is None and rows["lstmkit vanilla"].verdict == "noisy"


def test_the_machine_names_its_vector_instructions():
    info = bench.machine_info()
    assert info["torch_kernels"] == torch.backends.cpu.get_cpu_capability()
    assert set(info["isa"]) <= set(bench.ISA_FLAGS)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and " avx2 " in cpuinfo.read_text():
        assert "avx2" in info["isa"]
