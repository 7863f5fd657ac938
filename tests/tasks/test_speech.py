"""Speech tasks: CTC decoding on hand-built examples and against brute force, WER/CER by hand,
frame stacking, batches as a function of (seed, step), real learning on synthetic tones, and
a tiny train / predict / transcribe / inspect run on a slice of FSDD through the CLI."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lstmkit.cli.main import cli_main
from lstmkit.data import audio
from lstmkit.models import speech
from lstmkit.models.speech import (
    SPEECH_ENCODER,
    SpeechModelConfig,
    WordsModelConfig,
    ctc_beam_search,
    ctc_greedy,
    stack_frames,
)
from lstmkit.tasks.speech import AsrCtcTask, CtcConfig, SpokenWordsTask, WordsConfig
from lstmkit.train.config import TrainConfig
from lstmkit.train.trainer import train
from lstmkit.utils.errors import UserError
from lstmkit.utils.metrics import error_rates

FSDD = Path(__file__).resolve().parents[3] / "shared" / "data" / "fsdd"
PNG = b"\x89PNG\r\n\x1a\n"
TINY_WORDS = WordsModelConfig(
    encoder=replace(SPEECH_ENCODER, hidden_size=16, num_layers=1), subsample=2
)
TINY_CTC = SpeechModelConfig(
    encoder=replace(SPEECH_ENCODER, hidden_size=16, num_layers=1), subsample=2
)


def _log(probs) -> torch.Tensor:
    return torch.tensor(probs, dtype=torch.float64).log()


# ---------------------------------------------------------------------------------------------
# decoding and metrics


def test_ctc_greedy_on_a_hand_built_example():
    # frame argmaxes: a a - b b - b c c  (0 = blank, a=1, b=2, c=3)
    best = [1, 1, 0, 2, 2, 0, 2, 3, 3]
    lp = torch.full((len(best), 4), -5.0)
    lp[torch.arange(len(best)), torch.tensor(best)] = -0.1
    assert ctc_greedy(lp) == [1, 2, 2, 3]  # repeats merge, a blank separates the two b
    assert ctc_greedy(lp, length=4) == [1, 2]
    assert ctc_greedy(torch.zeros(0, 4)) == []


def test_beam_search_finds_what_greedy_misses():
    # two frames, P(blank) = 0.6, P(a) = 0.4 each: the best path is "--" (0.36), but the
    # labelling "a" has paths a-, -a, aa: 0.24 + 0.24 + 0.16 = 0.64
    lp = _log([[0.6, 0.4], [0.6, 0.4]])
    assert ctc_greedy(lp) == []
    assert ctc_beam_search(lp, beam_size=4) == [1]


def _collapse(path) -> tuple[int, ...]:
    return tuple(s for j, s in enumerate(path) if s != 0 and (j == 0 or path[j - 1] != s))


@pytest.mark.parametrize("seed", range(4))
def test_beam_search_matches_brute_force(seed):
    """With a wide beam, prefix beam search returns the labelling of highest total probability,
    computed here by summing over every frame path."""
    g = torch.Generator().manual_seed(seed)
    T, V = 5, 3
    lp = torch.randn(T, V, generator=g, dtype=torch.float64).mul(1.5).log_softmax(-1)
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(V), repeat=T):
        p = math.exp(sum(lp[t, s].item() for t, s in enumerate(path)))
        key = _collapse(path)
        totals[key] = totals.get(key, 0.0) + p
    best = max(totals, key=totals.get)
    assert tuple(ctc_beam_search(lp, beam_size=50)) == best


def test_error_rates_by_hand():
    refs = ["one two three", "four five"]
    hyps = ["one too three", "four five six"]
    # words: 1 substitution + 1 insertion over 5 reference words
    r = error_rates(refs, hyps)
    assert r["wer"] == pytest.approx(2 / 5)
    # characters: "two"->"too" is 1 substitution; " six" is 4 insertions; 13 + 9 characters
    assert r["cer"] == pytest.approx(5 / 22)


def test_stack_frames():
    x = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)
    y, lengths = stack_frames(x, torch.tensor([5, 3]), 2)
    assert y.shape == (2, 3, 6) and lengths.tolist() == [3, 2]
    assert torch.equal(y[0, 0], torch.cat([x[0, 0], x[0, 1]]))
    assert torch.equal(y[0, 2], torch.cat([x[0, 4], torch.zeros(3)]))  # zero-padded at the end


def test_pooling_ignores_padding():
    torch.manual_seed(0)
    for pooling in speech.POOLINGS:
        cfg = WordsModelConfig(
            encoder=replace(SPEECH_ENCODER, hidden_size=8, num_layers=1),
            subsample=2,
            pooling=pooling,
        )
        model = speech.WordClassifier(cfg, 4, 3).eval()
        x = torch.randn(1, 7, 4)
        padded = torch.cat([x, torch.randn(1, 5, 4) * 9], 1)
        a = model(x, torch.tensor([7]))
        b = model(torch.cat([padded, padded]), torch.tensor([7, 12]))
        torch.testing.assert_close(b[0], a[0], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# synthetic data: tones (no data set needed)


def _tone_folder(root: Path, n: int = 15) -> Path:
    """A folder per label: 'low' is a 300 Hz tone, 'high' one at 1800 Hz (varying length,
    level, noise and rate: 8, 16 and 22.05 kHz files all resampled to 8 kHz)."""
    rng = np.random.default_rng(0)
    rates = (8000, 16000, 22050)
    for label, hz in (("low", 300), ("high", 1800)):
        (root / label).mkdir(parents=True)
        for k in range(n):
            rate = rates[k % 3]
            # silence, tone, silence: per-utterance normalisation flattens a stationary tone
            t = np.arange(int(rate * rng.uniform(0.2, 0.4))) / rate
            gap = np.zeros(int(rate * rng.uniform(0.05, 0.15)))
            x = np.concatenate([gap, rng.uniform(0.1, 0.5) * np.sin(2 * np.pi * hz * t), gap])
            x = x + 0.01 * rng.normal(size=len(x))
            sf.write(root / label / f"{k}.wav", x.astype(np.float32), rate)
    return root


def _tone_sequences(root: Path, n: int) -> Path:
    """A transcription manifest: sequences of 'a' (400 Hz) and 'b' (1600 Hz) tones."""
    rng = np.random.default_rng(1)
    rate = 8000
    lines = []
    root.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        symbols = rng.choice(["a", "b"], size=int(rng.integers(1, 4)))
        parts = [np.zeros(400)]
        for s in symbols:
            t = np.arange(1600) / rate
            parts += [0.3 * np.sin(2 * np.pi * (400 if s == "a" else 1600) * t), np.zeros(400)]
        wave = np.concatenate(parts) + 0.003 * rng.normal(size=sum(map(len, parts)))
        sf.write(root / f"{k}.flac", wave.astype(np.float32), rate)
        text = " ".join(symbols)
        lines.append(json.dumps({"audio_filepath": f"{k}.flac", "text": text, "duration": 1.0}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root / "manifest.jsonl"


FAST = {"freq_masks": 0, "time_masks": 0, "sample_rate": 8000}


def test_spoken_words_learns_tones(tmp_path):
    folder = _tone_folder(tmp_path / "tones")
    task = SpokenWordsTask(WordsConfig(train=str(folder), **FAST), TINY_WORDS)
    assert task.labels == ["high", "low"]
    cfg = TrainConfig(
        steps=30, batch_size=8, lr=1e-2, eval_every=30, progress=False, out=str(tmp_path / "run")
    )
    result = train(task, cfg)
    # validation: every 10th file, held out from training
    assert len(task.split("valid")) == 3 and len(task.split("train")) == 27
    assert result.valid["accuracy"] == 1.0
    assert result.test == {}


def test_training_batches_are_a_function_of_seed_and_step(tmp_path):
    folder = _tone_folder(tmp_path / "tones", n=6)
    make = lambda: SpokenWordsTask(WordsConfig(train=str(folder), sample_rate=8000), TINY_WORDS)  # noqa: E731
    a, b = make(), make()
    x = a.train_batch(3, 7, 4, 0, 1)
    b.train_batch(0, 7, 4, 0, 1)  # another batch first: no effect
    y = b.train_batch(3, 7, 4, 0, 1)
    for u, v in zip(x, y, strict=True):
        assert torch.equal(u, v)
    # two processes' slices make up the single-process batch (augmentation included)
    halves = [a.train_batch(3, 7, 4, r, 2) for r in range(2)]
    assert torch.equal(torch.cat([h.targets for h in halves]), x.targets)
    first = halves[0]
    assert torch.equal(first.feats[0, : first.lengths[0]], x.feats[0, : x.lengths[0]])


def test_ctc_task_trains_and_transcribes(tmp_path):
    manifest = _tone_sequences(tmp_path / "seq", 24)
    cfg = CtcConfig(train=str(manifest), noise_snr=20, speed_perturb=0.1, **FAST)
    task = AsrCtcTask(cfg, TINY_CTC)
    assert task.chars == " ab"
    cfg = TrainConfig(steps=6, batch_size=8, eval_every=6, progress=False, out=str(tmp_path / "r"))
    result = train(task, cfg)
    assert set(result.valid) == {"loss", "wer", "cer"} and math.isfinite(result.valid["loss"])
    files = [str(tmp_path / "seq" / "0.flac"), str(tmp_path / "seq" / "1.flac")]
    model = task.build_model().eval()
    with torch.no_grad():
        rows = task.transcribe(model, files, torch.device("cpu"), "beam", 4)
    assert [r["input"] for r in rows] == files
    for r in rows:
        assert set(r["text"]) <= set(" ab")
        assert r["seconds"] == pytest.approx(sf.info(r["input"]).duration, abs=1e-3)


def test_global_normalisation_is_saved_and_does_not_depend_on_silence(tmp_path):
    manifest = _tone_sequences(tmp_path / "seq", 12)
    cfg = CtcConfig(train=str(manifest), normalize="global", **FAST)
    task = AsrCtcTask(cfg, TINY_CTC)
    train_files = [u.path for u in task.split("train").utterances]
    logmels = [audio.log_mel(audio.load_audio(p, 8000), cfg.spec) for p in train_files]
    mean, std = audio.global_stats(logmels)  # the statistics of the training split only
    np.testing.assert_allclose(task.feature_stats()[0], mean, rtol=1e-6)
    np.testing.assert_allclose(
        task.split("train").feats[0], (logmels[0] - mean) / (std + 1e-5), atol=1e-5
    )
    # rebuilt from the checkpoint state: same features without reading the training data
    state = json.loads(json.dumps(task.state()))
    again = AsrCtcTask(CtcConfig(normalize="global", **FAST), TINY_CTC, state)
    wave = audio.load_audio(train_files[0], 8000)
    np.testing.assert_allclose(again.features(wave), task.features(wave), atol=1e-6)
    # padding with silence leaves the speech frames as they were (per-bin mode changes them)
    hop = cfg.spec.hop
    padded = np.concatenate([np.zeros(hop * 20, np.float32), wave])
    np.testing.assert_allclose(again.features(padded)[20:25], again.features(wave)[:5], atol=1e-4)
    bins = AsrCtcTask(CtcConfig(train=str(manifest), **FAST), TINY_CTC)
    assert not np.allclose(bins.features(padded)[20:25], bins.features(wave)[:5], atol=1e-2)
    del state["feature_mean"]
    with pytest.raises(UserError, match="no feature statistics"):
        AsrCtcTask(CtcConfig(normalize="global", **FAST), TINY_CTC, state)


def test_task_errors(tmp_path):
    with pytest.raises(UserError, match="needs --train"):
        SpokenWordsTask(WordsConfig(), TINY_WORDS)
    with pytest.raises(UserError, match="--train: .*nope not found"):
        AsrCtcTask(CtcConfig(train=str(tmp_path / "nope")), TINY_CTC)
    folder = _tone_folder(tmp_path / "tones", n=3)
    with pytest.raises(UserError, match=r"--speed-perturb must be in \[0, 1\), got 1.5"):
        SpokenWordsTask(WordsConfig(train=str(folder), speed_perturb=1.5), TINY_WORDS)
    with pytest.raises(UserError, match="--n-mels must be between"):
        SpokenWordsTask(WordsConfig(train=str(folder), sample_rate=8000, n_mels=500), TINY_WORDS)
    other = tmp_path / "other"
    (other / "mid").mkdir(parents=True)
    sf.write(other / "mid" / "x.wav", np.zeros(800, np.float32) + 0.1, 8000)
    task = SpokenWordsTask(WordsConfig(train=str(folder), valid=str(other), **FAST), TINY_WORDS)
    with pytest.raises(UserError, match="--valid: labels not in the training data: mid"):
        task.split("valid")
    # a task rebuilt from a checkpoint needs no data
    meta = task.describe()
    rebuilt = SpokenWordsTask.from_checkpoint_meta(
        {**meta, "task_config": {**meta["task_config"], "train": "/gone"}}
    )
    assert rebuilt.labels == ["high", "low"]


# ---------------------------------------------------------------------------------------------
# FSDD slice through the command line

needs_fsdd = pytest.mark.skipif(
    not (FSDD / "MANIFEST.tsv").exists(),
    reason=f"FSDD not found at {FSDD} (the shared data folder is absent)",
)


@pytest.fixture(scope="module")
def fsdd_slice(tmp_path_factory):
    """Manifests over 4 digits x 6 speakers x 3 recordings (train) and 1 recording (test)."""
    from lstmkit.experiments.speech_results import DIGIT_WORDS, read_fsdd

    root = tmp_path_factory.mktemp("fsdd")
    rows = [r for r in read_fsdd(FSDD) if int(r["digit"]) < 4]
    train_rows = [r for r in rows if 10 <= r["index"] < 13]
    test_rows = [r for r in rows if r["index"] == 0]
    for name, part in (("train", train_rows), ("test", test_rows)):
        with open(root / f"{name}.jsonl", "w") as f:
            for r in part:
                entry = {"audio_filepath": r["path"], "label": r["digit"], "duration": 0.5}
                entry["text"] = DIGIT_WORDS[int(r["digit"])]
                f.write(json.dumps(entry) + "\n")
    return root


@needs_fsdd
def test_fsdd_words_train_predict_inspect(fsdd_slice, tmp_path, capsys):
    out = tmp_path / "words"
    common = ["--sample-rate", "8000", "--hidden-size", "16", "--num-layers", "1"]
    args = ["train", "spoken-words", "--train", str(fsdd_slice / "train.jsonl"),
            "--test", str(fsdd_slice / "test.jsonl"), *common, "--steps", "10",
            "--batch-size", "8", "--eval-every", "10", "--no-progress", "--device", "cpu",
            "--out", str(out)]  # fmt: skip
    assert cli_main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["test"]) == {"loss", "accuracy"}
    wav = json.loads((fsdd_slice / "test.jsonl").read_text().splitlines()[0])["audio_filepath"]
    capsys.readouterr()
    assert cli_main(["predict", str(out), wav]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["input"] == wav and row["label"] in {"0", "1", "2", "3"}
    assert sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert cli_main(["inspect", str(out), wav, "--out", str(tmp_path / "png")]) == 0
    png = Path(capsys.readouterr().out.split()[0])
    assert png.read_bytes()[:8] == PNG
    # transcribe refuses a classifier
    assert cli_main(["transcribe", str(out), wav]) == 2
    assert "transcribe needs an asr-ctc model" in capsys.readouterr().err


@needs_fsdd
def test_fsdd_ctc_train_transcribe_inspect(fsdd_slice, tmp_path, capsys):
    out = tmp_path / "ctc"
    args = ["train", "asr-ctc", "--train", str(fsdd_slice / "train.jsonl"),
            "--valid", str(fsdd_slice / "test.jsonl"), "--sample-rate", "8000",
            "--hidden-size", "16", "--num-layers", "2", "--proj-size", "8", "--steps", "4",
            "--batch-size", "8", "--eval-every", "4", "--no-progress", "--device", "cpu",
            "--out", str(out)]  # fmt: skip
    assert cli_main(args) == 0
    # the characters of "zero", "one", "two" and "three", after the blank
    assert json.loads((out / "best" / "model.json").read_text())["task_state"] == {
        "chars": "ehnortwz"
    }
    wavs = [json.loads(line)["audio_filepath"] for line in
            (fsdd_slice / "test.jsonl").read_text().splitlines()[:2]]  # fmt: skip
    capsys.readouterr()
    assert cli_main(["transcribe", str(out), *wavs]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == wavs
    target = tmp_path / "t.jsonl"
    assert cli_main(["transcribe", str(out), *wavs, "--json", "--decoder", "beam",
                     "--output", str(target)]) == 0  # fmt: skip
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["input"] for r in rows] == wavs and all(r["seconds"] > 0.1 for r in rows)
    assert cli_main(["inspect", str(out), wavs[0], "--out", str(tmp_path / "png")]) == 0
    assert Path(capsys.readouterr().out.split()[0]).read_bytes()[:8] == PNG


@needs_fsdd
def test_bad_audio_through_the_cli_is_one_line(fsdd_slice, tmp_path, capsys):
    out = tmp_path / "w"
    args = ["train", "spoken-words", "--train", str(fsdd_slice / "train.jsonl"),
            "--sample-rate", "8000", "--hidden-size", "8", "--num-layers", "1", "--steps", "1",
            "--batch-size", "4", "--no-progress", "--device", "cpu", "--out", str(out)]  # fmt: skip
    assert cli_main(args) == 0
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 8000)
    capsys.readouterr()
    for path, message in ((bad, "cannot read audio"), (empty, "the audio is empty")):
        target = tmp_path / "pred.jsonl"
        assert cli_main(["predict", str(out), str(path), "--output", str(target)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{path}: {message}" in err
        assert not target.exists()  # nothing half-written


def test_features_of_an_fsdd_like_wave_are_normalised():
    wave = np.random.default_rng(0).normal(0, 0.1, 4000).astype(np.float32)
    f = audio.features(wave, audio.FeatureSpec(8000, 40))
    assert f.shape == (1 + (4000 - 200) // 80, 40)
    np.testing.assert_allclose(f.mean(0), 0, atol=1e-4)
