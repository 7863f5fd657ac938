"""predict and evaluate on the user's own files (issue 16, part 4): ``predict --input`` reads
the formats the task trains from (a CSV with the run's columns, JSONL, a manifest, a folder) and
keeps the input's columns beside the prediction; ``--output`` is CSV or JSON lines by name;
``evaluate --data`` scores a new labelled file; an evaluation with nothing to evaluate is one
line, status 2; spoken-words ``--plots`` writes its confusion matrix."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lstmkit.cli.main import cli_main
from lstmkit.infer.load import UnsupportedVerb, load_trained, require

GOOD = ["great", "superb", "moving", "fine", "brilliant", "lovely"]
BAD = ["awful", "dull", "boring", "bad", "weak", "tedious"]
FILLER = ["the", "film", "plot", "a", "was", "cast", "story", "and"]
PNG = b"\x89PNG\r\n\x1a\n"


def _review(rng) -> tuple[str, str]:
    label = str(rng.choice(["pos", "neg"]))
    words = list(rng.choice(FILLER, size=rng.integers(3, 8)))
    words.insert(int(rng.integers(0, len(words))), str(rng.choice(GOOD if label == "pos" else BAD)))
    return " ".join(words), label


def write_csv(path: Path, n: int, seed: int = 0, multiline_every: int = 0) -> Path:
    """``id,review,label`` rows; every ``multiline_every``-th review is a quoted field with a
    line break and a comma (one record over two lines)."""
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "review", "label"])
        for k in range(n):
            text, label = _review(rng)
            if multiline_every and k % multiline_every == 0:
                text = text.replace(" ", ",\n", 1)
            w.writerow([f"r{k}", text, label])
    return path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("lstmkit: error:")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.fixture(scope="module")
def sentiment_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sentiment")
    data = write_csv(root / "reviews.csv", 300)
    out = root / "run"
    args = [
        "train", "sentiment", "--train", str(data), "--text-column", "review",
        "--hidden-size", "16", "--embedding-dim", "16", "--steps", "60", "--eval-every", "60",
        "--batch-size", "32", "--lr", "1e-2", "--no-progress", "--threads", "1", "--out", str(out),
    ]  # fmt: skip
    assert cli_main(args) == 0
    return out


def test_predict_reads_a_csv_by_rows_with_the_runs_column(sentiment_run, tmp_path, capsys):
    """On today's code the 20 rows (2 of them over two lines) were 23 lines scored as text,
    the header and the id and label columns among them."""
    data = write_csv(tmp_path / "new.csv", 20, seed=1, multiline_every=10)
    assert len(data.read_text().splitlines()) == 23
    capsys.readouterr()
    assert cli_main(["predict", str(sentiment_run), "--input", str(data)]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert len(rows) == 20
    with open(data, newline="") as f:
        expected = list(csv.DictReader(f))
    for row, want in zip(rows, expected, strict=True):
        # the input's own columns first, as they are; the prediction beside them
        assert list(row)[:3] == ["id", "review", "label"]
        assert {k: row[k] for k in ("id", "review", "label")} == want
        assert row["predicted_label"] in ("neg", "pos")
        assert set(row["probabilities"]) == {"neg", "pos"}
        assert "text" not in row  # the echo of the input is the review column itself
    assert "20 examples from 23 lines" in captured.err


def test_predict_output_csv_keeps_the_columns_and_flattens_probabilities(
    sentiment_run, tmp_path, capsys
):
    data = write_csv(tmp_path / "new.csv", 12, seed=2, multiline_every=5)
    out = tmp_path / "pred.csv"
    assert (
        cli_main(["predict", str(sentiment_run), "--input", str(data), "--output", str(out)]) == 0
    )
    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == [
        "id", "review", "label", "predicted_label", "probabilities.neg", "probabilities.pos"
    ]  # fmt: skip
    with open(data, newline="") as f:
        expected = list(csv.DictReader(f))
    assert [r["review"] for r in rows] == [e["review"] for e in expected]  # line breaks kept
    for r in rows:
        assert float(r["probabilities.neg"]) + float(r["probabilities.pos"]) == pytest.approx(
            1, abs=2e-4
        )
    # and JSON lines for any other name, UTF-8 rather than \u escapes
    jl = tmp_path / "pred.jsonl"
    text = tmp_path / "smile.txt"
    text.write_text("a lovely film \u263a\nthe plot was dull\n", encoding="utf-8")
    assert cli_main(["predict", str(sentiment_run), "--input", str(text), "--output", str(jl)]) == 0
    raw = jl.read_text(encoding="utf-8")
    assert "\u263a" in raw and "\\u263a" not in raw
    assert [json.loads(x)["text"] for x in raw.splitlines()] == [
        "a lovely film \u263a",
        "the plot was dull",
    ]  # a .txt file stays one input per line
    capsys.readouterr()
    assert cli_main(["predict", str(sentiment_run), "lovely \u263a"]) == 0
    out = capsys.readouterr().out
    assert "\u263a" in out and "\\u263a" not in out  # the screen too


def test_predict_reads_jsonl_and_unlabelled_csv_with_column_options(
    sentiment_run, tmp_path, capsys
):
    unlabelled = tmp_path / "todo.csv"
    unlabelled.write_text('key,body\n7,"a superb, moving film"\n8,dull and boring\n')
    args = ["predict", str(sentiment_run), "--input", str(unlabelled), "--text-column", "body"]
    capsys.readouterr()
    assert cli_main(args) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(r["key"], r["body"]) for r in rows] == [
        ("7", "a superb, moving film"),
        ("8", "dull and boring"),
    ]
    assert all(r["label"] in ("neg", "pos") for r in rows)
    assert not any("predicted_label" in r for r in rows)  # no label column: no collision

    jl = tmp_path / "todo.jsonl"
    jl.write_text('{"t": "lovely", "n": 1}\n{"t": "tedious", "n": 2}\n', encoding="utf-8")
    assert cli_main(["predict", str(sentiment_run), "--input", str(jl), "--text-column", "t"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["n"] for r in rows] == [1, 2] and all("label" in r for r in rows)


def test_predict_bad_rows_name_the_file_and_line(sentiment_run, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,review,label\n1,fine film,pos\n2\n")
    assert cli_main(["predict", str(sentiment_run), "--input", str(bad)]) == 2
    assert f"{bad}, line 3" in one_error_line(capsys)
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("id,words\n1,fine\n")
    assert cli_main(["predict", str(sentiment_run), "--input", str(nocol)]) == 2
    line = one_error_line(capsys)
    assert "no column 'review'" in line and "--text-column" in line
    # a read option without a file to read is a mistake, not ignored
    assert cli_main(["predict", str(sentiment_run), "fine", "--text-column", "x"]) == 2
    assert "--text-column" in one_error_line(capsys)


def test_evaluate_data_scores_a_new_labelled_file(sentiment_run, tmp_path, capsys):
    data = write_csv(tmp_path / "more.csv", 40, seed=3, multiline_every=7)
    capsys.readouterr()
    assert cli_main(["evaluate", str(sentiment_run), "--data", str(data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["data"]) >= {"accuracy", "macro_f1", "loss"}
    # the Python function gives the same numbers, and they are the file's: count them by hand
    from lstmkit.infer.evaluate import evaluate_data

    task, model, _ = load_trained(sentiment_run, torch.device("cpu"))
    metrics = evaluate_data(task, model, data, torch.device("cpu"))
    assert metrics["accuracy"] == pytest.approx(result["data"]["accuracy"])
    with open(data, newline="") as f:
        rows = list(csv.DictReader(f))
    with torch.no_grad():
        pred = task.predict(model, [r["review"] for r in rows], "cpu")
    hits = sum(p["label"] == r["label"] for p, r in zip(pred, rows, strict=True))
    assert metrics["accuracy"] == pytest.approx(hits / 40)
    plots = tmp_path / "plots"
    plots.mkdir()
    assert (
        cli_main(["evaluate", str(sentiment_run), "--data", str(data), "--plots", str(plots)]) == 0
    )
    assert (plots / "confusion-data.png").read_bytes()[:8] == PNG


def test_evaluate_data_errors_are_one_line(sentiment_run, tmp_path, capsys):
    unseen = tmp_path / "unseen.csv"
    unseen.write_text("id,review,label\n1,fine,meh\n")
    assert cli_main(["evaluate", str(sentiment_run), "--data", str(unseen)]) == 2
    assert "'meh'" in one_error_line(capsys)
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text("id,review\n1,fine\n")
    assert cli_main(["evaluate", str(sentiment_run), "--data", str(unlabelled)]) == 2
    assert "no column 'label'" in one_error_line(capsys)
    empty = tmp_path / "empty.csv"
    empty.write_text("id,review,label\n1,,pos\n")
    assert cli_main(["evaluate", str(sentiment_run), "--data", str(empty)]) == 2
    assert str(empty) in one_error_line(capsys)
    assert cli_main(["evaluate", str(sentiment_run), "--data", str(tmp_path / "nope.csv")]) == 2
    assert "not found" in one_error_line(capsys)


def test_lm_without_a_test_set_is_a_clear_error_and_data_scores(tmp_path, capsys):
    """On today's code `evaluate` printed an empty table and exited 0."""
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat\nthe dog sat on the log\n" * 30)
    out = tmp_path / "lm"
    args = [
        "train", "lm", "--train", str(text), "--hidden-size", "16", "--num-layers", "1",
        "--seq-len", "16", "--batch-size", "4", "--steps", "4", "--eval-every", "4",
        "--no-progress", "--threads", "1", "--out", str(out),
    ]  # fmt: skip
    assert cli_main(args) == 0
    capsys.readouterr()
    assert cli_main(["evaluate", str(out)]) == 2
    line = one_error_line(capsys)
    assert "no test set" in line and "--data FILE" in line and "--test-fraction" in line
    assert "score a text file" in line and "labelled" not in line  # an lm scores plain text
    other = tmp_path / "other.txt"
    other.write_text("the cat sat on the log\n" * 5)
    assert cli_main(["evaluate", str(out), "--data", str(other), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)["data"]
    assert metrics["tokens"] == len(other.read_text()) - 1 and metrics["loss"] > 0
    assert cli_main(["evaluate", str(out), "--data", str(other), "--text-column", "x"]) == 2
    assert "does not take it" in one_error_line(capsys)


def _tones(root: Path, n: int, seed: int = 0) -> Path:
    """A folder per label: 'low' a 300 Hz tone, 'high' one at 1800 Hz, at 8 kHz."""
    rng = np.random.default_rng(seed)
    rate = 8000
    for label, hz in (("low", 300), ("high", 1800)):
        (root / label).mkdir(parents=True)
        for k in range(n):
            t = np.arange(int(rate * rng.uniform(0.2, 0.3))) / rate
            gap = np.zeros(int(rate * 0.05))
            x = np.concatenate([gap, 0.3 * np.sin(2 * np.pi * hz * t), gap])
            x = x + 0.01 * rng.normal(size=len(x))
            sf.write(root / label / f"{k}.wav", x.astype(np.float32), rate)
    return root


def test_spoken_words_from_a_folder_evaluate_data_and_confusion_plot(tmp_path, capsys):
    """A folder-trained spoken-words run has no test set: `evaluate` said nothing and exited 0,
    and `--plots` wrote nothing; now the first is one line, status 2, and `--data FOLDER
    --plots` writes the confusion matrix."""
    train_dir = _tones(tmp_path / "train", 10)
    out = tmp_path / "run"
    args = [
        "train", "spoken-words", "--train", str(train_dir), "--sample-rate", "8000",
        "--freq-masks", "0", "--time-masks", "0", "--hidden-size", "8", "--num-layers", "1",
        "--subsample", "2", "--steps", "6", "--eval-every", "6", "--batch-size", "8",
        "--no-progress", "--threads", "1", "--out", str(out),
    ]  # fmt: skip
    assert cli_main(args) == 0
    capsys.readouterr()
    assert cli_main(["evaluate", str(out)]) == 2
    assert "no test set" in one_error_line(capsys)
    test_dir = _tones(tmp_path / "test", 3, seed=5)
    plots = tmp_path / "plots"
    plots.mkdir()
    args = ["evaluate", str(out), "--data", str(test_dir), "--plots", str(plots), "--json"]
    assert cli_main(args) == 0
    captured = capsys.readouterr()
    assert 0 <= json.loads(captured.out)["data"]["accuracy"] <= 1
    png = plots / "confusion-data.png"
    assert png.read_bytes()[:8] == PNG and f"wrote {png}" in captured.err
    # the validation share (every 10th recording) has its matrix too
    assert cli_main(["evaluate", str(out), "--split", "valid", "--plots", str(plots)]) == 0
    assert (plots / "confusion-valid.png").exists()

    # predict: a folder per label keeps its labels beside the prediction; a manifest too
    capsys.readouterr()
    assert cli_main(["predict", str(out), "--input", str(test_dir)]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(rows) == 6 and {r["label"] for r in rows} == {"low", "high"}
    assert all(r["predicted_label"] in ("low", "high") for r in rows)
    manifest = tmp_path / "m.jsonl"
    wavs = sorted((test_dir / "low").glob("*.wav"))
    manifest.write_text("".join(json.dumps({"audio_filepath": str(w)}) + "\n" for w in wavs))
    assert (
        cli_main(
            ["predict", str(out), "--input", str(manifest), "--output", str(tmp_path / "p.csv")]
        )
        == 0
    )
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["audio_filepath"] for r in rows] == [str(w) for w in wavs]
    assert all(r["label"] in ("low", "high") for r in rows)


@pytest.mark.parametrize(
    ("task", "hint"),
    [
        ("adding", "`lstmkit predict` gives this adding model's outputs"),  # a regression
        ("spoken-words", "`lstmkit predict` gives this spoken-words model's outputs"),
    ],
)
def test_transcribe_on_another_task_points_to_what_it_has(task, hint):
    """`transcribe` on an adding run said "use `lstmkit predict` for classification"."""
    from lstmkit.tasks.base import get_task

    with pytest.raises(UnsupportedVerb) as e:
        require(get_task(task), "transcribe", "run")
    msg = str(e.value)
    assert "has no transcribe (transcribe needs an asr-ctc model; " + hint in msg
    assert "classification" not in msg
    assert msg.endswith("it supports predict, evaluate, inspect, export, quantize")
