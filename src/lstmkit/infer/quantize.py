"""``lstmkit quantize RUN --out RUN-int8 [--mode int8|bf16] [--activations int8|float]``: a
trained run's model with every LSTM's weight matrices stored as int8 (per-row scales) or bf16
(:func:`lstmkit.quantize`), written as a checkpoint that every command loads
(``lstmkit predict RUN-int8 ...``). With int8 weights, ``--activations int8`` (the default)
quantizes what multiplies them at run time (integer dot products, as torch's dynamic
quantization), ``--activations float`` keeps them float32 (weight-only).

The checkpoint is an ordinary one (:mod:`lstmkit.train.checkpoint`: safetensors with the int8
or bf16 tensors and their float32 scales, model.json with the checksums), whose model.json
also says ``"quantized": {"mode": ..., "activations": ..., "from": ..., "from_sha256": ...}``
(a checkpoint written before ``activations`` existed lacks it and loads as ``"float"``); the loader
(:func:`lstmkit.infer.load.load_trained`) then builds the model with
:class:`~lstmkit.nn.quantized.QuantizedLSTM` in place of each LSTM before reading the weights.
Everything else of the model (embeddings, heads, attention) stays float32. The checkpoint has
no trainer state: it is for use, not for resuming training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from lstmkit.infer.inputs import allow_nonfinite_field, checkpoint_field
from lstmkit.infer.load import load_trained, require
from lstmkit.train.checkpoint import checkpoint_folders, overlaps
from lstmkit.utils.errors import UserError
from lstmkit.utils.meta import help_meta as _help

MODES = ("int8", "bf16")
ACTIVATIONS = ("auto", "int8", "float")
# Written by save_checkpoint itself: not copied from the float checkpoint's model.json.
_OWN_FIELDS = ("format", "format_version", "lstmkit_version", "sha256", "checksums", "meta_sha256")


@dataclass(frozen=True)
class QuantizeConfig:
    """Options of ``lstmkit quantize``."""

    checkpoint: str = checkpoint_field()
    out: str = field(
        default="",
        metadata=_help("the checkpoint folder to write (required), e.g. runs/mr-int8"),
    )
    mode: str = field(
        default="int8",
        metadata=_help(
            "int8: symmetric int8 weights with one float scale per output row; bf16: bfloat16 "
            "weights",
            choices=MODES,
        ),
    )
    activations: str = field(
        default="auto",
        metadata=_help(
            "what multiplies the int8 weights at run time: int8 (quantized per step and row from "
            "its max-abs, integer dot products, as torch's dynamic quantization), float "
            "(weight-only, float32 activations); auto: int8 for --mode int8, float for bf16 "
            "(its only choice)",
            choices=ACTIVATIONS,
        ),
    )
    overwrite: bool = field(
        default=False, metadata=_help("replace an existing checkpoint at --out")
    )
    device: str = field(
        default="cpu",
        metadata=_help("where the quantized model runs: the CPU kernel", choices=("cpu", "auto")),
    )
    allow_nonfinite: bool = allow_nonfinite_field()


@dataclass
class QuantizeResult:
    path: Path
    mode: str
    activations: str  # int8 or float
    float_bytes: int  # the LSTM weight matrices before (float32)
    quantized_bytes: int  # and after, scales included


def _check(cfg: QuantizeConfig) -> Path:
    if cfg.mode not in MODES:
        raise UserError(f"--mode must be one of {', '.join(MODES)}, got {cfg.mode!r}")
    if cfg.activations not in ACTIVATIONS:
        raise UserError(
            f"--activations must be one of {', '.join(ACTIVATIONS)}, got {cfg.activations!r}"
        )
    if cfg.mode == "bf16" and cfg.activations == "int8":
        raise UserError("--activations int8 needs --mode int8; bf16 weights keep float activations")
    if cfg.device not in ("cpu", "auto"):
        raise UserError(f"--device: a quantized model runs on the CPU, got {cfg.device!r}")
    if not cfg.out:
        raise UserError("--out: give the checkpoint folder to write, e.g. --out runs/mr-int8")
    try:
        return _check_out(cfg, Path(cfg.out))
    except OSError as e:  # a name the file system refuses (too long, ...)
        raise UserError(f"--out: {_short(cfg.out)}: {e.strerror or e}") from None


def _short(name: str, n: int = 80) -> str:
    return name if len(name) <= n else name[: n - 3] + "..."


def _check_out(cfg: QuantizeConfig, out: Path) -> Path:
    for parent in out.parents:  # the folders it would be made in: the first that exists
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"--out: {parent} is a file, not a folder")
            break
    if out.exists():
        if not cfg.overwrite:
            raise UserError(f"--out: {out} exists; pass --overwrite to replace it")
        if not out.is_dir() or not (out / "model.json").is_file():
            raise UserError(
                f"--out: {out} is not an lstmkit checkpoint folder; --overwrite replaces only "
                "a checkpoint"
            )
    if Path(cfg.checkpoint).resolve() == out.resolve():
        raise UserError("--out must differ from the run being quantized")
    hit = overlaps(out, checkpoint_folders(cfg.checkpoint))
    if hit is not None:  # --overwrite would replace (or nest into) the run's own checkpoint
        raise UserError(
            f"--out: {out} overlaps the checkpoint {hit} of the run being quantized; "
            "write the quantized run elsewhere"
        )
    return out


def run_quantize(cfg: QuantizeConfig) -> QuantizeResult:
    from lstmkit.nn.quantized import QuantizedLSTM, quantize
    from lstmkit.train.checkpoint import save_checkpoint

    out = _check(cfg)
    task, model, ckpt = load_trained(
        cfg.checkpoint, torch.device("cpu"), allow_nonfinite=cfg.allow_nonfinite
    )
    require(task, "quantize", cfg.checkpoint)
    if ckpt.meta.get("quantized"):
        mode = (
            ckpt.meta["quantized"].get("mode") if isinstance(ckpt.meta["quantized"], dict) else "?"
        )
        raise UserError(
            f"{cfg.checkpoint} is quantized already ({mode}); quantize the float run it came from"
        )
    activations = cfg.activations if cfg.activations != "auto" else None
    try:
        qmodel = quantize(model, cfg.mode, activations)
    except ValueError as e:  # no LSTM in the model (a GRU or RNN encoder)
        raise UserError(f"{cfg.checkpoint}: {e}") from None
    float_bytes = quantized_bytes = 0
    for m in qmodel.modules():
        if isinstance(m, QuantizedLSTM):
            for k, v in m.state_dict().items():
                if k.startswith(("weight_ih", "weight_hh", "weight_hr", "scale_")):
                    quantized_bytes += v.numel() * v.element_size()
                    if not k.startswith("scale_"):
                        float_bytes += v.numel() * 4
    meta = {k: v for k, v in ckpt.meta.items() if k not in _OWN_FIELDS}
    activations = next(m.activations for m in qmodel.modules() if isinstance(m, QuantizedLSTM))
    meta["quantized"] = {
        "mode": cfg.mode,
        "activations": activations,
        "from": str(ckpt.path),
        "from_sha256": ckpt.meta.get("sha256"),
    }
    weights = {k: v.detach().contiguous() for k, v in qmodel.state_dict().items()}
    path = save_checkpoint(out, weights, meta)
    return QuantizeResult(path, cfg.mode, activations, float_bytes, quantized_bytes)
