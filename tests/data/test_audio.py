"""Speech data: log-mel features against librosa computed another way, resampling and mixing
checked on sines, manifests and label folders, augmentation, and the error paths."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from lstmkit.data import audio
from lstmkit.data.audio import FeatureSpec, Utterance
from lstmkit.utils.errors import UserError


def _sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[spectrum.argmax()])


def _band_db(wave: np.ndarray, rate: int, freq: float, ref: float) -> float:
    """Level at ``freq`` relative to the level at ``ref`` (dB), from a Hann-windowed FFT."""
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    f = np.fft.rfftfreq(len(wave), 1 / rate)

    def level(x):
        return spectrum[np.abs(f - x) < 20].max()

    return float(20 * np.log10(level(freq) / level(ref)))


# ---------------------------------------------------------------------------------------------
# features


@pytest.mark.parametrize("rate, n_mels, win_ms, hop_ms", [(16000, 40, 25, 10), (8000, 23, 32, 8)])
def test_log_mel_matches_librosa_reference(rate, n_mels, win_ms, hop_ms):
    """kaldi-native-fbank's log-mel against the definition computed with numpy's FFT and
    librosa's HTK mel filterbank (whose triangles are linear in Hz, Kaldi's in mel: the only
    difference, worth a few thousandths in log)."""
    librosa = pytest.importorskip("librosa")

    rng = np.random.default_rng(0)
    t = np.arange(rate) / rate
    sweep = np.sin(2 * np.pi * (100 * t + (rate / 2.2 - 100) / 2 * t**2))  # 100 Hz to 0.45 fs
    wave = (0.3 * sweep + 0.05 * rng.normal(size=rate)).astype(np.float32)
    spec = FeatureSpec(rate, n_mels, win_ms, hop_ms)
    ours = audio.log_mel(wave, spec)

    n, hop = spec.window, spec.hop
    n_fft = 1 << (n - 1).bit_length()
    frames = np.lib.stride_tricks.sliding_window_view(wave, n)[::hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(n), n=n_fft)) ** 2  # symmetric Hann
    mel = librosa.filters.mel(
        sr=rate, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=rate / 2, htk=True, norm=None
    )
    reference = np.log(np.maximum(power @ mel.T, np.finfo(np.float32).eps))

    assert ours.shape == reference.shape == (1 + (len(wave) - n) // hop, n_mels)
    diff = np.abs(ours - reference)
    assert diff.mean() < 0.02 and diff.max() < 0.25, (diff.mean(), diff.max())


def test_log_mel_of_a_tone_peaks_in_its_bin():
    spec = FeatureSpec(16000, 40)
    feats = audio.log_mel(_sine(1000, 16000, 0.5), spec)
    centers = np.array(audio_centers(spec))
    assert abs(centers[feats.mean(0).argmax()] - 1000) < 120


def audio_centers(spec):
    from lstmkit.tasks.speech import mel_centers

    return mel_centers(spec)


def test_short_wave_gives_one_frame():
    spec = FeatureSpec(16000, 40)
    assert audio.log_mel(np.ones(100, np.float32) * 0.1, spec).shape == (1, 40)


def test_normalize_per_utterance():
    rng = np.random.default_rng(1)
    x = (rng.normal(3.0, 2.0, size=(50, 8)) + np.arange(8)).astype(np.float32)
    z = audio.normalize(x)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-3)
    # one mean and std for the whole utterance: the bins keep their differences
    u = audio.normalize(x, "utterance")
    assert abs(u.mean()) < 1e-5 and u.std() == pytest.approx(1, abs=1e-3)
    np.testing.assert_allclose(np.diff(u.mean(0)), np.diff(x.mean(0)) / x.std(), rtol=1e-4)
    with pytest.raises(UserError, match="--normalize must be one of bins, utterance, global"):
        FeatureSpec(normalize="cmvn").check()


def test_global_normalisation_uses_the_training_set_statistics():
    rng = np.random.default_rng(2)
    feats = [rng.normal(size=(n, 4)).astype(np.float32) * 3 + 5 for n in (7, 30, 12)]
    mean, std = audio.global_stats(feats)
    every = np.concatenate(feats)
    np.testing.assert_allclose(mean, every.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, every.std(0), rtol=1e-5)
    z = np.concatenate([audio.normalize(f, "global", (mean, std)) for f in feats])
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-3)
    # unlike the per-utterance modes, a frame's value does not depend on its neighbours
    one = audio.normalize(feats[0], "global", (mean, std))
    np.testing.assert_array_equal(audio.normalize(feats[0][:3], "global", (mean, std)), one[:3])
    with pytest.raises(ValueError, match="training set"):
        audio.normalize(feats[0], "global")


# ---------------------------------------------------------------------------------------------
# reading and resampling


def test_resampled_sine_keeps_its_frequency_and_stereo_is_mixed(tmp_path):
    left = _sine(440, 44100, 1.0, amp=0.4)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, 0.5 * left], 1), 44100, subtype="PCM_24")
    wave = audio.load_audio(path, 16000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 16000) <= 1
    assert abs(_peak_hz(wave, 16000) - 440) < 2
    # mono = channel mean: amplitude (0.4 + 0.2) / 2
    assert np.abs(wave[2000:-2000]).max() == pytest.approx(0.3, abs=0.01)


def test_downsampling_removes_what_would_alias(tmp_path):
    # 10 kHz is above 8 kHz, the Nyquist frequency at 16 kHz: a plain decimation would fold it
    # to 6 kHz; a resampler must filter it out and keep the 1 kHz tone
    wave = _sine(1000, 48000, 1.0, 0.3) + _sine(10000, 48000, 1.0, 0.3)
    out = audio.resample(wave, 48000, 16000)
    assert _band_db(out, 16000, 6000, 1000) < -60


def test_upsampling_keeps_the_frequency():
    out = audio.resample(_sine(300, 8000, 1.0), 8000, 16000)
    assert len(out) == 16000 and abs(_peak_hz(out, 16000) - 300) < 2


def test_wav_and_flac_read_the_same_samples(tmp_path):
    x = _sine(200, 8000, 0.3)
    for name in ("a.wav", "a.flac"):
        sf.write(tmp_path / name, x, 8000, subtype="PCM_16")
    a, b = (audio.load_audio(tmp_path / n, 8000) for n in ("a.wav", "a.flac"))
    # both are 16-bit: equal within one step of quantisation (the encoders round differently)
    np.testing.assert_allclose(a, b, atol=1 / 32768)
    np.testing.assert_allclose(a, x, atol=1 / 32768)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"nope\.wav: audio file not found"):
        audio.load_audio(tmp_path / "nope.wav", 16000)


def test_corrupt_file(tmp_path):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(200)))
    with pytest.raises(UserError, match=r"corrupt\.wav: cannot read audio") as e:
        audio.load_audio(bad, 16000)
    assert "\n" not in str(e.value)


def test_samples_far_outside_full_scale_are_refused(tmp_path):
    """Float samples of 1e30 once gave NaN probabilities and exit status 0."""
    loud = tmp_path / "loud.wav"
    sf.write(loud, np.full(1600, 1e30, np.float32), 16000, subtype="FLOAT")
    with pytest.raises(UserError, match=r"loud\.wav: samples reach 1e\+30"):
        audio.load_audio(loud, 16000)
    clipped = tmp_path / "clipped.wav"  # a little over full scale is ordinary clipping
    sf.write(clipped, np.full(1600, 1.5, np.float32), 16000, subtype="FLOAT")
    assert audio.load_audio(clipped, 16000).max() == pytest.approx(1.5)


def test_zero_length_audio(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(UserError, match=r"empty\.wav: the audio is empty \(0 samples\)"):
        audio.load_audio(empty, 16000)


def test_wrong_sample_rates(tmp_path):
    sf.write(tmp_path / "a.wav", _sine(200, 8000, 0.1), 8000)
    with pytest.raises(UserError, match="sample rate must be a positive"):
        audio.load_audio(tmp_path / "a.wav", 0)
    with pytest.raises(UserError, match="--sample-rate must be at least 1000 Hz, got 500"):
        FeatureSpec(sample_rate=500).check()
    with pytest.raises(UserError, match="--n-mels must be between 1 and 129"):
        FeatureSpec(sample_rate=8000, n_mels=200).check()
    FeatureSpec(sample_rate=8000).check()


# ---------------------------------------------------------------------------------------------
# augmentation


def test_add_noise_reaches_the_requested_snr():
    wave = _sine(300, 16000, 1.0)
    noisy = audio.add_noise(wave, np.random.default_rng(0), 10.0, max_snr_db=10.0)
    snr = 10 * np.log10(np.mean(wave**2) / np.mean((noisy - wave) ** 2))
    assert snr == pytest.approx(10.0, abs=0.3)


def test_change_speed_scales_frequency_and_length():
    fast = audio.change_speed(_sine(400, 16000, 1.0), 16000, 1.1)
    assert abs(len(fast) - 16000 / 1.1) <= 1
    assert abs(_peak_hz(fast, 16000) - 440) < 3


def test_spec_augment_masks_bands_and_spans():
    feats = np.ones((100, 40), np.float32)
    rng = np.random.default_rng(3)
    out = audio.spec_augment(feats, rng, freq_masks=2, freq_width=8, time_masks=2, time_width=10)
    assert feats.min() == 1.0  # a copy
    zero_cols = np.where((out == 0).all(0))[0]
    zero_rows = np.where((out == 0).all(1))[0]
    assert 0 < len(zero_cols) <= 16 and 0 < len(zero_rows) <= 20
    assert set(np.unique(out)) <= {0.0, 1.0}
    again = audio.spec_augment(
        feats, np.random.default_rng(3), freq_masks=2, freq_width=8, time_masks=2, time_width=10
    )
    np.testing.assert_array_equal(out, again)


# ---------------------------------------------------------------------------------------------
# data sets


def test_read_manifest_resolves_relative_paths(tmp_path):
    (tmp_path / "sub").mkdir()
    m = tmp_path / "sub" / "train.jsonl"
    m.write_text(
        json.dumps({"audio_filepath": "a.wav", "text": "one two", "duration": 1.5})
        + "\n\n"
        + json.dumps({"audio_filepath": "/abs/b.flac", "label": "yes"})
        + "\n"
    )
    # classification reads label, falling back to text
    utts = audio.read_manifest(m, key="label")
    assert utts[0] == Utterance(str(tmp_path / "sub" / "a.wav"), "one two", 1.5)
    assert utts[1] == Utterance("/abs/b.flac", "yes", 0.0)
    # transcription needs text; the second entry has a label only
    with pytest.raises(UserError, match=r"train\.jsonl, line 3: no 'text' field"):
        audio.read_manifest(m)


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "line 1: not JSON"),
        ('{"text": "a"}', "line 1: no audio_filepath"),
        ('{"audio_filepath": "a.wav", "text": "a", "duration": -1}', "duration must be"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_manifest_errors_name_the_line(tmp_path, line, message):
    m = tmp_path / "m.jsonl"
    m.write_text(line + "\n")
    with pytest.raises(UserError, match=message):
        audio.read_manifest(m)


def test_empty_and_missing_manifest(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(UserError, match="has no entries"):
        audio.read_manifest(tmp_path / "e.jsonl")
    with pytest.raises(UserError, match="manifest not found"):
        audio.read_manifest(tmp_path / "x.jsonl")


def test_label_folders_and_manifest_round_trip(tmp_path):
    for label in ("no", "yes"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for k in range(2):
            sf.write(tmp_path / "data" / label / f"{k}.wav", _sine(200, 8000, 0.1), 8000)
    (tmp_path / "data" / "yes" / "notes.txt").write_text("not audio")
    utts = audio.read_dataset(tmp_path / "data", key="label")
    assert [(u.text, u.path.endswith(".wav")) for u in utts] == [("no", True)] * 2 + [
        ("yes", True)
    ] * 2
    audio.write_manifest(tmp_path / "m.jsonl", utts, key="label")
    assert audio.read_manifest(tmp_path / "m.jsonl", key="label") == utts
    with pytest.raises(UserError, match="a folder per label is for classification"):
        audio.read_dataset(tmp_path / "data", key="text")
    (tmp_path / "none").mkdir()
    with pytest.raises(UserError, match="no audio files in label sub-folders"):
        audio.scan_label_folders(tmp_path / "none")
