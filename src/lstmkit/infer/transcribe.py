"""``lstmkit transcribe``: audio files to text with a trained speech model (task ``asr-ctc``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch

from lstmkit.infer.inputs import arguments_field, checkpoint_field, device_field
from lstmkit.infer.load import load_for
from lstmkit.utils.errors import UserError
from lstmkit.utils.io import atomic_write_text
from lstmkit.utils.meta import help_meta as _help


@dataclass(frozen=True)
class TranscribeConfig:
    """Options of ``lstmkit transcribe``."""

    checkpoint: str = checkpoint_field("a run folder of task asr-ctc")
    audio: tuple[str, ...] = arguments_field("audio files (WAV, FLAC, ...; any rate)")
    decoder: str = field(
        default="",
        metadata=_help("greedy or beam (default: the run's --decoder)"),
    )
    beam_size: int = field(default=0, metadata=_help("beam width; 0: the run's --beam-size"))
    json: bool = field(
        default=False,
        metadata=_help("print JSON lines with duration and compute time instead of FILE<TAB>TEXT"),
    )
    output: str = field(default="", metadata=_help("write the output to this file (atomically)"))
    device: str = device_field()


def transcribe(cfg: TranscribeConfig) -> tuple[list[dict], str]:
    """The results (one dict per file) and the text to print or write."""
    if not cfg.audio:
        raise UserError("transcribe: give one or more audio files")
    if cfg.beam_size < 0:
        raise UserError(f"--beam-size must be >= 0, got {cfg.beam_size}")
    task, model, _, device = load_for("transcribe", cfg.checkpoint, cfg.device)
    results = transcribe_files(task, model, device, cfg.audio, cfg.decoder, cfg.beam_size)
    if cfg.json:
        text = "".join(json.dumps(r) + "\n" for r in results)
    else:
        text = "".join(f"{r['input']}\t{r['text']}\n" for r in results)
    if cfg.output:
        atomic_write_text(cfg.output, text)
    return results, text


def transcribe_files(
    task, model, device: torch.device, audio, decoder: str = "", beam_size: int = 0
) -> list[dict]:
    """One result per audio file, from a loaded asr-ctc task and model (``lstmkit transcribe``
    and ``Run.transcribe`` of the Python API share it); decoder and beam size default to the
    run's own."""
    if beam_size < 0:
        raise UserError(f"--beam-size must be >= 0, got {beam_size}")
    with torch.no_grad():
        return task.transcribe(model, list(audio), device, decoder, beam_size)
