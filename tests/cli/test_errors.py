"""Every user error is one line, ``lstmkit: error: ...``, with exit status 2 (issue 14).

Each case here was once a traceback line with status 1, or was accepted and ran on a value
that cannot work (nan, inf, a negative count, an integer past int64)."""

import os
import stat
import subprocess
import sys

import pytest

from lstmkit.cli.main import cli_main

TINY = ["--steps", "2", "--batch-size", "4", "--hidden-size", "4", "--seq-len", "6"]
TINY += ["--n-valid", "4", "--n-test", "4", "--eval-every", "1", "--no-progress"]
TINY += ["--device", "cpu", "--threads", "1"]


def one_error_line(capsys) -> str:
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("lstmkit: error: "), err
    assert "Traceback" not in err[0] and "--debug" not in err[0], err
    return err[0]


@pytest.mark.parametrize(
    "option, value, named",
    [
        ("--lr", "nan", "--lr"),
        ("--lr", "inf", "--lr"),
        ("--weight-decay", "nan", "--weight-decay"),
        ("--clip-norm", "nan", "--clip-norm"),
        ("--min-lr-ratio", "nan", "--min-lr-ratio"),
        ("--max-time", "nan", "--max-time"),
        ("--tolerance", "nan", "--tolerance"),
        ("--forget-bias", "nan", "--forget-bias"),
        ("--layer-norm-eps", "inf", "--layer-norm-eps"),
        ("--seed", str(2**70), "--seed"),
        ("--steps", str(2**70), "--steps"),
        ("--warmup-steps", str(2**70), "--warmup-steps"),
        ("--threads", str(2**40), "--threads"),
        ("--seq-len", "0", "seq-len must be >= 2"),
        ("--hidden-size", "-3", "--hidden-size"),
    ],
)
def test_bad_training_values_are_one_line_and_status_2(tmp_path, capsys, option, value, named):
    out = tmp_path / "run"
    args = ["train", "adding", *TINY, option, value, "--out", str(out)]
    assert cli_main(args) == 2
    assert named in one_error_line(capsys)
    assert not (out / "best").exists()  # nothing was trained


def test_signed_options_keep_their_negative_values(capsys):
    """The generic rule (counts are >= 0) leaves the documented -1 values alone."""
    assert cli_main(["generate", "--help"]) == 0
    assert "-1: random" in capsys.readouterr().out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("adding") / "run"
    assert cli_main(["train", "adding", *TINY, "--out", str(out)]) == 0
    return out


def test_predict_on_an_empty_input_file_is_an_error(trained, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    capsys.readouterr()
    assert cli_main(["predict", str(trained), "--input", str(empty)]) == 2
    assert str(empty) in one_error_line(capsys)  # not predictions of the built-in examples


def test_predict_on_an_empty_text_is_an_error(trained, capsys):
    capsys.readouterr()
    assert cli_main(["predict", str(trained), ""]) == 2
    assert "input 1 is empty" in one_error_line(capsys)


def test_predict_does_not_create_a_missing_output_folder(trained, tmp_path, capsys):
    target = tmp_path / "no" / "such" / "dir" / "x.jsonl"
    capsys.readouterr()
    assert cli_main(["predict", str(trained), "0.5* 0.1 0.2* 0.3", "--output", str(target)]) == 2
    assert "does not exist" in one_error_line(capsys)
    assert not (tmp_path / "no").exists()


def test_predict_refuses_a_fifo_as_input(trained, tmp_path, capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    capsys.readouterr()
    assert cli_main(["predict", str(trained), "--input", str(fifo)]) == 2  # and does not block
    assert "not a regular file" in one_error_line(capsys)


def test_a_giant_input_line_is_cut_and_said(trained, tmp_path, capsys):
    from lstmkit.infer.inputs import MAX_INPUT_CHARS

    big = tmp_path / "big.txt"
    big.write_text("0.5* " * (MAX_INPUT_CHARS // 2) + "0.1*\n0.2* 0.3*\n")
    capsys.readouterr()
    status = cli_main(["predict", str(trained), "--input", str(big)])
    err = capsys.readouterr().err
    assert "1 input(s) longer than 100,000 characters were cut" in err
    assert status in (0, 2)  # the cut line may no longer be a valid adding sequence


def test_generate_on_a_task_that_does_not_generate_text(trained, capsys):
    capsys.readouterr()
    assert cli_main(["generate", str(trained)]) == 2
    assert "does not generate text" in one_error_line(capsys)


def test_out_of_memory_is_one_line_naming_what_to_lower(tmp_path, capsys):
    args = ["train", "adding", *TINY, "--seq-len", str(2**40), "--out", str(tmp_path / "r")]
    assert cli_main(args) == 2
    line = one_error_line(capsys)
    assert "out of memory" in line and "--batch-size" in line


def test_nonfinite_weights_need_allow_nonfinite(tmp_path, capsys):
    import torch

    from tests.train.test_checkpoint_safety import _reseal, _trained

    c = tmp_path / "c"
    weights = dict(_trained(c).state_dict())
    weights["head.bias"] = torch.tensor([float("nan")])
    _reseal(c, weights=weights)
    capsys.readouterr()
    assert cli_main(["evaluate", str(c)]) == 2
    assert "--allow-nonfinite" in one_error_line(capsys)
    assert cli_main(["evaluate", str(c), "--allow-nonfinite", "--json"]) == 0


def test_a_backend_that_cannot_run_here_is_one_line_before_training(tmp_path, capsys, monkeypatch):
    from lstmkit.kernels.triton import recurrence as triton_recurrence

    monkeypatch.setattr(triton_recurrence, "unavailable_reason", lambda: "triton is not installed")
    out = tmp_path / "run"
    assert cli_main(["train", "adding", *TINY, "--backend", "triton", "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert "--backend triton" in line and "triton is not installed" in line
    assert not (out / "last").exists()


def test_warnings_are_one_line(tmp_path):
    data = tmp_path / "d.tsv"
    rows = [f"a fine film {i}\tpos" if i % 2 else f"a dull film {i}\tneg" for i in range(40)]
    rows[5] += "\textra"  # a TSV line with an extra field: a warning naming the line
    data.write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    args = ["train", "sentiment", "--train", str(data), "--steps", "2", "--batch-size", "4"]
    args += ["--hidden-size", "4", "--embedding-dim", "4", "--no-progress", "--device", "cpu"]
    # a process of its own: pytest records warnings in-process instead of printing them
    proc = subprocess.run(
        [sys.executable, "-m", "lstmkit", *args, "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    err = [x for x in proc.stderr.splitlines() if "warning" in x.lower()]
    assert err and all(x.startswith("lstmkit: warning: ") for x in err), err
    assert any("line 7" in x for x in err), err
