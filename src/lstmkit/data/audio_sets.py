"""The audio data sets of a speech run: the sample rate the training audio sets, the
utterances of each split (every 10th training utterance held out when no validation set is
given), a split's features read once, and the recordings given to the use verbs (a manifest, a
folder per label, or a folder of audio files).

The files' formats and the features themselves are :mod:`lstmkit.data.audio`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from lstmkit.data import audio
from lstmkit.utils.errors import UserError

HELD_OUT_EVERY = 10  # without --valid, utterance 9, 19, 29, ... of --train validates


def training_rate(train: str, key: str, requested: int) -> tuple[int, str]:
    """The run's sample rate and a note for the data report: ``requested``, or with 0 the
    training audio's (the most common rate in the files' headers; the note says so). A
    requested rate above the data's is a warning, since upsampling leaves the mel bins above
    the data's band empty."""
    rate, counts = audio.data_rate([u.path for u in audio.read_dataset(train, key=key)])
    read = sum(counts.values())
    if len(counts) == 1:
        seen = f"{read} file headers read, all {rate} Hz"
    else:
        rates = ", ".join(f"{n} at {r} Hz" for r, n in counts.items())
        seen = f"{read} file headers read: {rates}; the most common"
    if requested == 0:
        return rate, f"{rate} Hz, the training audio's ({seen})"
    if requested > rate:
        warnings.warn(
            f"lstmkit: --sample-rate {requested} is above the training audio's "
            f"{rate} Hz ({seen}): upsampled audio leaves the mel bins above {rate // 2} Hz "
            f"empty; --sample-rate 0 (the default) uses the data's rate",
            stacklevel=2,  # the task that reads the data
        )
    return requested, ""


def split_utterances(
    name: str, sources: Mapping[str, str], key: str, task: str
) -> list[audio.Utterance]:
    """The utterances of split ``name`` from ``sources`` (``--train``, ``--valid``, ``--test``
    by split name); with no ``valid`` source, train and valid share the training data, every
    :data:`HELD_OUT_EVERY`-th utterance validating. ``task`` names the task in errors."""
    train = sources["train"]
    if name in ("train", "valid") and not sources["valid"]:
        if not train:
            raise UserError(f"task {task!r}: no --train data to read")
        every = audio.read_dataset(train, key=key)
        last = HELD_OUT_EVERY - 1
        held = [u for k, u in enumerate(every) if k % HELD_OUT_EVERY == last]
        if not held:
            raise UserError(f"--train {train}: too few utterances to hold out")
        return (
            [u for k, u in enumerate(every) if k % HELD_OUT_EVERY != last]
            if name == "train"
            else held
        )
    if not sources[name]:
        raise UserError(f"task {task!r}: no --{name} data given")
    return audio.read_dataset(sources[name], key=key)


class AudioSplit:
    """The utterances of one split and, once asked for, their features (or waves).

    ``normalize`` turns a recording's log-mel frames into the model's features; it may read
    :attr:`logmels`, the split's un-normalised frames while they load (so that the training
    split hands its frames to the global statistics instead of reading them twice)."""

    def __init__(
        self,
        utterances: list[audio.Utterance],
        spec: audio.FeatureSpec,
        keep_waves: bool,
        normalize: Callable[[np.ndarray], np.ndarray],
    ):
        self.utterances, self.spec, self.keep_waves = utterances, spec, keep_waves
        self._normalize = normalize
        self._feats: list[np.ndarray] | None = None
        self._waves: list[np.ndarray] | None = None
        self.logmels: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.utterances)

    def _load(self) -> None:
        if self._feats is not None:
            return
        waves, self.logmels = self.read()
        self._feats = [self._normalize(f) for f in self.logmels]
        self.logmels = None
        if self.keep_waves:
            self._waves = waves

    def read(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The waves and their un-normalised log-mel frames, read from the files."""
        waves = [audio.load_audio(u.path, self.spec.sample_rate) for u in self.utterances]
        return waves, [audio.log_mel(w, self.spec) for w in waves]

    @property
    def feats(self) -> list[np.ndarray]:
        self._load()
        assert self._feats is not None
        return self._feats

    def wave(self, k: int) -> np.ndarray:
        self._load()
        assert self._waves is not None
        return self._waves[k]

    @property
    def lengths(self) -> list[int]:
        return [f.shape[0] for f in self.feats]


def input_records(path: str, key: str) -> tuple[list[str], list[dict], str] | None:
    """The recordings of an ``--input`` file or folder, their columns for the output and a
    note: a JSONL manifest (its ``key`` field may be missing), a folder per label, or a folder
    of audio files; None for any other file (one audio path per line)."""
    p = Path(path)
    if p.is_dir():
        if any(x.is_dir() for x in p.iterdir()):
            utts = audio.scan_label_folders(p)
            cols = [{"audio_filepath": u.path, "label": u.text} for u in utts]
        else:
            suffixes = audio.AUDIO_SUFFIXES
            files = sorted(x for x in p.iterdir() if x.is_file() and x.suffix.lower() in suffixes)
            if not files:
                raise UserError(f"--input: {p}: no audio files ({', '.join(suffixes)})")
            cols = [{"audio_filepath": str(x)} for x in files]
        return [c["audio_filepath"] for c in cols], cols, f"{p}: {len(cols)} files"
    if not p.name.lower().endswith((".jsonl", ".json")):
        return None
    utts = audio.read_manifest(p, key=key, required=False)
    cols = [
        {"audio_filepath": u.path, **({key: u.text} if u.text else {})}
        | ({"duration": u.duration} if u.duration else {})
        for u in utts
    ]
    return [u.path for u in utts], cols, f"{p}: {len(utts)} entries"


def first_recordings(sources: Sequence[str], key: str, n: int = 3) -> list[str]:
    """The first ``n`` recordings of the first of ``sources`` that exists (none when it does
    not read)."""
    for p in sources:
        if p and Path(p).exists():
            try:
                return [u.path for u in audio.read_dataset(p, key=key)[:n]]
            except UserError:
                return []
    return []
