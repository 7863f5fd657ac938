"""Speech recognition: spoken-word classification and CTC transcription over characters.

Both tasks read audio files (any format and rate that soundfile reads; mixed to mono and
resampled to ``--sample-rate``), turn them into normalised log-mel frames
(:mod:`lstmkit.data.audio`), stack ``--subsample`` consecutive frames into one (frame rate / k,
as in Sak et al. 2015) and run an :class:`lstmkit.LSTM` encoder over them.

- ``spoken-words``: a label per recording (a folder per label, or a JSONL manifest with
  ``label``); the encoder's outputs are pooled over time (mean, max or last) and classified.
  Metric: accuracy.
- ``asr-ctc``: a transcript per recording (JSONL manifest with ``text``); a linear layer gives
  per-frame log-probabilities over the characters of the training transcripts plus a blank,
  trained with CTC. Metrics: WER and CER (jiwer), greedy or beam-search decoding.

CTC (Graves et al. 2006): with per-frame distributions ``y_t`` over the characters and the
blank ``-``, a frame path ``pi`` maps to a transcript by ``B``, which merges repeated symbols
and then removes blanks (``B(aa-ab-) = aab``). The loss is

    L(x, z) = -ln sum_{pi : B(pi) = z} prod_t y_t(pi_t),

summed by dynamic programming (``torch.nn.functional.ctc_loss``). WER is the word-level edit
distance to the reference over the number of reference words,
``(substitutions + deletions + insertions) / N``; CER the same over characters.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmkit.data import audio
from lstmkit.data.audio_sets import (
    AudioSplit,
    first_recordings,
    input_records,
    split_utterances,
    training_rate,
)
from lstmkit.data.sampling import BucketBatches, epoch_batch, rank_slice
from lstmkit.models.speech import (
    CtcModel,
    SpeechModelConfig,
    WordClassifier,
    WordsModelConfig,
    ctc_beam_search,
    ctc_greedy,
)
from lstmkit.nn import LSTM, record_gates
from lstmkit.tasks.base import InputRecords, Task, register
from lstmkit.utils.errors import UserError
from lstmkit.utils.meta import help_meta as _help
from lstmkit.utils.metrics import error_rates
from lstmkit.viz.spectrogram_gates import mel_centers  # noqa: F401 (its home before viz/)

DECODERS = ("greedy", "beam")
_EVAL_BATCH = 64


# ---------------------------------------------------------------------------------------------
# configs


@dataclass(frozen=True)
class _SpeechConfig:
    train: str = field(
        default="",
        metadata=_help("training data: a JSONL manifest, or (spoken-words) a folder per label"),
    )
    valid: str = field(
        default="", metadata=_help("validation data; default: every 10th training utterance")
    )
    test: str = field(default="", metadata=_help("test data (reported after training)"))
    sample_rate: int = field(
        default=0,
        metadata=_help(
            "model sample rate in Hz; audio is resampled to it; 0: the training audio's own "
            "rate (the most common one, from the files' headers; saved with the model)"
        ),
    )
    n_mels: int = field(default=40, metadata=_help("log-mel filterbank bins"))
    win_ms: float = field(default=25.0, metadata=_help("analysis window in milliseconds"))
    hop_ms: float = field(default=10.0, metadata=_help("frame shift in milliseconds"))
    freq_masks: int = field(default=2, metadata=_help("SpecAugment: frequency masks per utterance"))
    freq_width: int = field(default=8, metadata=_help("SpecAugment: widest frequency mask (bins)"))
    time_masks: int = field(default=2, metadata=_help("SpecAugment: time masks per utterance"))
    time_width: int = field(
        default=10, metadata=_help("SpecAugment: longest time mask (frames, <= 1/5 of utterance)")
    )
    normalize: str = field(
        default="bins",
        metadata=_help(
            "feature normalisation: bins (each bin over the utterance), utterance (one mean and "
            "std per utterance, keeps the spectral shape) or global (each bin with the training "
            "set's mean and std, saved with the model; independent of surrounding silence)",
            choices=audio.NORMALIZATIONS,
        ),
    )
    speed_perturb: float = field(
        default=0.0,
        metadata=_help(
            "change the speed of training audio by a factor drawn from [1 - x, 1 + x]; 0: none"
        ),
    )
    noise_snr: float = field(
        default=0.0,
        metadata=_help(
            "add white noise to training audio at an SNR drawn from [this, 40] dB; 0: none"
        ),
    )

    @property
    def spec(self) -> audio.FeatureSpec:
        return audio.FeatureSpec(
            self.sample_rate, self.n_mels, self.win_ms, self.hop_ms, self.normalize
        )


@dataclass(frozen=True)
class WordsConfig(_SpeechConfig):
    pass


@dataclass(frozen=True)
class CtcConfig(_SpeechConfig):
    decoder: str = field(
        default="greedy",
        metadata=_help("decoding for evaluation and predict: greedy or beam", choices=DECODERS),
    )
    beam_size: int = field(default=8, metadata=_help("beam width of --decoder beam"))
    lowercase: bool = field(default=True, metadata=_help("lowercase the transcripts"))


# ---------------------------------------------------------------------------------------------
# data


class SpeechBatch(NamedTuple):
    feats: Tensor  # (B, T, n_mels), zero-padded
    lengths: Tensor  # (B,)
    targets: Tensor  # (B,) class indices, or (B, S) symbol indices padded with 0
    target_lengths: Tensor  # (B,)


def _collate(feats: list[np.ndarray], targets: list[list[int]]) -> SpeechBatch:
    B, T = len(feats), max(f.shape[0] for f in feats)
    x = np.zeros((B, T, feats[0].shape[1]), dtype=np.float32)
    for k, f in enumerate(feats):
        x[k, : f.shape[0]] = f
    S = max(1, max(len(t) for t in targets))
    y = np.zeros((B, S), dtype=np.int64)
    for k, t in enumerate(targets):
        y[k, : len(t)] = t
    return SpeechBatch(
        torch.from_numpy(x),
        torch.tensor([f.shape[0] for f in feats]),
        torch.from_numpy(y),
        torch.tensor([len(t) for t in targets]),
    )


def check_config(cfg: _SpeechConfig) -> None:
    """One :class:`UserError` line naming the first augmentation option out of its range."""
    for name in ("freq_masks", "freq_width", "time_masks", "time_width"):
        if getattr(cfg, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must be >= 0")
    if cfg.noise_snr < 0:
        raise UserError(f"--noise-snr must be >= 0 dB, got {cfg.noise_snr}")
    if not 0 <= cfg.speed_perturb < 1:
        raise UserError(f"--speed-perturb must be in [0, 1), got {cfg.speed_perturb}")


def check_sources(cfg: _SpeechConfig, task: str) -> None:
    """A new run's data: ``--train`` given, and every split given there."""
    if not cfg.train:
        raise UserError(f"task {task!r} needs --train (a manifest or a folder)")
    for name in ("train", "valid", "test"):
        p = getattr(cfg, name)
        if p and not Path(p).exists():
            raise UserError(f"--{name}: {p} not found")


def _augment_rng(seed: int, step: int, position: int) -> np.random.Generator:
    """The augmentation draws of example ``position`` of global batch ``step``: the same in
    every process and after a resume."""
    return np.random.default_rng([seed & 0xFFFFFFFF, step, position, 0xA0D10])


def perturbs_waves(cfg: _SpeechConfig) -> bool:
    """Whether training augments the waves (so the training split keeps them)."""
    return cfg.noise_snr > 0 or cfg.speed_perturb > 0


def perturb_wave(wave: np.ndarray, rng: np.random.Generator, cfg: _SpeechConfig) -> np.ndarray:
    """``wave`` at a speed drawn from ``--speed-perturb``, then with noise at an SNR drawn from
    ``--noise-snr`` (each only when set; the draws in that order)."""
    if cfg.speed_perturb > 0:
        factor = rng.uniform(1 - cfg.speed_perturb, 1 + cfg.speed_perturb)
        wave = audio.change_speed(wave, cfg.sample_rate, factor)
    if cfg.noise_snr > 0:
        wave = audio.add_noise(wave, rng, cfg.noise_snr)
    return wave


def mask_features(f: np.ndarray, rng: np.random.Generator, cfg: _SpeechConfig) -> np.ndarray:
    """SpecAugment's frequency and time masks, as ``cfg`` sizes them."""
    masks = ("freq_masks", "freq_width", "time_masks", "time_width")
    return audio.spec_augment(f, rng, **{name: getattr(cfg, name) for name in masks})


class SpeechTask(Task):
    """Shared machinery: data splits, features, augmentation, evaluation batches, inspect."""

    capabilities = frozenset({"predict", "evaluate", "inspect", "export", "quantize"})

    key: ClassVar[str] = "text"

    def __init__(self, cfg, model_cfg, state=None):
        super().__init__(cfg, model_cfg, state)
        self._rate_note = ""
        check_config(cfg)
        if state is None:  # a new run (a checkpoint's task has a state, and needs no data)
            check_sources(cfg, self.name)
            rate, self._rate_note = training_rate(cfg.train, self.key, cfg.sample_rate)
            cfg = self.cfg = replace(cfg, sample_rate=rate) if rate != cfg.sample_rate else cfg
        elif cfg.sample_rate == 0:
            raise UserError("checkpoint: sample_rate is 0; the run's sample rate was not saved")
        cfg.spec.check()
        self._splits: dict[str, AudioSplit] = {}
        self._buckets: dict[int, BucketBatches] = {}
        self._stats: tuple[np.ndarray, np.ndarray] | None = None
        if state and "feature_mean" in state:
            mean, std = state["feature_mean"], state["feature_std"]
            self._stats = (np.asarray(mean, np.float32), np.asarray(std, np.float32))
        elif state and cfg.normalize == "global":
            raise UserError("checkpoint: --normalize global but no feature statistics saved")

    def data_report(self) -> dict:
        return {"sample_rate": self._rate_note} if self._rate_note else {}

    # ----- data
    def split(self, name: str) -> AudioSplit:
        if name not in self._splits:
            c = self.cfg
            sources = {"train": c.train, "valid": c.valid, "test": c.test}
            self._new_split(name, split_utterances(name, sources, self.key, self.name))
        return self._splits[name]

    def _new_split(self, name: str, utterances: list[audio.Utterance]) -> None:
        keep_waves = name == "train" and perturbs_waves(self.cfg)
        utts = self.filter(utterances, name)
        self._splits[name] = AudioSplit(utts, self.cfg.spec, keep_waves, self.normalize_features)

    def filter(self, utterances: list[audio.Utterance], split: str) -> list[audio.Utterance]:
        return utterances

    def target(self, utterance: audio.Utterance) -> list[int]:
        raise NotImplementedError

    # ----- features
    def feature_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """The training set's per-bin log-mel mean and std (``--normalize global``)."""
        if self._stats is None:
            train = self.split("train")
            # while the training split loads, it hands over its log-mels; otherwise read them
            logmels = train.logmels if train.logmels is not None else train.read()[1]
            self._stats = audio.global_stats(logmels)
        return self._stats

    def normalize_features(self, logmel: np.ndarray) -> np.ndarray:
        """Normalised frames of ``(T, n_mels)`` log-mel frames, as ``--normalize`` says."""
        stats = self.feature_stats() if self.cfg.normalize == "global" else None
        return audio.normalize(logmel, self.cfg.normalize, stats)

    def features(self, wave: np.ndarray) -> np.ndarray:
        return self.normalize_features(audio.log_mel(wave, self.cfg.spec))

    def audio_features(self, path: str) -> np.ndarray:
        return self.features(audio.load_audio(path, self.cfg.sample_rate))

    def stats_state(self) -> dict:
        """The global statistics for the checkpoint (nothing for per-utterance modes)."""
        if self.cfg.normalize != "global":
            return {}
        mean, std = self.feature_stats()
        return {"feature_mean": mean.tolist(), "feature_std": std.tolist()}

    # ----- batches
    def example_features(self, step: int, seed: int, position: int, k: int) -> np.ndarray:
        """Training features of utterance ``k``, augmented with draws of (seed, step, position)."""
        train, rng = self.split("train"), _augment_rng(seed, step, position)
        if perturbs_waves(self.cfg):
            f = self.features(perturb_wave(train.wave(k), rng, self.cfg))
        else:
            f = train.feats[k]
        return mask_features(f, rng, self.cfg)

    def make_batch(self, indices, step, seed, rank, world) -> SpeechBatch:
        train = self.split("train")
        positions = rank_slice(np.arange(len(indices)), rank, world)
        feats = [self.example_features(step, seed, int(p), int(indices[p])) for p in positions]
        targets = [self.target(train.utterances[int(indices[p])]) for p in positions]
        return _collate(feats, targets)

    def eval_batches(self, split: str):
        """Batches of a split in length order (little padding), with their utterance indices."""
        s = self.split(split)
        order = np.argsort(s.lengths, kind="stable")
        for start in range(0, len(order), _EVAL_BATCH):
            idx = order[start : start + _EVAL_BATCH]
            feats = [s.feats[int(k)] for k in idx]
            yield idx, _collate(feats, [self.target(s.utterances[int(k)]) for k in idx])

    def _input_batch(self, path: str, device: torch.device, raw: list | None = None):
        """A batch of one recording; ``raw`` receives its log-mel frames before normalisation."""
        logmel = audio.log_mel(audio.load_audio(path, self.cfg.sample_rate), self.cfg.spec)
        if raw is not None:
            raw.append(logmel)
        batch = _collate([self.normalize_features(logmel)], [[]])  # no target
        return SpeechBatch(*(t.to(device) for t in batch))

    # ----- the user's own files
    def split_source(self, split: str) -> str:
        c = self.cfg
        if split == "valid":
            return f"--valid {c.valid}" if c.valid else f"every 10th utterance of --train {c.train}"
        return f"--{split} {getattr(c, split)}" if getattr(c, split, "") else ""

    def use_data(self, path, **options) -> str:
        """A manifest (or, for spoken-words, a folder per label) scored as --test is."""
        self.read_config(options)
        self._new_split("data", audio.read_dataset(path, key=self.key))
        self._data_path = str(path)
        return "data"

    def read_input_file(self, path, **options) -> InputRecords | None:
        """A JSONL manifest (its target field may be missing), a folder per label, or a folder
        of audio files; other files: one audio path per line (None)."""
        self.read_config(options)
        records = input_records(path, self.key)
        return None if records is None else InputRecords(*records)

    def examples(self) -> list[str]:
        """The first test (or validation) recordings, where the data is at hand."""
        return first_recordings((self.cfg.test, self.cfg.valid), self.key)

    # ----- inspect: spectrogram and gates
    def describe_audio(self, model, batch: SpeechBatch) -> tuple[str, list[int]]:
        """A title for the plot and the frames (after subsampling) to mark."""
        raise NotImplementedError

    def inspect(self, model, inputs, out, device):
        """Per recording, its spectrogram over the first layer's gates
        (:func:`lstmkit.viz.spectrogram_gates.plot_spectrogram_gates`)."""
        from lstmkit.viz.spectrogram_gates import plot_spectrogram_gates

        if not any(isinstance(m, LSTM) for m in model.modules()):
            raise UserError(
                f"inspect needs an LSTM model (this one was trained with --cell "
                f"{self.model_cfg.encoder.cell})"
            )
        inputs = inputs or self.examples()[:1]
        if not inputs:
            raise UserError("inspect: give audio files to plot")
        paths, kw = [], dict(spec=self.cfg.spec, subsample=self.model_cfg.subsample)
        for n, path in enumerate(inputs, 1):
            raw: list[np.ndarray] = []
            batch = self._input_batch(path, device, raw)
            with torch.no_grad(), record_gates(model) as rec:
                what, kw["marks"] = self.describe_audio(model, batch)
            trace = rec[0, 0]  # first layer, forward direction: the closest to the spectrogram
            paths.append(plot_spectrogram_gates(trace, raw[0], out, n, path, what=what, **kw))
        return paths


# ---------------------------------------------------------------------------------------------
# spoken-word classification


@register
class SpokenWordsTask(SpeechTask):
    """Spoken-word classification (keyword spotting): one label per recording, from a folder
    per label (``root/LABEL/*.wav``) or a JSONL manifest with ``audio_filepath`` and ``label``.
    A (bi)LSTM over log-mel frames, pooled over time. Metric: accuracy. ``lstmkit predict RUN
    a.wav`` labels recordings; ``lstmkit inspect RUN a.wav`` plots spectrogram and gates."""

    name = "spoken-words"
    checkpoint_state = ("labels",)
    summary = "spoken-word classification: a (bi)LSTM over log-mel frames, pooled over time"
    Config = WordsConfig
    ModelConfig = WordsModelConfig
    metric = "accuracy"
    mode = "max"
    key = "label"
    train_defaults = {"lr": 2e-3, "batch_size": 32, "steps": 3000, "eval_every": 200}

    def __init__(self, cfg, model_cfg, state=None):
        super().__init__(cfg, model_cfg, state)
        self._labels: list[str] | None = list(state["labels"]) if state else None

    @property
    def labels(self) -> list[str]:
        if self._labels is None:
            self._labels = sorted({u.text for u in self.split("train").utterances})
        return self._labels

    def state(self) -> dict:
        return {"labels": self.labels, **self.stats_state()}

    def filter(self, utterances, split):
        if split != "train":
            unknown = sorted({u.text for u in utterances} - set(self.labels))
            if unknown:
                raise UserError(
                    f"--{split}: labels not in the training data: {', '.join(unknown[:5])}"
                )
        return utterances

    def target(self, utterance):
        return [self.labels.index(utterance.text)]

    def build_model(self) -> nn.Module:
        return WordClassifier(self.model_cfg, self.cfg.n_mels, len(self.labels))

    def train_batch(self, step, seed, batch_size, rank, world):
        idx = epoch_batch(len(self.split("train")), step, batch_size, seed)
        return self.make_batch(idx, step, seed, rank, world)

    def loss(self, model, batch):
        return F.cross_entropy(model(batch.feats, batch.lengths), batch.targets[:, 0])

    def evaluate(self, model, split, device):
        if split == "test" and not self.cfg.test:
            return {}
        loss = correct = n = 0.0
        for _, b in self.eval_batches(split):
            logits = model(b.feats.to(device), b.lengths.to(device)).float()
            y = b.targets[:, 0].to(device)
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(-1) == y).sum().item()
            n += len(y)
        return {"loss": loss / n, "accuracy": correct / n}

    def classify(self, model, path: str, device) -> dict:
        batch = self._input_batch(path, device)
        p = model(batch.feats, batch.lengths)[0].float().softmax(-1).cpu()
        top = p.argsort(descending=True)[:5]
        return {
            "input": path,
            "label": self.labels[int(top[0])],
            "probabilities": {self.labels[int(j)]: round(float(p[j]), 4) for j in top},
        }

    def predict(self, model, inputs, device):
        return [self.classify(model, path, device) for path in inputs]

    def confusion(self, model, split: str, device) -> np.ndarray:
        """Counts of (true, predicted) label pairs on ``split``: rows true, columns predicted."""
        k = len(self.labels)
        conf = np.zeros((k, k), dtype=np.int64)
        for _, b in self.eval_batches(split):
            pred = model(b.feats.to(device), b.lengths.to(device)).argmax(-1).cpu().numpy()
            np.add.at(conf, (b.targets[:, 0].numpy(), pred), 1)
        return conf

    def evaluation_plots(self, model, split, out, device) -> list[Path]:
        """The confusion matrix of ``split`` (``confusion-SPLIT.png``), as sentiment draws it."""
        from lstmkit.viz import plot_heatmap

        conf = self.confusion(model, split, device)
        acc = np.trace(conf) / max(1, conf.sum())
        name = Path(getattr(self, "_data_path", "")).name if split == "data" else split
        return [
            plot_heatmap(
                conf,
                Path(out) / f"confusion-{split}.png",
                row_labels=self.labels,
                col_labels=self.labels,
                title=f"{name}: accuracy {100 * acc:.1f}% on {int(conf.sum())} recordings",
                xlabel="predicted",
                ylabel="true",
                cmap="Blues",
                fmt="d",
            )
        ]

    def describe_audio(self, model, batch):
        p = model(batch.feats, batch.lengths)[0].float().softmax(-1)
        j = int(p.argmax())
        return f"{self.labels[j]!r} (p = {float(p[j]):.3f})", []


# ---------------------------------------------------------------------------------------------
# CTC transcription


def normalize_text(text: str, lowercase: bool) -> str:
    text = " ".join(text.split())
    return text.lower() if lowercase else text


@register
class AsrCtcTask(SpeechTask):
    """Speech transcription with CTC over characters: a JSONL manifest per split
    (``audio_filepath``, ``text``, ``duration``). A (bi)directional multi-layer lstmkit.LSTM
    encoder (``--proj-size`` gives projection LSTMs) over stacked log-mel frames, a blank plus
    the training transcripts' characters as outputs. Metrics: WER and CER (jiwer), and the
    loss: CTC's negative log-likelihood per target character, averaged over utterances (torch's
    ``ctc_loss`` mean), on the progress bar and in validation alike.
    ``lstmkit transcribe RUN a.wav`` writes transcripts."""

    name = "asr-ctc"
    capabilities = SpeechTask.capabilities | {"transcribe"}
    checkpoint_state = ("chars",)
    summary = "speech transcription: (bi)LSTM encoder over log-mel frames, CTC over characters"
    Config = CtcConfig
    ModelConfig = SpeechModelConfig
    metric = "wer"
    mode = "min"
    train_defaults = {"lr": 2e-3, "batch_size": 32, "steps": 4000, "eval_every": 250}

    def __init__(self, cfg, model_cfg, state=None):
        super().__init__(cfg, model_cfg, state)
        if cfg.beam_size < 1:
            raise UserError(f"--beam-size must be >= 1, got {cfg.beam_size}")
        self._chars: str | None = state["chars"] if state else None

    @property
    def chars(self) -> str:
        """The output symbols after the blank (index 0): the training transcripts' characters."""
        if self._chars is None:
            seen = {c for u in self.split("train").utterances for c in u.text}
            self._chars = "".join(sorted(seen))
        return self._chars

    def state(self) -> dict:
        return {"chars": self.chars, **self.stats_state()}

    def filter(self, utterances, split):
        out = []
        for u in utterances:
            text = normalize_text(u.text, self.cfg.lowercase)
            if not text:
                raise UserError(f"--{split}: {u.path} has an empty transcript")
            out.append(audio.Utterance(u.path, text, u.duration))
        return out

    def target(self, utterance):
        # characters unseen in training cannot be emitted; they still count in WER and CER
        index = {c: k + 1 for k, c in enumerate(self.chars)}
        return [index[c] for c in utterance.text if c in index]

    def build_model(self) -> nn.Module:
        return CtcModel(self.model_cfg, self.cfg.n_mels, len(self.chars) + 1)

    def train_batch(self, step, seed, batch_size, rank, world):
        if seed not in self._buckets:
            lengths = self.split("train").lengths
            budget = batch_size * int(np.mean(lengths))
            self._buckets[seed] = BucketBatches(lengths, max_tokens=budget, seed=seed)
        idx = self._buckets[seed].batch(step)
        return self.make_batch(idx, step, seed, rank, world)

    def ctc_loss(self, log_probs, out_lengths, batch, reduction="mean") -> Tensor:
        return F.ctc_loss(
            log_probs.float().transpose(0, 1),
            batch.targets,
            out_lengths,
            batch.target_lengths,
            blank=0,
            reduction=reduction,
            zero_infinity=True,
        )

    def loss(self, model, batch):
        log_probs, lengths = model(batch.feats, batch.lengths)
        return self.ctc_loss(log_probs, lengths, batch)

    def decode(self, log_probs: Tensor, length: int, decoder: str, beam_size: int) -> str:
        lp = log_probs[:length].float().cpu()
        ids = ctc_beam_search(lp, beam_size) if decoder == "beam" else ctc_greedy(lp)
        return "".join(self.chars[i - 1] for i in ids)

    def evaluate(self, model, split, device):
        if split == "test" and not self.cfg.test:
            return {}
        s = self.split(split)
        hyps: list[str] = [""] * len(s)
        loss = 0.0
        for idx, b in self.eval_batches(split):
            b = SpeechBatch(*(t.to(device) for t in b))
            log_probs, lengths = model(b.feats, b.lengths)
            # per target character, then the mean over utterances: the training loss's scale
            # (ctc_loss's "mean"); it was the sum per input frame, 0.48 against the bar's 12.6
            # for one untrained model (tests/tasks/test_speech_units.py)
            per_char = self.ctc_loss(log_probs, lengths, b, reduction="none")
            loss += (per_char / b.target_lengths.clamp(min=1)).sum().item()
            for j, k in enumerate(idx):
                hyps[int(k)] = self.decode(
                    log_probs[j], int(lengths[j]), self.cfg.decoder, self.cfg.beam_size
                )
        refs = [u.text for u in s.utterances]
        return {"loss": loss / max(len(s), 1), **error_rates(refs, hyps)}

    def transcribe(
        self, model, paths: Sequence[str], device, decoder: str = "", beam_size: int = 0
    ) -> list[dict]:
        """One ``{"input", "text", "seconds", "compute_s"}`` per audio file."""
        decoder = decoder or self.cfg.decoder
        beam_size = beam_size or self.cfg.beam_size
        if decoder not in DECODERS:
            raise UserError(f"--decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        out = []
        for path in paths:
            t0 = time.perf_counter()
            wave = audio.load_audio(path, self.cfg.sample_rate)
            f = torch.from_numpy(self.features(wave))[None].to(device)
            log_probs, lengths = model(f, torch.tensor([f.shape[1]], device=device))
            text = self.decode(log_probs[0], int(lengths[0]), decoder, beam_size)
            out.append(
                {
                    "input": str(path),
                    "text": text,
                    "seconds": round(len(wave) / self.cfg.sample_rate, 4),
                    "compute_s": round(time.perf_counter() - t0, 4),
                }
            )
        return out

    def predict(self, model, inputs, device):
        return [
            {"input": r["input"], "text": r["text"]} for r in self.transcribe(model, inputs, device)
        ]

    def describe_audio(self, model, batch):
        log_probs, lengths = model(batch.feats, batch.lengths)
        best = log_probs[0].argmax(-1).tolist()
        emitted = [t for t, s in enumerate(best) if s != 0 and (t == 0 or best[t - 1] != s)]
        text = self.decode(log_probs[0], int(lengths[0]), "greedy", 1)
        return f"{text!r} (marks: frames where a character is emitted)", emitted
