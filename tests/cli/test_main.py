"""The lstmkit command: version, bench smoke run, bad arguments."""

import json

import pytest

import lstmkit
from lstmkit.cli.main import cli_main


def test_version(capsys):
    assert cli_main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == lstmkit.__version__


def test_bench_quick_writes_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert cli_main(["bench", "--quick", "--variants", "vanilla,layernorm", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    names = {r["name"] for r in data["rows"]}
    assert names == {"torch.nn.LSTM", "lstmkit vanilla", "lstmkit layernorm"}
    assert all(r["median_ms"] > 0 for r in data["rows"])
    assert "torch" in data["machine"]
    assert "ratio" in capsys.readouterr().out


def test_bench_rejects_unknown_variant(capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["bench", "--variants", "vanilla,bogus"])
    assert e.value.code == 2
    assert "unknown ['bogus']" in capsys.readouterr().err


def test_unknown_argument(capsys):
    with pytest.raises(SystemExit):
        cli_main(["demo", "--nope"])
    assert "unrecognized arguments: --nope" in capsys.readouterr().err
