"""The FSDD preparation of the speech results: the official split, leave-one-speaker-out folds
and connected-digit sequences that keep training and test recordings apart (on a small
synthetic folder laid out like FSDD, so no data set is needed)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lstmkit.experiments import speech_results
from lstmkit.utils.errors import UserError


def _fake_fsdd(root: Path) -> Path:
    rows = ["path\tbytes\tsha256\tdigit\tspeaker\tindex\tsplit"]
    (root / "recordings").mkdir(parents=True)
    for speaker in ("ann", "bob"):
        for digit in range(3):
            for index in (0, 1, 5, 6, 10, 11):
                name = f"recordings/{digit}_{speaker}_{index}.wav"
                # the level tells the part apart: test 0.2, validation 0.4, training 0.6
                level = 0.2 if index < 5 else 0.4 if index < 10 else 0.6
                tone = np.sin(np.arange(800) * 0.1 * (digit + 1)).astype(np.float32) * level
                sf.write(root / name, tone, 8000, subtype="PCM_16")
                data = (root / name).read_bytes()
                split = "test" if index < 5 else "train"
                sha = hashlib.sha256(data).hexdigest()
                rows.append(f"{name}\t{len(data)}\t{sha}\t{digit}\t{speaker}\t{index}\t{split}")
    (root / "MANIFEST.tsv").write_text("\n".join(rows) + "\n")
    return root


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_prepare_writes_the_splits(tmp_path):
    fsdd = _fake_fsdd(tmp_path / "fsdd")
    out = tmp_path / "data"
    args = ["prepare", "--fsdd", str(fsdd), "--out", str(out)]
    args += ["--n-train", "6", "--n-valid", "2", "--n-test", "3"]
    assert speech_results.main(args) == 0

    def indices(path):
        return sorted({int(Path(e["audio_filepath"]).stem.split("_")[2]) for e in _read(path)})

    assert indices(out / "fsdd" / "test.jsonl") == [0, 1]
    assert indices(out / "fsdd" / "valid.jsonl") == [5, 6]
    assert indices(out / "fsdd" / "train.jsonl") == [10, 11]
    first = _read(out / "fsdd" / "train.jsonl")[0]
    assert first["label"] in {"0", "1", "2"} and first["duration"] == pytest.approx(0.1)

    test = _read(out / "loso-ann" / "test.jsonl")
    assert len(test) == 18 and all("_ann_" in e["audio_filepath"] for e in test)
    assert all("_bob_" in e["audio_filepath"] for e in _read(out / "loso-ann" / "train.jsonl"))

    for split, n, level in (("train", 6, 0.6), ("valid", 2, 0.4), ("test", 3, 0.2)):
        seqs = _read(out / "digits" / f"{split}.jsonl")
        assert len(seqs) == n
        for e in seqs:
            # built only from the recordings of its own part
            assert np.abs(sf.read(e["audio_filepath"])[0]).max() == pytest.approx(level, abs=0.01)
    isolated = _read(out / "digits" / "isolated-test.jsonl")
    assert len(isolated) == 12 and {e["text"] for e in isolated} == {"zero", "one", "two"}
    padded = _read(out / "digits" / "padded-isolated-test.jsonl")
    assert [e["text"] for e in padded] == [e["text"] for e in isolated]
    assert all(e["duration"] == pytest.approx(0.5, abs=1e-3) for e in padded)  # 0.2 + 0.1 + 0.2
    assert all(
        e["text"] == ("zero", "one", "two")[int(Path(e["audio_filepath"]).name[0])]
        for e in isolated
    )
    for e in _read(out / "digits" / "train.jsonl"):
        words = e["text"].split()
        assert 2 <= len(words) <= 7 and set(words) <= {"zero", "one", "two"}
        wave, rate = sf.read(e["audio_filepath"])
        assert rate == 8000 and len(wave) / rate == pytest.approx(e["duration"], abs=1e-3)
        # each digit is 0.1 s, each gap 0.1-0.5 s, each end 0.05-0.3 s
        gaps = len(words) - 1
        assert 0.1 * len(words) + 0.1 * gaps + 0.1 <= e["duration"]
        assert e["duration"] <= 0.1 * len(words) + 0.5 * gaps + 0.6


def test_prepare_names_a_missing_manifest(tmp_path, capsys):
    assert speech_results.main(["prepare", "--fsdd", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "MANIFEST.tsv not found" in capsys.readouterr().out
    with pytest.raises(UserError):
        speech_results.read_fsdd(tmp_path)


def test_isolated_words_and_edge_silence_shape_only_the_training_sequences(tmp_path, capsys):
    fsdd = _fake_fsdd(tmp_path / "fsdd")
    out = tmp_path / "data"
    args = ["prepare", "--fsdd", str(fsdd), "--out", str(out), "--n-train", "40"]
    args += ["--n-valid", "20", "--n-test", "20", "--train-min-digits", "1"]
    assert speech_results.main([*args, "--edge-silence", "0,0"]) == 0
    train = _read(out / "digits" / "train.jsonl")
    sizes = [len(e["text"].split()) for e in train]
    assert min(sizes) == 1 and max(sizes) <= 7
    for e in train:
        if len(e["text"].split()) == 1:  # no silence around a lone word: just the 0.1 s digit
            assert e["duration"] == pytest.approx(0.1)
    for split in ("valid", "test"):
        assert min(len(e["text"].split()) for e in _read(out / "digits" / f"{split}.jsonl")) >= 2
    assert speech_results.main([*args, "--edge-silence", "0.3"]) == 2
    assert "--edge-silence must be MIN,MAX" in capsys.readouterr().out
