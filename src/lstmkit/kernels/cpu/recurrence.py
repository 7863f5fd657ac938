"""The fused CPU LSTM recurrence: the C++ extension built at install, and its autograd Function.

The kernel (``lstm.cpp`` beside this file) mirrors :func:`lstmkit.reference.lstm.
recurrence_forward` and :func:`lstmkit.reference.backward.recurrence_backward` step by step,
every variant included; :func:`fused_forward` and :func:`fused_backward` have the same
signatures and results.

``pip install`` compiles it (``setup.py``) into ``lstmkit.kernels.cpu._lstm_cpu`` with a record
of what it was built from (``_build.py``). :func:`load_extension` loads that module when the
record matches this ``lstm.cpp``, torch and CPU. Otherwise (a source checkout without a build,
``lstm.cpp`` edited since install, another torch) it compiles the kernel once with
``torch.utils.cpp_extension.load``, saying so in one line on stderr first, into a folder of
``TORCH_EXTENSIONS_DIR`` (by default ``~/.cache/torch_extensions``) named by the hash of the
source, flags, torch, Python, compiler and ninja binary; a later process with the same inputs
loads that build without running the compiler or ninja. Importing lstmkit compiles nothing.

Environment: ``LSTMKIT_NO_PREBUILT=1`` ignores the install-time module; ``LSTMKIT_FORBID_JIT=1``
makes a run-time compile an error instead (``make test`` sets it, so a test session never spends
a minute compiling). :func:`load_extension` raises on failure; callers that can fall back ask
:func:`is_available` and report :func:`build_error` (one line).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
import threading
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

from lstmkit.kernels.cpu import _build
from lstmkit.reference.backward import recurrence_function
from lstmkit.reference.options import CellOptions
from lstmkit.reference.recurrence import (
    GRAD_FIELDS,
    RecurrenceGrads,
    RecurrenceInputs,
    SavedTensors,
)

__all__ = [
    "FusedLSTMRecurrenceFunction",
    "build_error",
    "fused_backward",
    "fused_forward",
    "is_available",
    "kernel_origin",
    "load_extension",
    "step_plan",
]

_SOURCE = _build.SOURCE
_CFLAGS = _build.CFLAGS
_LDFLAGS = _build.LDFLAGS
_PREBUILT = f"lstmkit.kernels.cpu.{_build.EXT_NAME}"
# Written into a run-time build's folder once its module imported: the folder is complete.
_DONE = "lstmkit-built"
_lock = threading.Lock()
_module: ModuleType | None = None
_origin: str | None = None
_available: bool | None = None
_error: str | None = None


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _ensure_ninja() -> str | None:
    """The ninja binary torch will run: PATH's, else the ``ninja`` package's (put on PATH)."""
    found = shutil.which("ninja")
    if found is not None:
        return found
    try:
        import ninja
    except ImportError:
        return None  # torch then reports that ninja is missing
    bin_dir = getattr(ninja, "BIN_DIR", None)
    if bin_dir:
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    return shutil.which("ninja")


def _build_name() -> str:
    """The run-time build's module and folder name (see :func:`lstmkit.kernels.cpu._build.
    jit_key`): one per source, flags, torch, Python, environment, compiler, ninja and CPU."""
    return _build.jit_key(torch.__version__, shutil.which("ninja"), _SOURCE)


def _load_prebuilt() -> tuple[ModuleType | None, str]:
    """The module ``pip install`` built, when it matches what would be built now; else None and
    why not (for the one line said before compiling)."""
    if _flag("LSTMKIT_NO_PREBUILT"):
        return None, "LSTMKIT_NO_PREBUILT is set"
    spec = importlib.util.find_spec(_PREBUILT)
    if spec is None or not spec.origin:
        return None, "no kernel was built at install"
    record = _build.read_record(Path(spec.origin).with_name(_build.RECORD_NAME))
    if record is None:
        return None, f"the installed kernel has no readable {_build.RECORD_NAME}"
    why = _build.mismatch(record, _build.build_record(torch.__version__, _SOURCE))
    if why is not None:
        return None, why
    try:
        return importlib.import_module(_PREBUILT), ""
    except ImportError as e:
        return None, f"the installed kernel does not load: {e}"


def _import_from(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _one_line(message: str) -> str:
    """The line of a compiler's output that says what went wrong (the first error), else the
    first line: what the dispatch warning and a test skip print."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    err = next((ln for ln in lines if "error:" in ln or "Error:" in ln), None)
    first = lines[0] if lines else message
    return first if err is None or err == first else f"{first} ... {err}"


class _NotBuilt(RuntimeError):
    """The run-time build was not tried; the message says why in one line."""


def _jit_build(why: str) -> tuple[ModuleType, str]:
    """Compile ``lstm.cpp`` at run time (once per key; a later process only imports it)."""
    from torch.utils import cpp_extension

    ninja = _ensure_ninja()
    name = _build.jit_key(torch.__version__, ninja, _SOURCE)
    # torch's own rule for its extensions folder (get_default_build_root ignores the variable)
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()
    build_dir = Path(root) / name
    built = build_dir / f"{name}.so"
    if (build_dir / _DONE).is_file() and built.is_file():
        return _import_from(built, name), str(built)
    if _flag("LSTMKIT_FORBID_JIT"):
        raise _NotBuilt(
            f"the fused CPU kernel would be compiled at run time ({why}), and LSTMKIT_FORBID_JIT "
            "is set; run `make` (pip install --no-build-isolation -e .) to build it"
        )
    cxx = _build.compiler()
    if cxx is None:
        raise _NotBuilt(
            f"no C++ compiler to build {_SOURCE.name} ({os.environ.get('CXX', 'c++')} not found; "
            f"{why})"
        )
    if ninja is None:
        raise _NotBuilt(f"ninja not found to build {_SOURCE.name} ({why}); pip install ninja")
    print(
        f"lstmkit: building the fused CPU kernel ({why}); about a minute, once "
        f"(cached in {build_dir})",
        file=sys.stderr,
        flush=True,
    )
    build_dir.mkdir(parents=True, exist_ok=True)
    module = cpp_extension.load(
        name=name,
        sources=[str(_SOURCE)],
        extra_cflags=_CFLAGS,
        extra_ldflags=_LDFLAGS,
        build_directory=str(build_dir),
        verbose=False,
    )
    (build_dir / _DONE).write_text(f"{_SOURCE}\n")
    return module, str(built)


def load_extension() -> ModuleType:
    """The C++ extension: the install-time build when it matches, else a run-time build.

    Raises :class:`RuntimeError` with the compiler's message when the build fails.
    """
    global _module, _origin
    if _module is not None:
        return _module
    with _lock:
        if _module is None:
            module, why = _load_prebuilt()
            if module is not None:
                _module, _origin = module, str(module.__file__)
                return _module
            try:
                _module, _origin = _jit_build(why)
            except _NotBuilt:
                raise
            except Exception as e:  # the compiler's output is in the message
                raise RuntimeError(
                    f"building the fused CPU LSTM extension ({_SOURCE.name}) failed: {e}"
                ) from e
    return _module


def kernel_origin() -> str | None:
    """The file of the loaded extension (the prebuilt module or a run-time build), else None."""
    return _origin


def is_available() -> bool:
    """Whether the extension loads (or builds) here; tried once per process."""
    global _available, _error
    if _available is None:
        try:
            load_extension()
            _available = True
        except RuntimeError as e:
            _available, _error = False, _one_line(str(e))
    return _available


# What torch.compiler.assume_constant_result marks (without importing Dynamo, 1.5 s): Dynamo
# calls it once, eagerly, while tracing and keeps the answer, instead of tracing into the
# extension's loading (file reads, hashing, a compile), which it cannot follow.
is_available._dynamo_marked_constant = True  # type: ignore[attr-defined]


def build_error() -> str | None:
    """Why the extension is unavailable (after :func:`is_available` returned False), in one
    line, else None."""
    return _error


def fused_forward(
    inputs: RecurrenceInputs,
    batch_sizes: Tensor | None,
    reverse: bool,
    opts: CellOptions,
    save: bool,
) -> tuple[Tensor, Tensor, Tensor, SavedTensors | None]:
    """:func:`lstmkit.reference.lstm.recurrence_forward`, fused.

    Returns ``out (T, B, P), h_n (B, P), c_n (B, H)`` and, when ``save``, the
    :class:`~lstmkit.reference.recurrence.SavedTensors` :func:`fused_backward` needs (``c_out``
    is ``c_new`` itself without the cell layer norm), else None. The extension reads the
    fields of ``inputs`` and ``opts`` by name.
    """
    out, h_n, c_n, saved = load_extension().forward(
        inputs, batch_sizes, bool(reverse), opts, bool(save)
    )
    return out, h_n, c_n, None if saved is None else SavedTensors(**saved)


def fused_backward(
    inputs: RecurrenceInputs,
    saved: SavedTensors,
    dout: Tensor,  # (T, B, P)
    dh_n: Tensor,  # (B, P)
    dc_n: Tensor,  # (B, H)
    batch_sizes: Tensor | None,
    reverse: bool,
    opts: CellOptions,
    needs_grad: tuple[bool, ...] | None = None,
) -> RecurrenceGrads:
    """:func:`lstmkit.reference.backward.recurrence_backward`, fused.

    Returns the gradients of ``xg .. ln_bias_c``, None where the input is None. ``needs_grad``
    (one flag per field of :class:`~lstmkit.reference.recurrence.RecurrenceGrads`) lets it skip
    the weight reductions nobody asked for; those come back as None too.
    """
    needs = None if needs_grad is None else RecurrenceGrads(*(bool(x) for x in needs_grad))
    grads = load_extension().backward(
        inputs, saved, dout, dh_n, dc_n, batch_sizes, bool(reverse), opts, needs
    )
    return RecurrenceGrads(
        *(
            grads[k] if getattr(inputs, k) is not None and (needs is None or needs[n]) else None
            for n, k in enumerate(GRAD_FIELDS)
        )
    )


def step_plan(
    layers: list[list[Tensor | None]],
    num_layers: int,
    dirs: int,
    input_size: int,
    hidden_size: int,
    proj_size: int,
    batch_first: bool,
    coupled: bool,
    forget_gate: bool,
    eps: float,
    zoneout_h: float,
    zoneout_c: float,
):
    """The extension's ``StepPlan``: one time step of a whole (eval-mode) LSTM stack in one C++
    call, for streaming callers without autograd.

    ``layers`` holds, per layer and direction (``k * dirs + d``), the twelve tensors
    ``weight_ih, bias_ih, ln_weight_ih, weight_hh, bias_hh, weight_hr, weight_ci, weight_cf,
    weight_co, ln_weight_hh, ln_weight_c, ln_bias_c`` (None where the variant has none). The
    plan keeps these tensors (not copies). Calling it with ``(input, hx)`` as
    :meth:`lstmkit.LSTM.forward` takes them returns ``(output, (h_n, c_n))``, the same
    numbers as the general path (the layer's ``xg = LN(x W_ih^T) gamma_ih + b_ih`` then
    :func:`fused_forward`'s step; zoneout at its eval value), or None for an input it does
    not take: ``T != 1``, another dtype or device, a tensor subclass, a shape that does not
    fit, autocast or grad mode on. The caller then runs the general path, which also raises
    the errors.
    """
    return load_extension().StepPlan(
        layers,
        num_layers,
        dirs,
        input_size,
        hidden_size,
        proj_size,
        batch_first,
        coupled,
        forget_gate,
        eps,
        zoneout_h,
        zoneout_c,
    )


FusedLSTMRecurrenceFunction = recurrence_function(
    "FusedLSTMRecurrenceFunction",
    """The fused CPU recurrence as an autograd Function (the C++ backward is not itself
    differentiable).

    Reference: :class:`lstmkit.reference.backward.LSTMRecurrenceFunction`, with the same
    ``run(inputs, batch_sizes, reverse, opts)`` returning ``out, h_n, c_n``.
    """,
    fused_forward,
    fused_backward,
    backend="cpu",
)
