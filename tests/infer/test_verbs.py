"""Every use verb against every task (issue 17, part 5): on a tiny run of each task, trained
once here, a verb the task has works (status 0, its output), and one it lacks is one line,
status 2, naming the task and the verbs it has, from the command line and from the Python API
alike. ``lstmkit generate`` on an adding run once ended in ``AttributeError: 'AddingTask'
object has no attribute 'encode_prompt'``: its data generator was called ``generate`` too."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import lstmkit
from lstmkit.api import UnsupportedVerb
from lstmkit.cli.main import cli_main
from lstmkit.tasks.base import VERBS, discover

QUIET = ["--no-progress", "--device", "cpu", "--threads", "1", "--warmup-steps", "0"]
LONGLAG = ["--hidden-size", "4", "--batch-size", "4", "--n-valid", "4", "--n-test", "4"]
LONGLAG += ["--steps", "2", "--eval-every", "2"]

# The specification: which verbs each task has (README: lm generates, translation translates,
# asr-ctc transcribes; every task predicts, evaluates, inspects and exports).
BASIC = {"predict", "evaluate", "inspect", "export", "quantize"}
SUPPORTS = {
    "adding": BASIC,
    "multiplication": BASIC,
    "temporal-order": BASIC,
    "reber": BASIC,
    "continual-reber": BASIC,
    "copy-memory": BASIC,
    "sentiment": BASIC,
    "lm": BASIC | {"generate"},
    "translation": BASIC | {"translate"},
    "spoken-words": BASIC,
    "asr-ctc": BASIC | {"transcribe"},
    "forecast": BASIC,
}
TASKS = sorted(SUPPORTS)


def _tones(root: Path, n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` recordings per word at 8 kHz ('low' a 300 Hz tone, 'high' 1800 Hz), in a folder
    per word; returns (path, word) pairs."""
    rng = np.random.default_rng(seed)
    out = []
    for word, hz in (("low", 300), ("high", 1800)):
        (root / word).mkdir(parents=True)
        for k in range(n):
            t = np.arange(int(8000 * rng.uniform(0.15, 0.2))) / 8000
            x = 0.3 * np.sin(2 * np.pi * hz * t) + 0.01 * rng.normal(size=len(t))
            path = root / word / f"{k}.wav"
            sf.write(path, x.astype(np.float32), 8000)
            out.append((str(path), word))
    return out


def _manifest(path: Path, items: list[tuple[str, str]]) -> Path:
    rows = (json.dumps({"audio_filepath": p, "text": w}) + "\n" for p, w in items)
    path.write_text("".join(rows), encoding="utf-8")
    return path


def _recipes(root: Path) -> tuple[dict[str, list[str]], Path]:
    """``lstmkit train TASK ...`` arguments for a run of each task that trains in about a
    second, with a validation and a test set where the task reads them; and a recording."""
    r = {
        "adding": ["--seq-len", "10"],
        "multiplication": ["--seq-len", "20"],
        "temporal-order": ["--variant", "6a"],
        "reber": [],
        "copy-memory": ["--delay", "3", "--copy-len", "2"],
    }
    r = {task: [*LONGLAG, *extra] for task, extra in r.items()}
    r["continual-reber"] = [*LONGLAG[:4], "--steps", "2", "--eval-every", "2", "--chunk", "40"]
    r["continual-reber"] += ["--valid-length", "200", "--test-length", "200"]

    rows = ["text,label"] + [
        f"a gripping film {i},pos" if i % 2 else f"a dull tired film {i},neg" for i in range(30)
    ]
    (root / "reviews.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    r["sentiment"] = ["--train", str(root / "reviews.csv"), "--steps", "2", "--batch-size", "8"]
    r["sentiment"] += ["--hidden-size", "4", "--embedding-dim", "4", "--eval-every", "2"]

    text = "to be or not to be that is the question\n" * 30
    (root / "t.txt").write_text(text, encoding="utf-8")
    r["lm"] = ["--train", str(root / "t.txt"), "--test-fraction", "0.1", "--hidden-size", "8"]
    r["lm"] += ["--num-layers", "1", "--embed-size", "4", "--seq-len", "8", "--batch-size", "4"]
    r["lm"] += ["--steps", "2", "--eval-every", "2"]

    de = ["ein hund läuft", "eine katze schläft", "der mann liest", "die frau singt"] * 4
    en = ["a dog runs", "a cat sleeps", "the man reads", "the woman sings"] * 4
    for split in ("train", "val", "test"):
        (root / f"{split}.de").write_text("\n".join(de) + "\n", encoding="utf-8")
        (root / f"{split}.en").write_text("\n".join(en) + "\n", encoding="utf-8")
    r["translation"] = [
        "--data-dir",
        str(root),
        "--test-prefix",
        "test",
        "--vocab-size",
        "60",
        "--embed-size",
        "8",
    ]
    r["translation"] += ["--enc-hidden-size", "8", "--dec-hidden-size", "8", "--steps", "2"]
    r["translation"] += ["--eval-every", "2", "--max-tokens", "200", "--beam", "2"]

    train = _tones(root / "audio-train", 4, seed=0)
    test = _tones(root / "audio-test", 1, seed=1)
    speech = ["--sample-rate", "8000", "--freq-masks", "0", "--time-masks", "0"]
    speech += ["--hidden-size", "4", "--num-layers", "1", "--steps", "2", "--eval-every", "2"]
    speech += ["--batch-size", "4"]
    words = [_manifest(root / f"words-{s}.jsonl", x) for s, x in (("train", train), ("t", test))]
    r["spoken-words"] = ["--train", str(words[0]), "--valid", str(words[1])]
    r["spoken-words"] += ["--test", str(words[1]), *speech]
    r["asr-ctc"] = list(r["spoken-words"])

    hours = np.datetime64("2020-01-01T00") + np.arange(200) * np.timedelta64(1, "h")
    rows = [f"{str(t).replace('T', ' ')},{np.sin(k / 4):.4f}" for k, t in enumerate(hours)]
    (root / "series.csv").write_text("date,OT\n" + "\n".join(rows) + "\n", encoding="utf-8")
    r["forecast"] = ["--data", str(root / "series.csv"), "--lookback", "12", "--horizon", "3"]
    r["forecast"] += ["--hidden-size", "4", "--steps", "2", "--eval-every", "2"]
    return r, Path(test[0][0])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("verbs")
    recipes, wav = _recipes(root)
    assert set(recipes) == set(discover()), "a new task needs a tiny recipe here"
    out, times = {}, {}
    for task, args in recipes.items():
        out[task] = root / "runs" / task
        start = time.perf_counter()
        assert cli_main(["train", task, *args, *QUIET, "--out", str(out[task])]) == 0, task
        times[task] = time.perf_counter() - start
    print("tiny runs trained in " + ", ".join(f"{t} {s:.1f} s" for t, s in times.items()))
    out["_wav"] = wav
    return out


def _command(verb: str, run: Path, tmp: Path, wav: Path) -> list[str]:
    extra = {
        "predict": [],
        "evaluate": ["--split", "valid", "--json"],
        "inspect": ["--out", str(tmp / "png")],
        "generate": ["--length", "5", "--seed", "0"],
        "translate": ["ein hund"],
        "transcribe": [str(wav)],
        "export": ["--out", str(tmp / "model.onnx")],
        "quantize": ["--out", str(tmp / "quantized")],
    }[verb]
    device = [] if verb == "export" else ["--device", "cpu"]  # an export runs on the CPU
    return [verb, str(run), *extra, *device]


def _api(verb: str, run, tmp: Path, wav: Path):
    return {
        "predict": lambda: run.predict(run.task.examples()[:1] or ["x"]),
        "evaluate": lambda: run.evaluate("valid"),
        "inspect": lambda: run.inspect(out=tmp / "api-png"),
        "generate": lambda: run.generate("", 5, seed=0),
        "translate": lambda: run.translate(["ein hund"]),
        "transcribe": lambda: run.transcribe(wav),
        "export": lambda: run.export(tmp / "api.onnx"),
        "quantize": lambda: run.quantize(tmp / "api-quantized"),
    }[verb]()


def test_the_capabilities_are_the_specified_ones():
    tasks = discover()
    assert sorted(tasks) == TASKS
    for name, cls in tasks.items():
        assert set(cls.verbs()) == SUPPORTS[name], name


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_on_every_task(runs, task, verb, tmp_path, capsys):
    run, wav = runs[task], runs["_wav"]
    capsys.readouterr()
    status = cli_main(_command(verb, run, tmp_path, wav))
    out, err = capsys.readouterr()
    loaded = lstmkit.load(run, device="cpu")
    if verb in SUPPORTS[task]:
        assert status == 0, err
        assert out.strip(), f"{verb} on {task} printed nothing"
        assert "error" not in err, err
        if verb == "evaluate":
            assert json.loads(out)["valid"]
        if verb == "inspect":
            paths = [Path(p) for p in out.split()]
            assert all(p.is_file() for p in paths), paths
            assert any(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths), paths
        # (Run.inspect plots again, Run.export exports again: twice this file's time;
        # tests/test_api.py draws it, tests/infer/test_export_verb.py exports)
        again = verb in ("inspect", "export") or _api(verb, loaded, tmp_path, wav)
        assert verb in loaded.verbs and again
        return
    lines = [x for x in err.splitlines() if x.strip()]
    assert status == 2 and len(lines) == 1, err
    has = ", ".join(v for v in VERBS if v in SUPPORTS[task])
    assert lines[0].startswith("lstmkit: error: "), lines
    assert f"task, '{task}', has no {verb}" in lines[0] and lines[0].endswith(f"supports {has}")
    with pytest.raises(UnsupportedVerb, match=f"'{task}', has no {verb}.*supports {has}$"):
        _api(verb, loaded, tmp_path, wav)
