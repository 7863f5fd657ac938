"""The use commands come from one table (``cli.main.COMMANDS``, issue 17 part 5): their names,
options and help are those the copy-shaped ``_add_*_command`` blocks printed, recorded before
the change in tests/fixtures/help/ (at 100 columns)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from lstmkit.cli.main import COMMANDS, cli, cli_main
from lstmkit.tasks.base import VERBS

HELP = Path(__file__).resolve().parents[1] / "fixtures" / "help"
RECORDED = sorted(p.stem for p in HELP.glob("*.txt"))


@pytest.mark.parametrize("name", RECORDED)
def test_help_is_unchanged(name, capsys, monkeypatch):
    monkeypatch.setattr(click.formatting, "FORCED_WIDTH", None)
    monkeypatch.setenv("COLUMNS", "100")  # as recorded: COLUMNS=100 lstmkit VERB --help
    assert cli_main([] if name == "lstmkit" else [name, "--help"]) == 0
    assert capsys.readouterr().out == (HELP / f"{name}.txt").read_text(encoding="utf-8")


def test_every_verb_is_one_row_of_the_table():
    names = [c.name for c in COMMANDS]
    assert len(names) == len(set(names))
    assert set(VERBS) <= set(names) and set(names) <= set(cli.commands)
    assert set(RECORDED) == {*names, "lstmkit"}  # every row's help is held to its record
