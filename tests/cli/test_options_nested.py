"""Nested model configs: the CLI generator and build recurse into a config's sections (the
speech models' ``encoder``), flags keep their names, section defaults come from the section's
default_factory, checks run in ``__post_init__`` however a config is made, and a flat config
of the old layout nests back into the same config."""

from __future__ import annotations

from dataclasses import asdict, fields

import click
import pytest

from lstmkit.cli.options import build, check_unique, options_for
from lstmkit.models.classifier import SENTIMENT_ENCODER, SentimentModelConfig
from lstmkit.models.encoder import RecurrentConfig
from lstmkit.models.lm import LM_ENCODER, LMModelConfig
from lstmkit.models.seq2seq import Seq2SeqConfig
from lstmkit.models.speech import SPEECH_ENCODER, SpeechModelConfig, WordsModelConfig
from lstmkit.tasks.base import config_from_dict
from lstmkit.utils.config import flat_names, flatten, from_flat, nest, sections
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


# --------------------------------------------------------------------------------------------
# every task's model config nests; each checks itself however it is made


MODEL_CONFIGS = [SentimentModelConfig, LMModelConfig, Seq2SeqConfig, WordsModelConfig]

BAD = [
    (RecurrentConfig, {"cell": "tcn"}, "--cell must be one of lstm, rnn, gru"),
    (RecurrentConfig, {"cell": "gru", "layer_norm": True}, "--layer-norm: LSTM options"),
    (RecurrentConfig, {"hidden_size": 4, "proj_size": 4}, "proj_size must be smaller"),
    (RecurrentConfig, {"dropout": 0.2}, "needs num_layers > 1"),
    (RecurrentConfig, {"zoneout_h": 1.5}, r"zoneout_h must be in \[0, 1\)"),
    (RecurrentConfig, {"hidden_size": 0}, "hidden_size must be >= 1"),
    (SentimentModelConfig, {"pooling": "median"}, "--pooling must be one of"),
    (SentimentModelConfig, {"word_dropout": 1.0}, "--word-dropout"),
    (SentimentModelConfig, {"coupled": True, "forget_gate": False}, "contradict"),
    (LMModelConfig, {"bidirectional": True}, "--bidirectional: a language model"),
    (LMModelConfig, {"dropout_input": 1.0}, "--dropout-input"),
    (LMModelConfig, {"tie_weights": True, "embed_size": 8}, "--tie-weights needs"),
    (LMModelConfig, {"adaptive_softmax": "12,6"}, "increasing integers"),
    (Seq2SeqConfig, {"attention": "luong"}, "--attention must be one of"),
    (Seq2SeqConfig, {"attention": "dot", "dec_hidden_size": 10}, "--attention dot needs"),
    (Seq2SeqConfig, {"dec_hidden_size": 0}, "dec_hidden_size must be >= 1"),
    (Seq2SeqConfig, {"enc_hidden_size": 8, "enc_proj_size": 8}, "enc_proj_size must be"),
    (Seq2SeqConfig, {"embed_size": 0}, "--embed-size must be >= 1"),
]


def _argv(values: dict) -> list[str]:
    out = []
    for k, v in values.items():
        name = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            out.append(name if v else "--no-" + name[2:])
        else:
            out += [name, str(v)]
    return out


@pytest.mark.parametrize(
    ("cls", "values", "message"), BAD, ids=lambda v: getattr(v, "__name__", None)
)
def test_every_model_config_is_checked_from_python_as_from_flags(cls, values, message):
    with pytest.raises(UserError, match=message):
        from_flat(cls, values)  # from Python, the section over its default
    choices = {f.name: f.metadata["choices"] for f in fields(cls) if "choices" in f.metadata}
    if any(k in choices and v not in choices[k] for k, v in values.items()):
        # click refuses a value not among the choices itself, naming them
        with pytest.raises(click.BadParameter, match="is not one of"):
            parse(cls, _argv(values))
        return
    with pytest.raises(UserError, match=message):
        build(cls, parse(cls, _argv(values)))  # from flags


@pytest.mark.parametrize("cls", MODEL_CONFIGS, ids=lambda c: c.__name__)
def test_every_model_config_has_an_encoder_section_and_its_flat_form_nests_back(cls):
    assert "encoder" in sections(cls)
    cfg = cls()
    old_flat = flatten(cfg)  # what a checkpoint of schema 1 held
    assert "encoder" not in old_flat and "hidden_size" in {k[-11:] for k in old_flat}
    assert config_from_dict(cls, nest(cls, old_flat), "t") == cfg
    assert from_flat(cls, old_flat) == cfg
    assert build(cls, parse(cls, [])) == cfg  # the flags' defaults are the config's


def test_the_sections_keep_their_task_defaults_and_seq2seq_its_prefixed_flags():
    assert SentimentModelConfig().encoder == SENTIMENT_ENCODER
    assert (SENTIMENT_ENCODER.hidden_size, SENTIMENT_ENCODER.bidirectional) == (150, True)
    assert (LM_ENCODER.hidden_size, LM_ENCODER.num_layers) == (512, 2)
    names = flat_names(Seq2SeqConfig)
    assert "enc_hidden_size" in names and "dec_zoneout_h" in names and "dec_proj_size" not in names
    assert "enc_cell" not in names  # the seq2seq model is lstmkit's LSTM only
    cfg = from_flat(Seq2SeqConfig, enc_hidden_size=8, dec_num_layers=2)
    assert (cfg.encoder.hidden_size, cfg.encoder.bidirectional) == (8, True)
    assert (cfg.decoder.num_layers, cfg.decoder.hidden_size) == (2, 512)
    with pytest.raises(TypeError, match="no option.*enc_cell"):
        from_flat(Seq2SeqConfig, enc_cell="gru")


def test_a_section_given_in_part_is_checked_over_the_section_default():
    # alone, dropout 0.2 on one layer is refused; over the LM's two layers it is fine
    cfg = config_from_dict(LMModelConfig, {"encoder": {"dropout": 0.2}}, "t")
    assert (cfg.encoder.num_layers, cfg.encoder.dropout, cfg.encoder.hidden_size) == (2, 0.2, 512)
    with pytest.raises(UserError, match="t: encoder: .*needs num_layers > 1"):
        config_from_dict(LMModelConfig, {"encoder": {"dropout": 0.2, "num_layers": 1}}, "t")
