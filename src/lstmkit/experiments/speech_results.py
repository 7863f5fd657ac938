"""Data and measurements of the speech results in docs/RESULTS.md (Free Spoken Digit Dataset).

``python -m lstmkit.experiments.speech_results prepare --fsdd ../shared/data/fsdd`` writes,
under ``--out`` (default ``runs/speech-data``, outside the repository's tracked files):

- ``fsdd/{train,valid,test}.jsonl``: the official split (recordings 0-4 of each speaker and
  digit are test); FSDD has no validation split, so recordings 5-9 validate and 10-49 train.
- ``loso-SPEAKER/{train,valid,test}.jsonl``: leave one speaker out (not an official split):
  all 500 recordings of SPEAKER are test; of the other five, recordings 0-4 validate and
  5-49 train.
- ``digits/{train,valid,test}.jsonl`` and ``digits/audio/*.flac``: connected digits, sequences
  of 2-7 recordings of one speaker joined with random silences (0.1-0.5 s between digits,
  0.05-0.3 s at the ends), transcripts such as ``"seven two four"``. Training sequences use
  training recordings (10-49) only, validation 5-9, test 0-4 (the official test recordings).
  ``--train-min-digits 1`` and ``--edge-silence`` change the training sequences only.
  ``digits/isolated-test.jsonl``: the 300 official test recordings alone, transcribed as words;
  ``digits/padded-isolated-test.jsonl``: the same with 0.2 s of silence on each side.

The manifests point at the recordings in place: no data is copied.

``python -m lstmkit.experiments.speech_results rtf RUN MANIFEST`` measures the real-time factor
of transcription (audio seconds per second of compute, features and decoding included), and
``ensemble MANIFEST RUN...`` the accuracy of spoken-words runs and of their mean probabilities.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from lstmkit.data.audio import Utterance, load_audio, write_manifest
from lstmkit.utils.errors import UserError

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FSDD_RATE = 8000


def read_fsdd(root: Path) -> list[dict]:
    """The rows of FSDD's MANIFEST.tsv, with absolute paths and integer index."""
    manifest = root / "MANIFEST.tsv"
    if not manifest.is_file():
        raise UserError(f"{manifest} not found (give --fsdd, the folder with MANIFEST.tsv)")
    with open(manifest, encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for r in rows:
        r["path"] = str((root / r["path"]).resolve())
        r["index"] = int(r["index"])
        r["duration"] = (int(r["bytes"]) - 44) / 2 / FSDD_RATE  # 16-bit mono PCM WAV
    return rows


def _labelled(rows: list[dict]) -> list[Utterance]:
    return [Utterance(r["path"], r["digit"], round(r["duration"], 4)) for r in rows]


def _write_split(folder: Path, splits: dict[str, list[dict]]) -> None:
    for name, rows in splits.items():
        write_manifest(folder / f"{name}.jsonl", _labelled(rows), key="label")


def _connected(
    rows: list[dict],
    n: int,
    rng: np.random.Generator,
    out: Path,
    tag: str,
    min_digits: int = 2,
    edge: tuple[float, float] = (0.05, 0.3),
) -> list[Utterance]:
    by_speaker: dict[str, list[dict]] = {}
    for r in rows:
        by_speaker.setdefault(r["speaker"], []).append(r)
    speakers = sorted(by_speaker)
    cache: dict[str, np.ndarray] = {}
    utts = []
    for k in range(n):
        pool = by_speaker[speakers[int(rng.integers(len(speakers)))]]
        size = int(rng.integers(min_digits, 8))
        picks = [pool[int(j)] for j in rng.integers(0, len(pool), size=size)]
        parts = [np.zeros(int(rng.uniform(*edge) * FSDD_RATE), np.float32)]
        for j, r in enumerate(picks):
            if r["path"] not in cache:
                cache[r["path"]] = load_audio(r["path"], FSDD_RATE)
            if j:
                parts.append(np.zeros(int(rng.uniform(0.1, 0.5) * FSDD_RATE), np.float32))
            parts.append(cache[r["path"]])
        parts.append(np.zeros(int(rng.uniform(*edge) * FSDD_RATE), np.float32))
        path = out / "audio" / f"{tag}-{k:05d}.flac"
        text = " ".join(DIGIT_WORDS[int(r["digit"])] for r in picks)
        utts.append(_write_flac(path, np.concatenate(parts), rng, text))
    return utts


def _write_flac(path: Path, wave: np.ndarray, rng: np.random.Generator, text: str) -> Utterance:
    """Write ``wave`` with a faint noise floor (so that silences are not digital zeros) as
    16-bit FLAC at FSDD's rate; its manifest entry."""
    import soundfile as sf

    wave = wave + rng.normal(0, 3e-4, size=wave.shape).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.clip(wave, -1, 1), FSDD_RATE, subtype="PCM_16")
    return Utterance(str(path.resolve()), text, round(len(wave) / FSDD_RATE, 4))


def prepare(args: argparse.Namespace) -> None:
    rows = read_fsdd(Path(args.fsdd))
    out = Path(args.out)
    test = [r for r in rows if r["index"] < 5]
    valid = [r for r in rows if 5 <= r["index"] < 10]
    train = [r for r in rows if r["index"] >= 10]
    _write_split(out / "fsdd", {"train": train, "valid": valid, "test": test})
    for speaker in sorted({r["speaker"] for r in rows}):
        others = [r for r in rows if r["speaker"] != speaker]
        _write_split(
            out / f"loso-{speaker}",
            {
                "train": [r for r in others if r["index"] >= 5],
                "valid": [r for r in others if r["index"] < 5],
                "test": [r for r in rows if r["speaker"] == speaker],
            },
        )
    rng = np.random.default_rng(args.seed)
    digits = out / "digits"
    edge = _edge(args.edge_silence)
    for name, part, n in (
        ("train", train, args.n_train),
        ("valid", valid, args.n_valid),
        ("test", test, args.n_test),
    ):
        # (the options shape the training sequences only; valid and test stay 2-7 digits)
        kw = {"min_digits": args.train_min_digits, "edge": edge} if name == "train" else {}
        write_manifest(digits / f"{name}.jsonl", _connected(part, n, rng, digits, name, **kw))
    write_isolated(digits / "isolated-test.jsonl", test)
    write_padded(digits, test, rng)
    print(
        f"wrote manifests under {out} ({len(rows)} FSDD recordings; connected digits: "
        f"{args.n_train} train, {args.n_valid} valid, {args.n_test} test sequences)"
    )


def write_isolated(path: Path, rows: list[dict]) -> None:
    """A transcription manifest of single recordings (``"text": "seven"``), to measure how a CTC
    model trained on connected digits does on isolated words."""
    words = [
        Utterance(r["path"], DIGIT_WORDS[int(r["digit"])], round(r["duration"], 4)) for r in rows
    ]
    write_manifest(path, words)


def write_padded(folder: Path, rows: list[dict], rng: np.random.Generator, pad: float = 0.2):
    """The same words with ``pad`` seconds of silence (the connected digits' noise floor) added
    on each side: ``folder/padded-isolated-test.jsonl`` and ``folder/audio/padded-*.flac``."""
    zeros = np.zeros(int(pad * FSDD_RATE), np.float32)
    utts = []
    for k, r in enumerate(rows):
        wave = np.concatenate([zeros, load_audio(r["path"], FSDD_RATE), zeros])
        path = folder / "audio" / f"padded-{k:04d}.flac"
        utts.append(_write_flac(path, wave, rng, DIGIT_WORDS[int(r["digit"])]))
    write_manifest(folder / "padded-isolated-test.jsonl", utts)


def _edge(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"--edge-silence must be MIN,MAX in seconds, got {text!r}") from None
    if not 0 <= lo <= hi:
        raise UserError(f"--edge-silence needs 0 <= MIN <= MAX, got {text!r}")
    return lo, hi


def rtf(args: argparse.Namespace) -> None:
    """Real-time factor of ``lstmkit transcribe`` on the files of a manifest (one thread), and
    the WER and CER of those transcripts."""
    import torch

    from lstmkit.data.audio import read_manifest
    from lstmkit.infer.load import load_trained
    from lstmkit.tasks.speech import normalize_text
    from lstmkit.utils.metrics import error_rates

    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    task, model, _ = load_trained(args.run, device)
    utts = read_manifest(args.manifest)[: args.limit]
    paths = [u.path for u in utts]
    with torch.no_grad():
        task.transcribe(model, paths[:2], device, args.decoder)  # warm-up
        t0 = time.perf_counter()
        results = task.transcribe(model, paths, device, args.decoder, args.beam_size)
        wall = time.perf_counter() - t0
    seconds = sum(r["seconds"] for r in results)
    refs = [normalize_text(u.text, task.cfg.lowercase) for u in utts]
    rates = error_rates(refs, [r["text"] for r in results])
    print(
        json.dumps(
            {
                "files": len(results),
                "audio_s": round(seconds, 2),
                "compute_s": round(wall, 3),
                "audio_s_per_compute_s": round(seconds / wall, 1),
                "decoder": args.decoder,
                "beam_size": args.beam_size if args.decoder == "beam" else 1,
                **{k: round(v, 5) for k, v in rates.items()},
                "threads": args.threads,
            }
        )
    )


def ensemble(args: argparse.Namespace) -> None:
    """Accuracy of spoken-words runs and of their ensemble (mean of the class probabilities)
    on the recordings of a manifest."""
    import torch

    from lstmkit.data.audio import read_manifest
    from lstmkit.infer.load import load_trained

    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    utts = read_manifest(args.manifest, key="label")
    loaded = [load_trained(run, device)[:2] for run in args.runs]
    labels = loaded[0][0].labels
    if any(task.name != "spoken-words" or task.labels != labels for task, _ in loaded):
        raise UserError("ensemble: give spoken-words runs with the same labels")
    truth = torch.tensor([labels.index(u.text) for u in utts])
    total, out = 0, {}
    with torch.no_grad():
        for run, (task, model) in zip(args.runs, loaded, strict=True):
            probs = []
            for u in utts:
                b = task._input_batch(u.path, device)
                probs.append(model(b.feats, b.lengths)[0].softmax(-1))
            p = torch.stack(probs)
            out[run] = round(float((p.argmax(-1) == truth).float().mean()), 5)
            total = total + p
    out["ensemble"] = round(float((total.argmax(-1) == truth).float().mean()), 5)
    print(json.dumps({"manifest": args.manifest, "files": len(utts), "accuracy": out}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="write the FSDD manifests and connected-digit audio")
    p.add_argument("--fsdd", default="../shared/data/fsdd")
    p.add_argument("--out", default="runs/speech-data")
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--n-valid", type=int, default=200)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--train-min-digits",
        type=int,
        default=2,
        choices=range(1, 8),
        help="fewest digits of a training sequence (1 adds isolated words)",
    )
    p.add_argument(
        "--edge-silence",
        default="0.05,0.3",
        help="MIN,MAX seconds of silence before and after a training sequence",
    )
    p.set_defaults(fn=prepare)
    r = sub.add_parser("rtf", help="real-time factor of transcription on CPU")
    r.add_argument("run")
    r.add_argument("manifest")
    r.add_argument("--decoder", default="greedy", choices=("greedy", "beam"))
    r.add_argument("--beam-size", type=int, default=8)
    r.add_argument("--limit", type=int, default=100000)
    r.add_argument("--threads", type=int, default=1)
    r.set_defaults(fn=rtf)
    e = sub.add_parser("ensemble", help="accuracy of spoken-words runs and of their ensemble")
    e.add_argument("manifest")
    e.add_argument("runs", nargs="+")
    e.add_argument("--threads", type=int, default=1)
    e.set_defaults(fn=ensemble)
    args = parser.parse_args(argv)
    try:
        args.fn(args)
    except UserError as e:
        print(f"speech_results: error: {e}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
