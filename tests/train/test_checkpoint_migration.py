"""Checkpoints written before the model configs were nested (a flat ``model_config``, no
``config_schema``) still load, and predict exactly what they predicted when they were written.

tests/fixtures/checkpoints/ holds the ``best/`` folder of four tiny runs made by that code
(``lstmkit train adding|sentiment|lm|translation --hidden-size 4 --steps 2 ...``) and
expected.json what ``lstmkit.load(...)`` returned from them then."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lstmkit.api as api

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
