"""The audio data sets of a speech run: the sample rate and its note, the held-out validation
split, a split's features read once (the training frames handed to the statistics), the
recordings of an --input file or folder, and the example recordings."""

import json
import warnings

import numpy as np
import pytest
import soundfile as sf

from lstmkit.data import audio
from lstmkit.data.audio_sets import (
    AudioSplit,
    first_recordings,
    input_records,
    split_utterances,
    training_rate,
)
from lstmkit.utils.errors import UserError


def _wav(path, rate=8000, hz=440.0, n=1600):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * hz * np.arange(n) / rate)).astype(np.float32), rate)
    return str(path)


def _manifest(tmp_path, wavs, name="m.jsonl", key="text"):
    path = tmp_path / name
    path.write_text(
        "".join(json.dumps({"audio_filepath": w, key: f"u{k}"}) + "\n" for k, w in enumerate(wavs))
    )
    return str(path)


def test_training_rate_is_the_data_s_when_not_given_and_says_so(tmp_path):
    wavs = [_wav(tmp_path / f"{k}.wav", rate) for k, rate in enumerate((8000, 16000, 16000))]
    m = _manifest(tmp_path, wavs)
    rate, note = training_rate(m, "text", 0)
    assert rate == 16000
    assert note.startswith("16000 Hz, the training audio's (3 file headers read: ")
    assert "2 at 16000 Hz" in note and "1 at 8000 Hz" in note
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert training_rate(m, "text", 8000) == (8000, "")
    with pytest.warns(
        UserWarning, match="--sample-rate 22050 is above the training audio's 16000 Hz"
    ):
        assert training_rate(m, "text", 22050) == (22050, "")


def test_split_utterances_hold_out_every_tenth_without_a_validation_set(tmp_path):
    m = _manifest(tmp_path, [_wav(tmp_path / "a.wav")] * 25)
    sources = {"train": m, "valid": "", "test": ""}
    train = split_utterances("train", sources, "text", "asr-ctc")
    valid = split_utterances("valid", sources, "text", "asr-ctc")
    assert [u.text for u in valid] == ["u9", "u19"] and len(train) == 23
    assert not {u.text for u in valid} & {u.text for u in train}
    with pytest.raises(UserError, match="task 'asr-ctc': no --test data given"):
        split_utterances("test", sources, "text", "asr-ctc")
    few = {
        "train": _manifest(tmp_path, [_wav(tmp_path / "a.wav")] * 9, "few.jsonl"),
        "valid": "",
        "test": "",
    }
    with pytest.raises(UserError, match="too few utterances to hold out"):
        split_utterances("valid", few, "text", "asr-ctc")
    given = dict(sources, valid=few["train"])
    assert len(split_utterances("train", given, "text", "asr-ctc")) == 25


def test_audio_split_reads_once_and_lends_its_log_mels_while_loading(tmp_path):
    utts = [audio.Utterance(_wav(tmp_path / f"{k}.wav", n=800 * (k + 1)), "x") for k in range(2)]
    spec = audio.FeatureSpec(sample_rate=8000, n_mels=8)
    seen = []

    def normalize(f):
        seen.append(split.logmels is not None)
        return f * 0 + 1

    split = AudioSplit(utts, spec, False, normalize)
    assert len(split) == 2 and split.lengths[0] < split.lengths[1]
    assert seen == [True, True] and split.logmels is None
    assert all((f == 1).all() for f in split.feats) and len(seen) == 2  # not read again
    with pytest.raises(AssertionError):
        split.wave(0)  # waves are kept only when asked for
    kept = AudioSplit(utts, spec, True, normalize)
    assert kept.wave(1).shape == (1600,)


def test_input_records_of_folders_and_manifests(tmp_path):
    flat = tmp_path / "flat"
    a, b = _wav(flat / "b.wav"), _wav(flat / "a.flac")
    (flat / "notes.txt").write_text("not audio")
    paths, cols, note = input_records(str(flat), "text")
    assert paths == [b, a] and cols == [{"audio_filepath": b}, {"audio_filepath": a}]
    assert note == f"{flat}: 2 files"
    labelled = tmp_path / "labelled"
    w = _wav(labelled / "yes" / "1.wav")
    assert input_records(str(labelled), "label")[1] == [{"audio_filepath": w, "label": "yes"}]
    m = tmp_path / "in.jsonl"
    m.write_text(
        json.dumps({"audio_filepath": a})
        + "\n"
        + json.dumps({"audio_filepath": b, "text": "hi", "duration": 0.2})
        + "\n"
    )
    paths, cols, note = input_records(str(m), "text")
    assert cols == [{"audio_filepath": a}, {"audio_filepath": b, "text": "hi", "duration": 0.2}]
    assert note == f"{m}: 2 entries"
    assert input_records(str(tmp_path / "list.txt"), "text") is None
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"--input: .*empty: no audio files \(\.wav"):
        input_records(str(tmp_path / "empty"), "text")


def test_first_recordings_of_the_first_source_at_hand(tmp_path):
    wavs = [_wav(tmp_path / f"{k}.wav") for k in range(5)]
    m = _manifest(tmp_path, wavs)
    assert first_recordings(("", str(tmp_path / "gone.jsonl"), m), "text") == wavs[:3]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    assert first_recordings((str(bad), m), "text") == []  # the first that exists decides
    assert first_recordings(("",), "text") == []
