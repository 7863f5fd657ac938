"""The example command in `lstmkit train sentiment --help` is printed as written (click's \\b
paragraph), so that copying it gives one working command: the --train list stays one word
(it was wrapped as ``rt-polarity.pos, ../shared/...``, two arguments when pasted)."""

from __future__ import annotations

import shlex

import click
import pytest

from lstmkit.cli.main import cli_main


@pytest.mark.parametrize("width", [60, 80, 100])
def test_the_sentiment_example_copies_as_one_command(width, capsys, monkeypatch):
    monkeypatch.setattr(click.formatting, "FORCED_WIDTH", width)
    assert cli_main(["train", "sentiment", "--help"]) == 0
    lines = [x.strip() for x in capsys.readouterr().out.splitlines()]
    start = lines.index("D=../shared/data/rt-polarity")
    end = next(k for k in range(start + 1, len(lines)) if not lines[k].endswith("\\"))
    command = " ".join(x.removesuffix("\\") for x in lines[start + 1 : end + 1])
    argv = shlex.split(command)
    assert argv[:3] == ["lstmkit", "train", "sentiment"]
    assert argv[argv.index("--train") + 1] == "$D/rt-polarity.pos,$D/rt-polarity.neg"
    assert argv[argv.index("--encoding") + 1] == "latin-1"
    assert argv[argv.index("--cv") + 1] == "10"
    assert not any(x.startswith("../") for x in argv)  # no stray half of a wrapped argument
