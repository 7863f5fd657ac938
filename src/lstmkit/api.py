"""The Python API for trained runs: ``run = lstmkit.load("runs/mr")``, then ``run.predict(...)``.

A :class:`Run` holds one checkpoint's task and model, loaded once, and offers the verbs of the
command line (``predict``, ``evaluate``, ``inspect``, ``generate``, ``translate``,
``transcribe``, ``export``) as methods returning Python values instead of printed lines. Each
method calls the same functions as its command, so a method and its command give the same
results. A verb the run's task does not have raises :class:`UnsupportedVerb`, naming the task
and the verbs it has.

This module sits at the level of the CLI (it imports infer/, where each verb lives); ``import
lstmkit`` does not import it, ``lstmkit.load`` does on its first call.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import fields
from pathlib import Path

import torch
from torch import nn

from lstmkit.infer import evaluate as _evaluate
from lstmkit.infer import inputs as _inputs
from lstmkit.infer import predict as _predict
from lstmkit.infer.load import UnsupportedVerb, load_trained, require
from lstmkit.tasks.base import VERBS, Task
from lstmkit.train.checkpoint import Checkpoint
from lstmkit.utils.device import resolve_device
from lstmkit.utils.errors import UserError

__all__ = ["VERBS", "Run", "UnsupportedVerb", "load"]


def load(path: str | os.PathLike, device: str = "auto", *, allow_nonfinite: bool = False) -> Run:
    """The trained run at ``path`` (a run folder, or its ``best/`` or ``last/`` checkpoint),
    its model loaded once in eval mode on ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:1``...).

    ``allow_nonfinite`` loads NaN or infinite weights (for debugging a diverged run). Bad paths
    and damaged checkpoints raise :class:`~lstmkit.utils.errors.UserError` with one line that
    names the file, as the command line prints it."""
    dev = resolve_device(device)
    task, model, ckpt = load_trained(path, dev, allow_nonfinite=allow_nonfinite)
    return Run(Path(path), task, model, ckpt, dev)


class Run:
    """A trained run: its task, its model and its checkpoint (make one with :func:`load`).

    Attributes: ``model`` (the ``torch.nn.Module``, in eval mode), ``task`` (the task it was
    trained for, with its vocabulary and labels), ``checkpoint`` (path, step and metadata),
    ``device``, and ``verbs`` (the methods this run's task supports)."""

    def __init__(
        self, path: Path, task: Task, model: nn.Module, checkpoint: Checkpoint, device: torch.device
    ) -> None:
        self.path = path
        self.task = task
        self.model = model
        self.checkpoint = checkpoint
        self.device = device

    def __repr__(self) -> str:
        return (
            f"Run({str(self.path)!r}, task={self.task.name!r}, device={str(self.device)!r}, "
            f"verbs={self.verbs})"
        )

    @property
    def verbs(self) -> tuple[str, ...]:
        """The methods this run's task supports (its declared capabilities), in the order of
        :data:`VERBS`."""
        return self.task.verbs()

    def _need(self, verb: str) -> None:
        require(self.task, verb, str(self.path))

    # ----- the verbs
    def predict(self, inputs: str | Iterable[str]) -> list[dict]:
        """One result dict per input (the objects ``lstmkit predict`` prints as JSON lines),
        in the task's text format: a sentence for sentiment, ``0.5* 0.1 0.3*`` for adding, an
        audio path for the speech tasks... A single string is one input."""
        self._need("predict")
        items = _inputs.read_inputs(_texts(inputs, "inputs"), "")
        if not items:
            raise UserError("predict: give one or more inputs")
        return _predict.predict_items(self.task, self.model, items, self.device)

    def evaluate(
        self, split: str = "test", *, data: str | os.PathLike | None = None, **options
    ) -> dict[str, float]:
        """The task's metrics on ``split`` (``"valid"`` or ``"test"``) of the run's own data,
        as ``lstmkit evaluate --split`` prints them; or, with ``data``, on that labelled file
        (the formats the task trains from; ``options`` are ``lstmkit evaluate --data``'s
        reading options, e.g. ``text_column="review"``)."""
        self._need("evaluate")
        if data is not None:
            return _evaluate.evaluate_data(self.task, self.model, data, self.device, **options)
        if options:
            raise UserError(f"evaluate: {', '.join(options)} apply only with data=FILE")
        if split not in ("valid", "test"):
            raise UserError(f"evaluate: split must be 'valid' or 'test', got {split!r}")
        return _evaluate.evaluate_split(self.task, self.model, split, self.device, str(self.path))

    def inspect(self, inputs: str | Iterable[str] = (), out: str | os.PathLike = "inspect"):
        """Gate and cell-state PNGs for ``inputs`` (one test example when there are none),
        written into the folder ``out``; returns their paths, as ``lstmkit inspect`` prints."""
        self._need("inspect")
        items = _inputs.read_inputs(
            _texts(inputs, "inputs"), "", max_chars=_inputs.MAX_INSPECT_CHARS
        )
        with torch.no_grad():
            return self.task.inspect(self.model, items, Path(out), self.device)

    def generate(
        self,
        prompt: str = "",
        length: int | None = None,
        *,
        temperature: float | None = None,
        top_k: int | None = None,
        seed: int | None = None,
        on_unknown: str | None = None,
        echo_prompt: bool | None = None,
        stream: bool = False,
    ) -> str | Iterator[str]:
        """Text sampled from a language model after ``prompt``, as ``lstmkit generate`` prints
        it; the options left out take that command's defaults (length 500, temperature 1, all
        tokens, the prompt echoed). ``seed`` makes it repeatable. ``stream=True`` returns the
        pieces one token at a time, as they are sampled."""
        from lstmkit.infer.generate import GenerateConfig, generate_pieces

        self._need("generate")
        default = {f.name: f.default for f in fields(GenerateConfig)}
        length = default["length"] if length is None else length
        if length < 0:
            raise UserError(f"generate: length must be >= 0, got {length}")
        pieces = generate_pieces(
            self.task,
            self.model,
            self.device,
            prompt,
            length,
            temperature=default["temperature"] if temperature is None else temperature,
            top_k=default["top_k"] if top_k is None else top_k,
            seed=seed,
            on_unknown=default["on_unknown"] if on_unknown is None else on_unknown,
            echo_prompt=default["echo_prompt"] if echo_prompt is None else echo_prompt,
        )
        return pieces if stream else "".join(pieces)

    def translate(
        self,
        sentences: str | Iterable[str],
        *,
        beam: int | None = None,
        len_penalty: float | None = None,
        max_len_ratio: float | None = None,
        batch: int | None = None,
    ) -> list[str]:
        """One translation per sentence (an empty sentence gives an empty translation), as
        ``lstmkit translate`` prints them; the decoding options left out are the run's."""
        from lstmkit.infer.translate import translate_sentences, with_decoding

        self._need("translate")
        sources = [s.strip() for s in _texts(sentences, "sentences")]
        task = with_decoding(
            self.task,
            beam=beam,
            len_penalty=len_penalty,
            max_len_ratio=max_len_ratio,
            decode_batch=batch,
        )
        with torch.no_grad():
            return translate_sentences(task, self.model, self.device, sources)

    def transcribe(
        self,
        audio: str | os.PathLike | Iterable[str | os.PathLike],
        *,
        decoder: str = "",
        beam_size: int = 0,
    ) -> list[dict]:
        """One ``{"input", "text", "seconds", "compute_s"}`` per audio file, as ``lstmkit
        transcribe --json`` prints them; ``decoder`` and ``beam_size`` default to the run's."""
        from lstmkit.infer.transcribe import transcribe_files

        self._need("transcribe")
        if isinstance(audio, str | os.PathLike):
            audio = [audio]
        paths = [os.fspath(a) for a in audio]
        if not paths:
            raise UserError("transcribe: give one or more audio files")
        return transcribe_files(self.task, self.model, self.device, paths, decoder, beam_size)

    def export(
        self,
        out: str | os.PathLike,
        *,
        format: str = "onnx",  # noqa: A002 (the command's option)
        opset: int | None = None,
        overwrite: bool = False,
    ) -> list[Path]:
        """Export the model to ONNX at ``out``, as ``lstmkit export RUN --out OUT`` does (a
        translation model also writes ``OUT``'s ``.decoder.onnx``; the metadata goes into the
        file and into ``OUT.json``); returns the paths written. The model moves to the CPU for
        the export and back."""
        from lstmkit.infer.export import ExportConfig, export_task_model, run_checks

        self._need("export")
        run_checks(
            ExportConfig(
                str(self.path),
                out=os.fspath(out),
                format=format,
                opset=opset or 0,
                overwrite=overwrite,
            )
        )
        model = self.model.cpu()
        try:
            result = export_task_model(
                self.task, model, self.checkpoint, out, opset=opset, overwrite=overwrite
            )
        finally:
            self.model.to(self.device)
        return result.paths

    def quantize(
        self, out: str | os.PathLike, mode: str = "int8", *, overwrite: bool = False
    ) -> Path:
        """Write this run with its LSTM weights as int8 or bf16 to the checkpoint folder
        ``out``, as ``lstmkit quantize RUN --out OUT --mode MODE`` does; returns ``out``
        (``lstmkit.load(out)`` runs it)."""
        from lstmkit.infer.quantize import QuantizeConfig, run_quantize

        self._need("quantize")
        cfg = QuantizeConfig(
            str(self.checkpoint.path), out=os.fspath(out), mode=mode, overwrite=overwrite
        )
        return run_quantize(cfg).path

    def stream(self):
        """A :class:`lstmkit.infer.stream.Stream` over this run's model: sessions fed chunk
        by chunk, their state kept between chunks, many advanced in one batched step
        (``run.stream().open().feed("a gripping")``). Sentiment, lm, spoken-words and asr-ctc
        runs with a unidirectional encoder; others raise a UserError saying why."""
        from lstmkit.infer.stream import Stream

        return Stream(self)

    def __getattr__(self, name: str):
        # a misspelt name: Python's AttributeError (hasattr and copy rely on it), with the list
        if name.startswith("_") or "task" not in self.__dict__:
            raise AttributeError(name)
        raise AttributeError(
            f"{type(self).__name__} has no attribute {name!r}; a {self.task.name!r} run has "
            f"{', '.join(self.verbs)}, model, task, checkpoint and device"
        )


def _texts(inputs: str | Iterable[str], what: str) -> tuple[str, ...]:
    if isinstance(inputs, str):
        return (inputs,)
    items = tuple(inputs)
    bad = [type(x).__name__ for x in items if not isinstance(x, str)]
    if bad:
        raise UserError(f"{what}: give strings, got {bad[0]}")
    return items
