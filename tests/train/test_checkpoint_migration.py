"""Checkpoints written before the model configs were nested (a flat ``model_config``, no
``config_schema``) still load, and predict exactly what they predicted when they were written.

tests/fixtures/checkpoints/ holds the ``best/`` folder of four tiny runs made by that code
(``lstmkit train adding|sentiment|lm|translation --hidden-size 4 --steps 2 ...``) and
expected.json what ``lstmkit.load(...)`` returned from them then."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

import lstmkit.api as api
from lstmkit.models.speech import SPEECH_ENCODER, WordsModelConfig
from lstmkit.tasks.base import config_from_dict, get_task
from lstmkit.train.checkpoint import migrate_configs
from lstmkit.utils.config import CONFIG_SCHEMA, flatten

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))


def outputs(task: str, run: api.Run, inputs: list[str]) -> object:
    if task == "lm":
        return run.generate(prompt="to be", length=12, seed=0, temperature=1.0)
    if task == "translation":
        return run.translate(["ein mann 3", "ein mann 12"])
    return run.predict(inputs)


@pytest.mark.parametrize("task", ["adding", "sentiment", "lm", "translation"])
def test_an_old_flat_checkpoint_loads_and_predicts_as_it_did(task):
    meta = json.loads((FIXTURES / task / "model.json").read_text(encoding="utf-8"))
    assert "config_schema" not in meta  # written before the schema version existed
    assert "hidden_size" in meta["model_config"] or "enc_hidden_size" in meta["model_config"]
    run = api.load(FIXTURES / task, device="cpu")
    assert outputs(task, run, EXPECTED[task].get("inputs", [])) == EXPECTED[task]["outputs"]


# --------------------------------------------------------------------------------------------
# today's layout (config schema 3): a nested model config, written by the current code


def test_a_nested_spoken_words_checkpoint_loads_and_predicts_as_recorded(tmp_path):
    """tests/fixtures/checkpoints/spoken-words: a tiny run on synthetic tones made by
    make_spoken_words.py with the code of schema 3; spoken-words.json what it predicted."""
    from tests.fixtures.checkpoints.make_spoken_words import inputs
    from tests.fixtures.checkpoints.make_spoken_words import outputs as spoken

    meta = json.loads((FIXTURES / "spoken-words" / "model.json").read_text(encoding="utf-8"))
    assert meta["config_schema"] == CONFIG_SCHEMA
    assert meta["model_config"]["encoder"]["hidden_size"] == 4
    run = api.load(FIXTURES / "spoken-words", device="cpu")
    assert run.task.model_cfg == WordsModelConfig(
        encoder=replace(SPEECH_ENCODER, hidden_size=4, num_layers=1, bidirectional=False),
        subsample=1,
    )
    expected = json.loads((FIXTURES / "spoken-words.json").read_text(encoding="utf-8"))
    got = spoken(run, inputs(tmp_path))
    assert [p["label"] for p in got] == [p["label"] for p in expected["outputs"]]
    assert [p["label"] for p in got] == ["low", "high", "low"]  # it learned the two tones
    for g, e in zip(got, expected["outputs"], strict=True):
        assert g["probabilities"] == pytest.approx(e["probabilities"], abs=2e-4)


@pytest.mark.parametrize("task", ["sentiment", "lm", "translation"])
def test_a_schema_2_checkpoint_with_a_flat_model_config_is_nested_too(task):
    """Between schema 2 (speech nested) and 3 (every task) the other tasks wrote schema 2 with
    their model options flat: they nest as schema 1 does, to the same config."""
    meta = json.loads((FIXTURES / task / "model.json").read_text(encoding="utf-8"))
    where = FIXTURES / task / "model.json"
    from_1 = migrate_configs(meta, where)
    from_2 = migrate_configs({**meta, "config_schema": 2}, where)
    assert from_1["config_schema"] == from_2["config_schema"] == CONFIG_SCHEMA
    assert from_1["model_config"] == from_2["model_config"]
    cls = get_task(task).ModelConfig
    cfg = config_from_dict(cls, from_2["model_config"], task)
    assert flatten(cfg) == {**flatten(cls()), **meta["model_config"]}  # every value kept
    again = migrate_configs(from_2, where)  # today's layout stays as it is
    assert again["model_config"] == from_2["model_config"]


if __name__ == "__main__":  # record expected.json (only with the code that wrote the fixtures)
    rec = {
        "adding": {"inputs": ["0.3 0.9* 0.1 0.5* 0.2", "0.5* 0.1 0.2 0.7*"]},
        "sentiment": {"inputs": ["good fine movie", "bad awful film", "a movie"]},
        "lm": {},
        "translation": {},
    }
    for task, entry in rec.items():
        run = api.load(FIXTURES / task, device="cpu")
        entry["outputs"] = outputs(task, run, entry.get("inputs", []))
    text = json.dumps(json.loads(json.dumps(rec)), indent=1) + "\n"
    (FIXTURES / "expected.json").write_text(text, encoding="utf-8")
    print(text[:800])
