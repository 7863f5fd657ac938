"""``lstmkit export``: a trained run's model as an ONNX file (``--format onnx``, the only format
for now), with what a consumer needs to use it beside the graph.

Every task's model exports through its export form (:mod:`lstmkit.export.tasks`): the sentiment
classifier, the language model with its state in and out, the spoken-word classifier, the CTC
encoder, the long-time-lag models, and the seq2seq model as two graphs, an encoder
(``OUT``) and a decoder step (``OUT`` with ``.decoder.onnx`` for ``.onnx``), so that greedy and
beam search run outside torch.

The metadata (:func:`export_metadata`) is written twice: as the ONNX file's
``metadata_props`` (key ``lstmkit``, a JSON document; ``lstmkit_version`` and ``task`` also
as keys of their own) and as ``OUT.json`` beside it. It holds the lstmkit version, the task,
each graph's file and its inputs and outputs (names, dtypes, shapes with symbolic dimensions),
the task's configuration and state as the checkpoint stores them (the tokenizer serialised: its
vocabulary, or the HF ``tokenizers`` JSON of a BPE model; the labels; the characters of a CTC
model; the feature statistics), and sections that say what the inputs are: ``tokenizer`` and
``labels``, ``features`` (sample rate, mel bins, window and hop, normalisation, frame
stacking), ``state`` (the recurrent state's sizes), ``decoding`` (beam, length penalty,
special token ids; CTC's decoder) and ``forecast`` (the window, columns, scaler, calendar
features, likelihood and how the point and quantiles are read: :func:`forecast_section`).
``lstmkit predict OUT`` reads them back (:mod:`lstmkit.infer.onnx_predict`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lstmkit.infer.inputs import allow_nonfinite_field, checkpoint_field
from lstmkit.infer.load import load_trained, require
from lstmkit.tasks.base import Task
from lstmkit.train.checkpoint import checkpoint_folders, overlaps
from lstmkit.utils.errors import UserError
from lstmkit.utils.io import atomic_write_text
from lstmkit.utils.meta import help_meta as _help

FORMATS = ("onnx",)
METADATA_FORMAT = "lstmkit-onnx"
METADATA_VERSION = 1
METADATA_KEY = "lstmkit"
"""The ``metadata_props`` key holding the JSON document; a file without it is no lstmkit
export."""


@dataclass(frozen=True)
class ExportConfig:
    """Options of ``lstmkit export``."""

    checkpoint: str = checkpoint_field()
    out: str = field(
        default="",
        metadata=_help(
            "the file to write (required), e.g. model.onnx; a translation model writes its "
            "decoder step beside it (model.decoder.onnx), and every export its metadata "
            "(model.onnx.json)"
        ),
    )
    format: str = field(
        default="onnx",
        metadata=_help("export format (onnx is the only one for now)", choices=FORMATS),
    )
    opset: int = field(default=0, metadata=_help("ONNX opset version; 0: the exporter's default"))
    int8_lstm: str = field(
        default="dynamic",
        metadata=_help(
            "an int8 run (lstmkit quantize): 'dynamic' exports the LSTMs ONNX's LSTM node "
            "expresses as ONNX Runtime's DynamicQuantizeLSTM (int8 compute), 'dequantize' as "
            "int8 weights + DequantizeLinear (float32 compute); the file holds int8 weights "
            "either way",
            choices=("dynamic", "dequantize"),
        ),
    )
    overwrite: bool = field(default=False, metadata=_help("replace existing files at --out"))
    allow_nonfinite: bool = allow_nonfinite_field()


@dataclass
class ExportResult:
    paths: list[Path]
    """The files written: the graphs, then the metadata JSON."""
    metadata: dict


def output_paths(out: str | Path, graphs: list[str]) -> dict[str, Path]:
    """Where each graph goes: the first at ``out``, the others beside it
    (``model.onnx`` -> ``model.decoder.onnx``)."""
    out = Path(out)
    paths = {graphs[0]: out}
    for name in graphs[1:]:
        stem = out.name.removesuffix(".onnx")
        paths[name] = out.with_name(f"{stem}.{name}.onnx")
    return paths


def metadata_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".json")


def run_checks(cfg: ExportConfig) -> None:
    """The options of ``cfg`` and ``--out``, checked before the model loads."""
    if cfg.format not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {cfg.format!r}")
    if not cfg.out:
        raise UserError("--out: give the file to write, e.g. --out model.onnx")
    try:
        _check_out(cfg)
    except OSError as e:  # a name the file system refuses (too long, ...)
        name = cfg.out if len(cfg.out) <= 80 else cfg.out[:77] + "..."
        raise UserError(f"--out: {name}: {e.strerror or e}") from None


def _check_out(cfg: ExportConfig) -> None:
    metadata_path(cfg.out).exists()  # its name too must be one the file system takes
    if Path(cfg.out).exists() and not cfg.overwrite:
        raise UserError(f"--out: {cfg.out} exists; pass --overwrite to replace it")
    if cfg.int8_lstm not in ("dynamic", "dequantize"):
        raise UserError(f"--int8-lstm must be dynamic or dequantize, got {cfg.int8_lstm!r}")
    if cfg.opset < 0:
        raise UserError(f"--opset must be >= 0 (0: the exporter's default), got {cfg.opset}")
    out = Path(cfg.out)
    parent = out.parent.resolve()
    hit = overlaps(parent, checkpoint_folders(cfg.checkpoint))
    if hit is not None and (parent == hit or hit in parent.parents):  # among its own files
        raise UserError(
            f"--out: {out} is inside the checkpoint {hit} being exported; write the export "
            "beside it (e.g. in the run folder)"
        )
    if out.is_dir():
        raise UserError(f"--out: {out} is a folder; give a file name, e.g. {out}/model.onnx")
    if not out.parent.is_dir():
        raise UserError(f"--out: folder {out.parent} does not exist")


def _check_free(paths: list[Path], overwrite: bool) -> None:
    for p in paths:
        if p.is_dir():
            raise UserError(f"--out: {p} is a folder")
        if p.exists() and not overwrite:
            raise UserError(f"--out: {p} exists; pass --overwrite to replace it")


def _state_section(encoder: nn.Module) -> dict:
    cell = type(encoder).__name__.lower()
    return {
        "cell": "lstm" if cell in ("lstm", "quantizedlstm") else cell,
        "num_layers": encoder.num_layers,
        "directions": 2 if encoder.bidirectional else 1,
        "hidden_size": encoder.hidden_size,
        "proj_size": getattr(encoder, "proj_size", 0),
    }


def task_sections(task: Task, model: nn.Module) -> dict:
    """The sections of the metadata that say what the inputs are and how outputs are read,
    for ``task`` (see the module docstring)."""
    name = task.name
    cfg = task.cfg
    if name == "sentiment":
        return {
            "tokenizer": task.tokenizer.state(),
            "labels": list(task.labels),
            "max_tokens": cfg.max_tokens,
            "state": _state_section(model.encoder),
        }
    if name == "lm":
        return {
            "tokenizer": task.tokenizer.state(),
            "seq_len": cfg.seq_len,
            "scores": "log_probs" if model.adaptive is not None else "logits",
            "state": _state_section(model.encoder),
        }
    if name in ("spoken-words", "asr-ctc"):
        features = {
            "sample_rate": cfg.sample_rate,
            "n_mels": cfg.n_mels,
            "win_ms": cfg.win_ms,
            "hop_ms": cfg.hop_ms,
            "normalize": cfg.normalize,
            "subsample": task.model_cfg.subsample,
            **task.stats_state(),
        }
        out = {"features": features, "state": _state_section(model.encoder.encoder)}
        if name == "spoken-words":
            return {**out, "labels": list(task.labels)}
        return {
            **out,
            "decoding": {
                "decoder": cfg.decoder,
                "beam_size": cfg.beam_size,
                "blank": 0,
                "chars": task.chars,
            },
        }
    if name == "translation":
        from lstmkit.data.bitext import vocabularies_state
        from lstmkit.data.tokenize import BOS, EOS, PAD

        return {
            **vocabularies_state(*task.tokenizers()),
            "decoding": {
                "beam": cfg.beam,
                "len_penalty": cfg.len_penalty,
                "max_len_ratio": cfg.max_len_ratio,
                "decode_batch": cfg.decode_batch,
                "bos": BOS,
                "eos": EOS,
                "pad": PAD,
            },
            "state": {
                "cell": "lstm",
                "num_layers": len(model.cells),
                "hidden_size": task.model_cfg.decoder.hidden_size,
                "embed_size": task.model_cfg.embed_size,
            },
        }
    if name == "forecast":
        return {"forecast": forecast_section(task), **_encoder_state(model)}
    # the long-time-lag tasks: numeric sequences
    out = {
        "input_labels": list(task.input_labels or []),
        "per_step": bool(task.per_step),
        "state": _state_section(model.encoder),
    }
    if name in MARKED_PAIRS:  # what lstmkit.infer.onnx_predict needs to read their text
        target = MARKED_PAIRS[name]
        if name == "adding" and cfg.variant != "le2015":
            target = "quarter_sum"
        out["marked_pairs"] = {
            "target": target,
            "uses_end_markers": bool(task.uses_end_markers),
            "neutral": float(task.neutral),
            "tolerance": float(cfg.tolerance),
        }
    return out


def _encoder_state(model: nn.Module) -> dict:
    """A forecaster's ``state`` section where it has a recurrent encoder (none for the
    baselines)."""
    enc = getattr(model.net, "encoder", None)
    return {"state": _state_section(enc)} if enc is not None else {}


CALENDAR = {
    "function": "lstmkit.data.timeseries.calendar_features",
    "features": ["hour", "weekday", "month"],
    "formula": "of each timestamp (UTC where the input gives a zone): hour / 23 - 0.5, "
    "weekday / 6 - 0.5 (Monday = 0), month / 11 - 0.5 (January = 0), in that order",
}
"""How the forecast task's calendar features are computed (the Informer code's
``time_features``), for a consumer of the export."""

POINT_RULES = {
    "point": "params[..., 0]",
    "gaussian": "the mean, params[..., 0] (params: mu, sigma)",
    "student-t": "the mean, params[..., 0] (params: mu, sigma, nu; nu > 2)",
    "quantile": "the level nearest 0.5 (params: one per level, sorted)",
}
QUANTILE_RULES = {
    "point": "",
    "gaussian": "mu + sigma * Phi^-1(q) (the normal's inverse CDF)",
    "student-t": "the empirical q-quantile (linear interpolation) of `samples` draws "
    "mu + sigma * z / sqrt(chi2_nu / nu), z ~ N(0, 1), chi2_nu a chi-square draw with nu "
    "degrees of freedom",
    "quantile": "the head of each level, as it is",
}


def forecast_section(task: Task) -> dict:
    """The forecast export's ``forecast`` section: the window (``lookback`` rows in,
    ``horizon`` rows out), the columns (``outputs`` forecast, ``inputs`` read: the outputs
    then the past-only covariates), the scaler (:math:`z = (v - \\mu) / \\sigma` per input
    column, the graph's units; the outputs back by :math:`v = z \\sigma + \\mu`), the
    calendar features and their formula, the time column and frequency, the gap filling of
    recent rows, the likelihood and its levels, and how the point forecast and the 10/50/90%
    quantiles of ``lstmkit predict`` are read from the parameters."""
    from lstmkit.tasks.forecast import _OUT_LEVELS, _SAMPLES

    cfg, mcfg = task.cfg, task.model_cfg
    freq_s = int(task.freq / np.timedelta64(1, "s"))
    lik = mcfg.likelihood
    return {
        "lookback": cfg.lookback,
        "horizon": cfg.horizon,
        "outputs": list(task.outputs),
        "inputs": list(task.inputs),
        "scaler": {
            "columns": list(task.inputs),
            "mean": [float(v) for v in task.scaler.mean],
            "std": [float(v) for v in task.scaler.std],
        },
        "calendar": {"enabled": bool(task.n_calendar), **CALENDAR},
        "time_column": cfg.time_column,
        "freq_s": freq_s,
        "fill": cfg.fill,
        "model": mcfg.model,
        "likelihood": lik,
        "params": {
            "point": ["value"],
            "gaussian": ["mu", "sigma"],
            "student-t": ["mu", "sigma", "nu"],
        }.get(lik, [f"q{q:g}" for q in mcfg.levels]),
        "levels": list(mcfg.levels) if lik == "quantile" else [],
        "point_rule": POINT_RULES[lik],
        "output_levels": list(_OUT_LEVELS) if lik != "point" else [],
        "quantile_rule": QUANTILE_RULES[lik],
        "samples": _SAMPLES if lik == "student-t" else 0,
    }


MARKED_PAIRS = {"adding": "sum", "multiplication": "product"}
"""The tasks whose input is values with two of them marked (``0.3 0.7* 0.1 0.9*``), and their
targets: the sum (``quarter_sum``: 0.5 + sum / 4 for the 1997 adding variant), the product."""


def export_metadata(
    task: Task, model: nn.Module, ckpt, graphs: dict[str, dict], int8_lstm: str = "dynamic"
) -> dict:
    """The metadata document of an export (see the module docstring); a quantized run's
    (``lstmkit quantize``) has a ``quantization`` section: its mode, how the weights are
    stored and what ONNX Runtime computes in (:func:`lstmkit.export.quantized.describe`)."""
    import lstmkit
    from lstmkit.export.quantized import describe

    quantization = describe(model, int8_lstm)
    return {
        "format": METADATA_FORMAT,
        "format_version": METADATA_VERSION,
        "lstmkit_version": lstmkit.__version__,
        "task": task.name,
        "checkpoint": str(ckpt.path),
        **({"quantization": quantization} if quantization else {}),
        "graphs": graphs,
        **task_sections(task, model),
        "task_config": asdict(task.cfg),
        "model_config": asdict(task.model_cfg),
        "task_state": task.state(),
    }


def _form_sizes(task: Task) -> dict:
    """What a task's export form needs that its model does not hold: the forecast's window."""
    if task.name == "forecast":
        return {
            "lookback": task.cfg.lookback,
            "horizon": task.cfg.horizon,
            "n_future": task.n_calendar,
        }
    return {}


def export_task_model(
    task: Task,
    model: nn.Module,
    ckpt,
    out: str | Path,
    *,
    opset: int | None = None,
    overwrite: bool = False,
    int8_lstm: str = "dynamic",
) -> ExportResult:
    """Export ``model`` (the task's, in eval mode) to ONNX at ``out`` (and beside it, for a
    second graph) with its metadata; ``lstmkit export`` and ``Run.export`` share this.

    Each graph is exported with dynamic batch and time dimensions and checked by
    ``onnx.checker`` (:func:`lstmkit.export.export_model`); nothing is written at ``out``
    until every graph has exported."""
    from lstmkit.export import ExportError, export_model
    from lstmkit.export.tasks import export_forms

    if model.training:
        raise ExportError("export: the model is in train mode; call model.eval() first")
    forms = export_forms(model, **_form_sizes(task))
    paths = output_paths(out, list(forms))
    _check_free([*paths.values(), metadata_path(out)], overwrite)
    graphs = {
        name: {
            "file": paths[name].name,
            "inputs": [p.describe() for p in form.inputs],
            "outputs": [p.describe() for p in form.outputs],
        }
        for name, form in forms.items()
    }
    meta = export_metadata(task, model, ckpt, graphs, int8_lstm)
    props = {
        METADATA_KEY: json.dumps(meta, ensure_ascii=False),
        "lstmkit_version": meta["lstmkit_version"],
        "task": task.name,
    }
    # every graph to a temporary file beside its place first: a failed export (or Ctrl-C)
    # leaves the files at --out as they were, never half of a new export
    temps = {n: p.with_name(f".{p.name}.{os.getpid()}.tmp") for n, p in paths.items()}
    try:
        for name, form in forms.items():
            dims = {d: torch.export.Dim(d) for d in sorted(form.dynamic_dims())}
            dynamic = tuple(
                {k: dims[d] for k, d in enumerate(p.shape) if isinstance(d, str)}
                for p in form.inputs
            )
            with torch.no_grad():
                export_model(
                    form.eval(),
                    form.example(),
                    temps[name],
                    input_names=list(form.input_names),
                    output_names=list(form.output_names),
                    dynamic_shapes=dynamic,
                    opset=opset,
                    metadata={**props, "graph": name},
                    int8_lstm=int8_lstm,
                )
        for name, path in paths.items():
            os.replace(temps[name], path)
    finally:
        for t in temps.values():
            t.unlink(missing_ok=True)
    meta_file = metadata_path(out)
    atomic_write_text(meta_file, json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    return ExportResult([*paths.values(), meta_file], meta)


def run_export(cfg: ExportConfig) -> ExportResult:
    """``lstmkit export``: check the options and ``--out`` (before the model loads), load the
    run on the CPU and export it."""
    run_checks(cfg)
    task, model, ckpt = load_trained(
        cfg.checkpoint, torch.device("cpu"), allow_nonfinite=cfg.allow_nonfinite
    )
    require(task, "export", cfg.checkpoint)
    result = export_task_model(
        task,
        model,
        ckpt,
        cfg.out,
        opset=cfg.opset or None,
        overwrite=cfg.overwrite,
        int8_lstm=cfg.int8_lstm,
    )
    return result
