"""A URL given where a path goes is one error line naming the option (it read as
``file not found: https:/example.com/x.csv``); free text that looks like a URL is left alone."""

from __future__ import annotations

import typing
from dataclasses import fields

import pytest

from lstmkit.cli.main import cli_main
from lstmkit.cli.options import PATH_FIELDS, refuse_urls
from lstmkit.tasks.base import discover
from lstmkit.utils.errors import UserError

READ = "is a URL; lstmkit reads local files only: download it first (e.g. curl -LO URL)"


@pytest.mark.parametrize(
    "args, named",
    [
        (["train", "sentiment", "--train", "https://example.com/x.csv"], "--train"),
        (["train", "lm", "--train", "a.txt,https://example.com/b.txt"], "--train"),
        (["train", "spoken-words", "--train", "http://example.com/words/"], "--train"),
        (
            ["train", "translation", "--train-src", "ftp://h/x.de", "--train-tgt", "x"],
            "--train-src",
        ),
        (["predict", "runs/x", "--input", "https://example.com/x.txt"], "--input"),
        (["evaluate", "https://example.com/run"], "CHECKPOINT"),
        (["transcribe", "runs/asr", "s3://bucket/a.wav"], "AUDIO"),
    ],
)
def test_a_url_for_a_file_is_one_line_naming_the_option(args, named, capsys):
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"lstmkit: error: {named}: ")
    assert READ in err and "file not found" not in err
    url = next(a for a in args if "://" in a).split(",")[-1]
    assert url in err  # as given: the // is not folded to /


def test_an_output_url_says_to_write_locally(capsys):
    assert cli_main(["train", "adding", "--steps", "1", "--out", "s3://bucket/run"]) == 2
    err = capsys.readouterr().err
    assert "--out: s3://bucket/run is a URL; lstmkit writes local files only" in err


def test_free_text_that_looks_like_a_url_is_not_a_path():
    from lstmkit.infer.generate import GenerateConfig

    refuse_urls(GenerateConfig, {"prompt": "https://example.com", "checkpoint": "runs/lm"})
    with pytest.raises(UserError, match="CHECKPOINT: https://x/run is a URL"):
        refuse_urls(GenerateConfig, {"prompt": "", "checkpoint": "https://x/run"})


def test_the_path_fields_are_strings_in_every_task_config():
    seen = set()
    for task in discover().values():
        for cls in (task.Config, task.ModelConfig):
            hints = typing.get_type_hints(cls)
            for f in fields(cls):
                if f.name in PATH_FIELDS:
                    seen.add(f.name)
                    assert hints[f.name] in (str, tuple[str, ...]), (cls, f.name)
    assert {"train", "valid", "test", "train_src", "data_dir"} <= seen
