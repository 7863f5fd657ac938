"""Nested model configs: the CLI generator and build recurse into a config's sections (the
speech models' ``encoder``), flags keep their names, section defaults come from the section's
default_factory, checks run in ``__post_init__`` however a config is made, and a flat config
of the old layout nests back into the same config."""

from __future__ import annotations

from dataclasses import asdict, fields

import click
import pytest

from lstmkit.cli.options import build, check_unique, options_for
from lstmkit.models.encoder import RecurrentConfig
from lstmkit.models.speech import SPEECH_ENCODER, SpeechModelConfig, WordsModelConfig
from lstmkit.tasks.base import config_from_dict
from lstmkit.utils.config import flat_names, flatten, nest
from lstmkit.utils.errors import UserError


def parse(cls, args):
    cmd = click.Command("x", params=options_for(cls, "Model options"))
    return cmd.make_context("x", args).params


def test_section_flags_keep_their_names_and_take_the_section_defaults():
    values = parse(WordsModelConfig, [])
    names = {f.name for f in fields(RecurrentConfig)}
    assert names <= set(values) and "encoder" not in values
    cfg = build(WordsModelConfig, values)
    assert cfg == WordsModelConfig()
    assert (cfg.encoder.num_layers, cfg.encoder.bidirectional) == (2, True)  # speech's own
    typed = build(
        WordsModelConfig, parse(WordsModelConfig, ["--hidden-size", "7", "--no-bidirectional"])
    )
    assert typed.encoder == RecurrentConfig(hidden_size=7, num_layers=2, bidirectional=False)
    assert flatten(typed)["hidden_size"] == 7 and flatten(typed)["pooling"] == "mean"


def test_check_unique_sees_the_fields_of_sections():
    check_unique(SpeechModelConfig)
    with pytest.raises(TypeError, match="--cell is in both SpeechModelConfig"):
        check_unique(SpeechModelConfig, RecurrentConfig)


@pytest.mark.parametrize(
    ("kwargs", "flag"), [({"subsample": 0}, "--subsample"), ({"pooling": "median"}, "--pooling")]
)
def test_a_config_built_from_python_is_checked_like_one_from_flags(kwargs, flag):
    with pytest.raises(UserError, match=flag):
        WordsModelConfig(**kwargs)
    values = {**parse(WordsModelConfig, []), **kwargs}
    with pytest.raises(UserError, match=flag):
        build(WordsModelConfig, values)


def test_an_old_flat_model_config_nests_into_the_same_config():
    new = WordsModelConfig(encoder=RecurrentConfig(hidden_size=5, num_layers=3), subsample=2)
    old_flat = flatten(new)  # what a checkpoint of schema 1 held: one flat dict
    assert set(old_flat) == set(flat_names(WordsModelConfig))
    assert config_from_dict(WordsModelConfig, nest(WordsModelConfig, old_flat), "t") == new
    # a section given in part keeps the section's defaults for the rest, not the class's
    part = config_from_dict(SpeechModelConfig, {"encoder": {"hidden_size": 3}}, "t")
    assert asdict(part.encoder) == {**asdict(SPEECH_ENCODER), "hidden_size": 3}
    with pytest.raises(UserError, match="wings"):
        config_from_dict(SpeechModelConfig, nest(SpeechModelConfig, {"wings": 2}), "t")
