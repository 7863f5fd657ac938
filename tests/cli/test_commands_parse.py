"""Every ``lstmkit train`` command in README.md and docs/RESULTS.md parses to the configuration
it parsed to when tests/fixtures/commands.json was recorded (before the configs were nested):
the flags users type keep their names, defaults and meaning."""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest

from lstmkit.cli.main import _train_command
from lstmkit.cli.options import build
from lstmkit.tasks.base import get_task
from lstmkit.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "commands.json"
DOCS = ("README.md", "docs/RESULTS.md")


def train_commands() -> list[tuple[str, int, list[str]]]:
    """``(file, line, argv after 'lstmkit train')`` of each train command in a fenced block."""
    out = []
    for name in DOCS:
        lines = (ROOT / name).read_text(encoding="utf-8").splitlines()
        fenced, i = False, 0
        while i < len(lines):
            line, start = lines[i], i + 1
            if line.lstrip().startswith("```"):
                fenced = not fenced
                i += 1
                continue
            while fenced and line.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line.rstrip()[:-1] + " " + lines[i].strip()
            i += 1
            m = re.search(r"\blstmkit train ([a-z-]+)(.*)", line) if fenced else None
            if not m or m.group(1).startswith("-"):
                continue
            # the loops' variable ($s: a seed or a speaker) stands for its first value
            argv = shlex.split(m.group(2).replace("$s", "0"), comments=True)
            out.append((name, start, [m.group(1), *argv]))
    return out


def flat(cfg) -> dict:
    """A config as one flat dict of flag names (nested sections merged, with their prefix)."""
    out = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            prefix = f.metadata.get("prefix", "")
            out.update({prefix + k: v for k, v in flat(value).items()})
        else:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def parsed(argv: list[str]) -> dict:
    task_cls = get_task(argv[0])
    values = _train_command(task_cls).make_context(argv[0], argv[1:]).params
    return {
        "task": flat(build(task_cls.Config, values)),
        "model": flat(build(task_cls.ModelConfig, values)),
        "train": flat(build(TrainConfig, values)),
    }


def record() -> dict:
    return {f"{name}:{line}": parsed(argv) for name, line, argv in train_commands()}


def test_the_docs_hold_train_commands_of_every_kind():
    tasks = {argv[0] for _, _, argv in train_commands()}
    assert {"adding", "sentiment", "lm", "translation", "spoken-words", "asr-ctc"} <= tasks


@pytest.mark.parametrize(
    ("where", "argv"),
    [(f"{n}:{line}", argv) for n, line, argv in train_commands()],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_doc_command_parses_to_the_recorded_configuration(where, argv):
    if os.environ.get("LSTMKIT_RECORD_COMMANDS"):
        pytest.skip("recording")
    recorded = json.loads(FIXTURE.read_text(encoding="utf-8"))
    # a command keeps its line number only while the docs above it do not move: match by argv
    by_argv = {json.dumps(v["argv"]): v for v in recorded.values()}
    key = json.dumps(argv)
    assert key in by_argv, f"{where}: {' '.join(argv)} is not in {FIXTURE.name} (re-record)"
    assert parsed(argv) == by_argv[key]["config"]


if __name__ == "__main__":  # LSTMKIT_RECORD_COMMANDS=1 python tests/cli/test_commands_parse.py
    data = {f"{n}:{line}": {"argv": a, "config": parsed(a)} for n, line, a in train_commands()}
    FIXTURE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{len(data)} commands -> {FIXTURE}")
