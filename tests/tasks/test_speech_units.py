"""Speech: the validation loss is on the training loss's scale (per target character), and the
sample rate defaults to the training audio's own (8 kHz data is not upsampled to 16 kHz)."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lstmkit.data import audio
from lstmkit.models.speech import SPEECH_ENCODER, SpeechModelConfig, WordsModelConfig
from lstmkit.tasks.speech import AsrCtcTask, CtcConfig, SpokenWordsTask, WordsConfig, _collate

TINY_CTC = SpeechModelConfig(
    encoder=replace(SPEECH_ENCODER, hidden_size=8, num_layers=1), subsample=2
)
TINY_WORDS = WordsModelConfig(
    encoder=replace(SPEECH_ENCODER, hidden_size=8, num_layers=1), subsample=2
)
QUIET = {"freq_masks": 0, "time_masks": 0}


def _tone_manifest(root: Path, n: int = 20, rate: int = 8000) -> Path:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for k in range(n):
        symbols = rng.choice(["a", "b"], size=int(rng.integers(1, 4)))
        parts = [np.zeros(rate // 20)]
        for s in symbols:
            t = np.arange(rate // 5) / rate
            parts += [0.3 * np.sin(2 * np.pi * (400 if s == "a" else 1600) * t)]
            parts += [np.zeros(rate // 20)]
        sf.write(root / f"{k}.flac", np.concatenate(parts).astype(np.float32), rate)
        lines.append(json.dumps({"audio_filepath": f"{k}.flac", "text": " ".join(symbols)}))
    (root / "m.jsonl").write_text("\n".join(lines) + "\n")
    return root / "m.jsonl"


def test_ctc_validation_loss_is_the_training_loss_per_character(tmp_path):
    """The loss on the progress bar is torch's ctc_loss mean (per target character, averaged
    over utterances); validation reports the same quantity (it was the sum per input frame)."""
    task = AsrCtcTask(CtcConfig(train=str(_tone_manifest(tmp_path)), **QUIET), TINY_CTC)
    torch.manual_seed(0)
    model = task.build_model().eval()
    valid = task.split("valid")
    everything = _collate(valid.feats, [task.target(u) for u in valid.utterances])
    with torch.no_grad():
        training_loss = task.loss(model, everything).item()  # what the bar shows for a batch
        got = task.evaluate(model, "valid", torch.device("cpu"))["loss"]
    assert got == pytest.approx(training_loss, rel=1e-5)


def test_the_sample_rate_defaults_to_the_training_audio(tmp_path):
    manifest = _tone_manifest(tmp_path / "a", n=10, rate=8000)
    task = AsrCtcTask(CtcConfig(train=str(manifest), **QUIET), TINY_CTC)
    assert task.cfg.sample_rate == 8000 and task.cfg.spec.sample_rate == 8000
    note = task.data_report()["sample_rate"]
    assert note == "8000 Hz, the training audio's (10 file headers read, all 8000 Hz)"
    # read as it is: no resampling (to 16 kHz it doubled the samples and left the mel bins
    # above 4 kHz over nothing)
    wave = audio.load_audio(task.split("train").utterances[0].path, task.cfg.sample_rate)
    assert len(wave) == sf.info(task.split("train").utterances[0].path).frames
    # saved with the model: the rebuilt task (no data) keeps 8000
    again = AsrCtcTask.from_checkpoint_meta(json.loads(json.dumps(task.describe())))
    assert again.cfg.sample_rate == 8000


def test_a_rate_above_the_audio_is_a_warning(tmp_path):
    folder = tmp_path / "words"
    for label, hz in (("low", 300), ("high", 1800)):
        (folder / label).mkdir(parents=True)
        for k in range(6):
            t = np.arange(2400) / 8000
            x = 0.3 * np.sin(2 * np.pi * hz * t)
            sf.write(folder / label / f"{k}.wav", x.astype(np.float32), 8000)
    with pytest.warns(
        UserWarning, match=r"--sample-rate 16000 is above the training audio's 8000 Hz \(12 file"
    ):
        SpokenWordsTask(WordsConfig(train=str(folder), sample_rate=16000, **QUIET), TINY_WORDS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default and a rate at or below the data: silent
        assert SpokenWordsTask(WordsConfig(train=str(folder)), TINY_WORDS).cfg.sample_rate == 8000
        SpokenWordsTask(WordsConfig(train=str(folder), sample_rate=8000), TINY_WORDS)


def test_mixed_rates_take_the_most_common(tmp_path):
    paths = []
    for k, rate in enumerate([8000, 16000, 16000, 22050]):
        paths.append(str(tmp_path / f"{k}.wav"))
        sf.write(paths[-1], np.zeros(800, np.float32), rate)
    assert audio.data_rate(paths) == (16000, {8000: 1, 16000: 2, 22050: 1})
    assert audio.data_rate(paths[:2])[0] == 16000  # a tie: the higher
