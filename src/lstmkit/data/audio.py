"""Speech data: reading audio, log-mel features, augmentation, and the two data-set formats.

Audio is read with soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, MP3, AIFF, ...), mixed down to
mono by averaging the channels and resampled with soxr to the model's rate. Features are Kaldi
log-mel filterbanks from kaldi-native-fbank; the definition, with frames ``x_t`` of
``win_ms`` milliseconds every ``hop_ms`` milliseconds (``N`` samples, zero-padded to ``K``, the
next power of two), a Hann window ``w`` and ``M`` triangular filters ``H_m`` spaced evenly on
the mel scale ``mel(f) = 1127 ln(1 + f / 700)`` between 0 Hz and the Nyquist frequency::

    X_t(k)    = sum_n w(n) x_t(n) exp(-2 pi i k n / K)           k = 0 .. K/2
    E_t(m)    = sum_k H_m(k) |X_t(k)|^2                           m = 1 .. M
    logmel_tm = ln max(E_t(m), eps)

and per-utterance normalisation, ``bins`` (each bin to zero mean and unit variance over the
frames, cepstral mean and variance normalisation)::

    z_tm = (logmel_tm - mean_t logmel_tm) / (std_t logmel_tm + 1e-5)

or ``utterance`` (one mean and standard deviation over all frames and bins, which keeps the
shape of the average spectrum: for short isolated words it carries much of the word)::

    z_tm = (logmel_tm - mean_{t,m} logmel_tm) / (std_{t,m} logmel_tm + 1e-5)

or ``global`` (each bin with the mean and standard deviation of that bin over every frame of the
training set, saved with the model: Kaldi's and ESPnet's global CMVN). Unlike the two
per-utterance modes it does not depend on how much silence surrounds the speech::

    z_tm = (logmel_tm - mu_m) / (sigma_m + 1e-5)

Data sets come as a folder per label (``root/yes/*.wav``: spoken-word classification, as in
keyword spotting) or as JSONL manifests, one utterance per line, with the keys of NeMo and other
speech toolkits: ``{"audio_filepath": "a.wav", "text": "seven two", "duration": 1.2}``
(``label`` instead of ``text`` for classification; relative paths are relative to the
manifest's folder).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmkit.data.text import json_object
from lstmkit.utils.errors import UserError

NORMALIZATIONS = ("bins", "utterance", "global")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au", ".opus")


# ---------------------------------------------------------------------------------------------
# reading audio


MAX_PEAK = 1000.0  # 60 dB over full scale: louder float samples are a broken file


def load_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Samples of ``path`` as float32 in [-1, 1], mono (channel mean), at ``sample_rate`` Hz.

    Raises :class:`UserError` naming the file when it is missing, unreadable or has no samples.
    """
    import soundfile as sf
    import soxr

    path = Path(path)
    if sample_rate < 1:
        raise UserError(f"sample rate must be a positive number of Hz, got {sample_rate}")
    if not path.is_file():
        raise UserError(f"{path}: audio file not found")
    try:
        wave, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        reason = str(e).split(": ", 1)[-1] if str(e) else type(e).__name__
        raise UserError(f"{path}: cannot read audio ({reason})") from None
    if wave.shape[0] == 0:
        raise UserError(f"{path}: the audio is empty (0 samples)")
    if rate < 1:
        raise UserError(f"{path}: invalid sample rate {rate} Hz in the file header")
    mono = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
    if not np.isfinite(mono).all():
        raise UserError(f"{path}: the audio holds NaN or infinite samples")
    peak = float(np.abs(mono).max())
    if peak > MAX_PEAK:
        # float files are meant to hold [-1, 1]; at 1e30 the mel power overflows to inf and every
        # probability comes out NaN
        raise UserError(
            f"{path}: samples reach {peak:.3g}, far outside the [-1, 1] of audio; rescale the file"
        )
    if rate != sample_rate:
        # soxr's default "HQ" quality: a linear-phase low-pass that keeps the band and removes
        # what would alias (measured: a 5 kHz tone at 44.1 kHz comes out at -150 dB at 8 kHz)
        mono = soxr.resample(mono, rate, sample_rate)
    return np.ascontiguousarray(mono, dtype=np.float32)


def file_rate(path: str | os.PathLike) -> int:
    """The sample rate of ``path`` from its header (no samples are read)."""
    import soundfile as sf

    try:
        return int(sf.info(str(path)).samplerate)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        reason = str(e).split(": ", 1)[-1] if str(e) else type(e).__name__
        raise UserError(f"{path}: cannot read audio ({reason})") from None


RATE_SAMPLE = 256  # files whose headers give the data's rate (evenly spaced over the list)


def data_rate(paths: list[str]) -> tuple[int, dict[int, int]]:
    """The most common sample rate of the audio files ``paths`` (the higher on a tie), and the
    count of each rate, from the headers of at most :data:`RATE_SAMPLE` evenly spaced files."""
    if not paths:
        raise UserError("no audio files to take the sample rate from")
    step = max(1, math.ceil(len(paths) / RATE_SAMPLE))
    counts: dict[int, int] = {}
    for path in paths[::step]:
        rate = file_rate(path)
        counts[rate] = counts.get(rate, 0) + 1
    return max(counts, key=lambda r: (counts[r], r)), dict(sorted(counts.items()))


def resample(wave: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    """``wave`` (1-D) resampled from ``rate`` to ``new_rate`` Hz with soxr."""
    import soxr

    if rate == new_rate:
        return wave
    return soxr.resample(np.asarray(wave, dtype=np.float32), rate, new_rate)


# ---------------------------------------------------------------------------------------------
# features


@dataclass(frozen=True)
class FeatureSpec:
    """How audio becomes log-mel frames: sample rate, window and hop in ms, number of bins,
    and the normalisation (``bins`` or ``utterance``, see :func:`normalize`)."""

    sample_rate: int = 16000
    n_mels: int = 40
    win_ms: float = 25.0
    hop_ms: float = 10.0
    normalize: str = "bins"

    def check(self) -> None:
        if self.normalize not in NORMALIZATIONS:
            raise UserError(
                f"--normalize must be one of {', '.join(NORMALIZATIONS)}, got {self.normalize!r}"
            )
        if self.sample_rate < 1000:
            raise UserError(f"--sample-rate must be at least 1000 Hz, got {self.sample_rate}")
        if self.hop_ms <= 0 or self.win_ms <= 0:
            raise UserError(f"--win-ms and --hop-ms must be > 0, got {self.win_ms}, {self.hop_ms}")
        n = round(self.sample_rate * self.win_ms / 1000)
        if n < 16:
            raise UserError(
                f"--win-ms {self.win_ms} is {n} samples at {self.sample_rate} Hz; need >= 16"
            )
        bins = 2 ** math.ceil(math.log2(n)) // 2 + 1
        if not 1 <= self.n_mels <= bins:
            raise UserError(
                f"--n-mels must be between 1 and {bins} (the FFT bins of a {self.win_ms} ms "
                f"window at {self.sample_rate} Hz), got {self.n_mels}"
            )

    @property
    def window(self) -> int:
        """Samples per frame."""
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def hop(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)


def fbank_options(spec: FeatureSpec):
    """kaldi-native-fbank's options for ``spec``: the plain log-mel of :func:`log_mel` (also what
    a streaming session's ``OnlineFbank`` is built with, so its frames equal these)."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    f = opts.frame_opts
    f.samp_freq = float(spec.sample_rate)
    f.frame_length_ms = float(spec.win_ms)
    f.frame_shift_ms = float(spec.hop_ms)
    # plain log-mel: Kaldi's dither, pre-emphasis, DC removal and Povey window are switched off,
    # so that the features are the textbook definition (and match librosa's, see the tests)
    f.dither = 0.0
    f.preemph_coeff = 0.0
    f.remove_dc_offset = False
    f.window_type = "hanning"
    opts.mel_opts.num_bins = spec.n_mels
    opts.mel_opts.low_freq = 0.0
    opts.mel_opts.high_freq = 0.0  # 0: the Nyquist frequency
    return opts


def log_mel(wave: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Log-mel filterbank frames ``(T, n_mels)`` (float32) of a mono wave at ``spec``'s rate.

    The definition is in the module docstring; frames cover the wave without padding past its
    ends (``T = 1 + (len - window) // hop``), and a wave shorter than one window is zero-padded
    to one frame.
    """
    import kaldi_native_fbank as knf

    opts = fbank_options(spec)
    wave = np.asarray(wave, dtype=np.float32)
    if len(wave) < spec.window:
        wave = np.pad(wave, (0, spec.window - len(wave)))
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(float(spec.sample_rate), wave)
    fbank.input_finished()
    n = fbank.num_frames_ready
    return np.stack([fbank.get_frame(t) for t in range(n)]).astype(np.float32)


def normalize(
    feats: np.ndarray, mode: str = "bins", stats: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """Normalisation of ``(T, M)`` frames: ``bins`` gives every bin zero mean and unit variance
    over time, ``utterance`` the whole utterance (one mean and one std), ``global`` every bin the
    training set's ``stats = (mean, std)`` (see :func:`global_stats`)."""
    if mode == "global":
        if stats is None:
            raise ValueError("global normalisation needs the training set's (mean, std)")
        mean, std = stats
    else:
        axis = 0 if mode == "bins" else None
        mean = feats.mean(axis=axis, keepdims=True)
        std = feats.std(axis=axis, keepdims=True)
    return ((feats - mean) / (std + 1e-5)).astype(np.float32)


def global_stats(logmels: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin mean and standard deviation over every frame of ``logmels`` (float64 sums)."""
    n = sum(f.shape[0] for f in logmels)
    total = sum(f.sum(0, dtype=np.float64) for f in logmels)
    mean = total / n
    var = sum(((f - mean) ** 2).sum(0) for f in logmels) / n
    return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


def features(
    wave: np.ndarray, spec: FeatureSpec, stats: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """Normalised log-mel frames of a wave: :func:`normalize` of :func:`log_mel`."""
    return normalize(log_mel(wave, spec), spec.normalize, stats)


# ---------------------------------------------------------------------------------------------
# augmentation (training only)


def add_noise(
    wave: np.ndarray, rng: np.random.Generator, snr_db: float, *, max_snr_db: float = 40.0
) -> np.ndarray:
    """``wave`` plus white Gaussian noise at an SNR drawn uniformly from [snr_db, max_snr_db].

    SNR is ``10 log10(P_signal / P_noise)`` with ``P`` the mean square of the samples.
    """
    snr = rng.uniform(snr_db, max(snr_db, max_snr_db))
    power = float(np.mean(wave.astype(np.float64) ** 2)) or 1e-10
    sigma = math.sqrt(power / 10 ** (snr / 10))
    return (wave + rng.normal(0.0, sigma, size=wave.shape)).astype(np.float32)


def change_speed(wave: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """``wave`` played ``factor`` times faster (tempo and pitch together, the speed
    perturbation of Ko et al. 2015): resampled as if recorded at ``factor * sample_rate``."""
    if factor <= 0:
        raise ValueError(f"speed factor must be > 0, got {factor}")
    return resample(wave, round(sample_rate * factor), sample_rate).astype(np.float32)


def spec_augment(
    feats: np.ndarray,
    rng: np.random.Generator,
    *,
    freq_masks: int,
    freq_width: int,
    time_masks: int,
    time_width: int,
) -> np.ndarray:
    """SpecAugment's masking (Park et al. 2019): ``freq_masks`` bands of up to ``freq_width``
    bins and ``time_masks`` spans of up to ``time_width`` frames (at most a fifth of the
    utterance each) set to 0, the mean of normalised features. Returns a copy."""
    out = feats.copy()
    T, F = out.shape
    for _ in range(freq_masks):
        w = int(rng.integers(0, freq_width + 1))
        if 0 < w < F:
            f0 = int(rng.integers(0, F - w + 1))
            out[:, f0 : f0 + w] = 0.0
    for _ in range(time_masks):
        w = int(rng.integers(0, min(time_width, T // 5) + 1))
        if 0 < w < T:
            t0 = int(rng.integers(0, T - w + 1))
            out[t0 : t0 + w] = 0.0
    return out


# ---------------------------------------------------------------------------------------------
# data sets


@dataclass(frozen=True)
class Utterance:
    """One entry of a data set: an audio file with its label (classification) or transcript."""

    path: str
    text: str
    duration: float = 0.0


def read_manifest(
    path: str | os.PathLike, *, key: str = "text", required: bool = True
) -> list[Utterance]:
    """Utterances of a JSONL manifest (``audio_filepath``, ``text`` or ``label``, ``duration``).

    ``key`` names the field that holds the target (``text`` for transcription; for
    classification ``label`` is read, with ``text`` as fallback); ``required=False`` (files to
    label) lets it be missing (``""``). Errors name the line.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: manifest not found")
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 (byte {e.start})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}, line {n}"
        entry = json_object(line, where)
        audio = entry.get("audio_filepath", entry.get("audio"))
        if not isinstance(audio, str) or not audio:
            raise UserError(f"{where}: no audio_filepath")
        target = entry.get(key)
        if target is None and key == "label":
            target = entry.get("text")
        if target is None and not required:
            target = ""
        if target is None:
            raise UserError(f"{where}: no {key!r} field")
        duration = entry.get("duration", 0.0)
        if not isinstance(duration, (int, float)) or duration < 0:
            raise UserError(f"{where}: duration must be a number >= 0, got {duration!r}")
        audio_path = Path(audio)
        if not audio_path.is_absolute():
            audio_path = path.parent / audio_path
        out.append(Utterance(str(audio_path), str(target), float(duration)))
    if not out:
        raise UserError(f"{path}: the manifest has no entries")
    return out


def scan_label_folders(root: str | os.PathLike) -> list[Utterance]:
    """Utterances of a folder with one sub-folder per label (``root/LABEL/*.wav``)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: folder not found")
    out = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(label_dir.rglob("*")):
            if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES:
                out.append(Utterance(str(f), label_dir.name))
    if not out:
        raise UserError(
            f"{root}: no audio files in label sub-folders (expected {root}/LABEL/*.wav)"
        )
    return out


def read_dataset(path: str | os.PathLike, *, key: str = "text") -> list[Utterance]:
    """A JSONL manifest (a file) or a folder per label (a folder)."""
    p = Path(path)
    if p.is_dir():
        if key != "label":
            raise UserError(f"{p}: a folder per label is for classification; give a manifest")
        return scan_label_folders(p)
    return read_manifest(p, key=key)


def write_manifest(path: str | os.PathLike, utterances: list[Utterance], key: str = "text"):
    """Write utterances as a JSONL manifest (atomically)."""
    from lstmkit.utils.io import atomic_write_text

    lines = [
        json.dumps({"audio_filepath": u.path, key: u.text, "duration": round(u.duration, 4)})
        for u in utterances
    ]
    return atomic_write_text(path, "".join(line + "\n" for line in lines))
