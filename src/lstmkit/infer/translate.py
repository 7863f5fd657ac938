"""``lstmkit translate``: translate sentences with a trained translation checkpoint, and score
the output against references with sacreBLEU and chrF (signatures printed)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import torch

from lstmkit.data.text import check_encoding, read_lines
from lstmkit.infer.inputs import arguments_field, checkpoint_field, device_field
from lstmkit.infer.load import load_for
from lstmkit.utils.errors import UserError
from lstmkit.utils.io import atomic_write_text
from lstmkit.utils.meta import help_meta as _help


@dataclass(frozen=True)
class TranslateConfig:
    """Options of ``lstmkit translate``."""

    checkpoint: str = checkpoint_field("a translation run folder")
    sentences: tuple[str, ...] = arguments_field("sentences in the source language")
    input: str = field(
        default="", metadata=_help("translate this file, one sentence per line (plain or .gz)")
    )
    output: str = field(
        default="", metadata=_help("write the translations here (one per line), not the screen")
    )
    reference: str = field(
        default="",
        metadata=_help("score against this file of reference translations (BLEU, chrF)"),
    )
    encoding: str = field(default="utf-8", metadata=_help("encoding of --input and --reference"))
    beam: int = field(default=0, metadata=_help("beam size; 1 is greedy; 0: the checkpoint's"))
    len_penalty: float = field(
        default=-1.0,
        metadata=_help("length normalisation alpha (log p / length^alpha); < 0: the checkpoint's"),
    )
    max_len_ratio: float = field(
        default=0.0,
        metadata=_help("output at most ratio * source subwords + 5; 0: the checkpoint's"),
    )
    batch: int = field(default=0, metadata=_help("sentences decoded together; 0: the checkpoint's"))
    device: str = device_field()
    threads: int = field(default=0, metadata=_help("CPU threads; 0: torch's default", max=4096))


@dataclass
class TranslateResult:
    sources: list[str]
    translations: list[str]
    seconds: float
    scores: dict[str, float] = field(default_factory=dict)
    signatures: dict[str, str] = field(default_factory=dict)


def load_translator(checkpoint: str, device: str = "auto", **overrides):
    """The translation task (with decoding options overridden) and its model in eval mode."""
    task, model, _, dev = load_for("translate", checkpoint, device)
    return with_decoding(task, **overrides), model, dev


def with_decoding(task, **overrides):
    """``task`` with the decoding options (``beam``, ``len_penalty``, ``max_len_ratio``,
    ``decode_batch``) that are not None replaced; the task itself when there are none."""
    changes = {k: v for k, v in overrides.items() if v is not None}
    if changes:
        task = type(task)(replace(task.cfg, **changes), task.model_cfg, task.state())
    return task


def translate_sentences(task, model, device, sources: list[str]) -> list[str]:
    """One translation per source sentence; an empty source gives an empty translation, so
    the output lines stay aligned with the input lines (``lstmkit translate`` and
    ``Run.translate`` of the Python API share this)."""
    todo = [i for i, s in enumerate(sources) if s]
    outs = task.translate(model, [sources[i] for i in todo], device)
    translations = [""] * len(sources)
    for i, t in zip(todo, outs, strict=True):
        translations[i] = t
    return translations


def translate(cfg: TranslateConfig) -> TranslateResult:
    """Translate the command-line sentences, then the lines of ``--input``; write ``--output``
    atomically; score against ``--reference`` when given."""
    encoding = check_encoding(cfg.encoding)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    sources = list(cfg.sentences)
    if cfg.input:
        sources += [line.strip() for line in read_lines(cfg.input, encoding)]
    if not sources:
        raise UserError("nothing to translate: give sentences or --input FILE")
    refs = None
    if cfg.reference:
        refs = [line.strip() for line in read_lines(cfg.reference, encoding)]
        if len(refs) != len(sources):
            raise UserError(
                f"--reference {cfg.reference} has {len(refs)} lines but there are "
                f"{len(sources)} sentences to translate"
            )
    task, model, dev = load_translator(
        cfg.checkpoint,
        cfg.device,
        beam=cfg.beam or None,
        len_penalty=cfg.len_penalty if cfg.len_penalty >= 0 else None,
        max_len_ratio=cfg.max_len_ratio or None,
        decode_batch=cfg.batch or None,
    )
    start = time.perf_counter()
    translations = translate_sentences(task, model, dev, sources)
    result = TranslateResult(sources, translations, time.perf_counter() - start)
    if cfg.output:
        atomic_write_text(cfg.output, "".join(t + "\n" for t in translations))
    if refs is not None:
        from lstmkit.utils.metrics import bleu_chrf

        bleu, chrf, bleu_sig, chrf_sig = bleu_chrf(translations, refs)
        result.scores = {"bleu": bleu, "chrf": chrf}
        result.signatures = {"bleu": bleu_sig, "chrf": chrf_sig}
    return result
