"""The fused CPU LSTM recurrence: a C++ extension built on first use, and its autograd Function.

The kernel (``lstm.cpp`` beside this file) mirrors :func:`lstmkit.reference.backward.
recurrence_forward` and :func:`~lstmkit.reference.backward.recurrence_backward` step by step,
every variant included; :func:`fused_forward` and :func:`fused_backward` have the same
signatures and results. It is compiled with ``torch.utils.cpp_extension.load`` the first time
it is needed in a process (about a minute) and cached by torch in its extension directory
(``TORCH_EXTENSIONS_DIR``, by default under ``~/.cache/torch_extensions``), so later processes
only load it.

Building needs a C++ compiler and ninja. :func:`load_extension` raises on failure; callers that
can fall back ask :func:`is_available` and report :func:`build_error`.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
import sysconfig
import threading
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

from lstmkit.reference.backward import (
    N_GRAD_ARGS,
    recurrence_function,
)
from lstmkit.reference.lstm import CellOptions

__all__ = [
    "FusedLSTMRecurrenceFunction",
    "build_error",
    "fused_backward",
    "fused_forward",
    "is_available",
    "load_extension",
]

_SOURCE = Path(__file__).resolve().with_name("lstm.cpp")
# -ffast-math lets GCC call glibc's vector expf/tanhf (libmvec) in the gate loops and vectorize
# the GEMV dot products; it is given only to the compiler, not the linker, so crtfastmath (which
# would flush denormals for the whole process) is not linked in. -march=native is safe because
# the build directory is per build environment (see _build_name). -fopenmp makes
# at::parallel_for (inline in the headers) parallel; the library resolves to the libgomp that
# torch already loaded.
_CFLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp"]
_LDFLAGS = ["-fopenmp"]
# Order of the saved tensors returned by the extension after out, h_n, c_n.
_SAVED_NAMES = (
    "gates",
    "c_prev",
    "h_in",
    "c_new",
    "c_out",
    "r_hat",
    "rstd_hh",
    "c_hat",
    "rstd_c",
    "m",
)

_lock = threading.Lock()
_module: ModuleType | None = None
_available: bool | None = None
_error: str | None = None


def _cpu_signature() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        return platform.processor()


def _build_name() -> str:
    """The extension's name, one per build environment (compiler, CPU, Python, torch).

    Torch keys its cache directory on the name alone. Environments sharing that directory (a
    shared home, other machines, another CXX) would otherwise rebuild over each other's objects
    on every switch (ninja sees a new command line), and a -march=native build could reach a CPU
    it was not built for.
    """
    env = "|".join(
        (
            os.environ.get("CXX", "c++"),
            sys.prefix,  # one build per environment: venvs sharing the cache do not rebuild
            sysconfig.get_paths()["include"],
            torch.__version__,
            platform.machine(),
            _cpu_signature(),
            " ".join(_CFLAGS + _LDFLAGS),
        )
    )
    return "lstmkit_cpu_lstm_" + hashlib.sha1(env.encode()).hexdigest()[:10]


def _ensure_ninja() -> None:
    """Put the ``ninja`` package's binary on PATH when the venv's bin is not (torch needs it)."""
    if shutil.which("ninja") is not None:
        return
    try:
        import ninja
    except ImportError:
        return  # torch then reports that ninja is missing
    bin_dir = getattr(ninja, "BIN_DIR", None)
    if bin_dir:
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def load_extension() -> ModuleType:
    """Build (once per process; cached on disk by torch) and return the C++ extension.

    Raises :class:`RuntimeError` with the compiler's message when the build fails.
    """
    global _module
    if _module is not None:
        return _module
    with _lock:
        if _module is None:
            from torch.utils import cpp_extension

            try:
                _ensure_ninja()
                _module = cpp_extension.load(
                    name=_build_name(),
                    sources=[str(_SOURCE)],
                    extra_cflags=_CFLAGS,
                    extra_ldflags=_LDFLAGS,
                    verbose=False,
                )
            except Exception as e:  # the compiler's output is in the message
                raise RuntimeError(
                    f"building the fused CPU LSTM extension ({_SOURCE.name}) failed: {e}"
                ) from e
    return _module


def is_available() -> bool:
    """Whether the extension builds and loads here; tried once per process."""
    global _available, _error
    if _available is None:
        try:
            load_extension()
            _available = True
        except RuntimeError as e:
            _available, _error = False, str(e)
    return _available


def build_error() -> str | None:
    """Why the extension is unavailable (after :func:`is_available` returned False), else None."""
    return _error


def fused_forward(
    args: tuple[Tensor | None, ...],
    batch_sizes: Tensor | None,
    reverse: bool,
    opts: CellOptions,
    save: bool,
) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
    """:func:`lstmkit.reference.backward.recurrence_forward`, fused.

    ``args`` in :data:`~lstmkit.reference.backward.RECURRENCE_ARGS` order. Returns ``out (T, B,
    P), h_n (B, P), c_n (B, H)`` and, when ``save``, the tensors :func:`fused_backward` needs
    (the reference's names; ``c_out`` is ``c_new`` itself without the cell layer norm).
    """
    ext = load_extension()
    res = ext.forward(
        *args,
        batch_sizes,
        bool(reverse),
        opts.coupled,
        opts.forget_gate,
        float(opts.layer_norm_eps),
        bool(save),
    )
    out, h_n, c_n = res[:3]
    saved = (
        {k: v for k, v in zip(_SAVED_NAMES, res[3:], strict=True) if v is not None} if save else {}
    )
    return out, h_n, c_n, saved


def fused_backward(
    args: tuple[Tensor | None, ...],
    saved: dict[str, Tensor],
    dout: Tensor,  # (T, B, P)
    dh_n: Tensor,  # (B, P)
    dc_n: Tensor,  # (B, H)
    batch_sizes: Tensor | None,
    reverse: bool,
    opts: CellOptions,
    needs_grad: tuple[bool, ...] | None = None,
) -> tuple[Tensor | None, ...]:
    """:func:`lstmkit.reference.backward.recurrence_backward`, fused.

    Returns the gradients of ``xg .. ln_bias_c`` (12, in
    :data:`~lstmkit.reference.backward.RECURRENCE_ARGS` order), None where the argument is None.
    ``needs_grad`` (12 flags) lets it skip the weight reductions nobody asked for; those come
    back as None too.
    """
    ext = load_extension()
    need = [True] * N_GRAD_ARGS if needs_grad is None else [bool(x) for x in needs_grad]
    grads = ext.backward(
        *args,
        *(saved.get(k) for k in _SAVED_NAMES),
        dout,
        dh_n,
        dc_n,
        batch_sizes,
        bool(reverse),
        opts.coupled,
        opts.forget_gate,
        float(opts.layer_norm_eps),
        need,
    )
    return tuple(
        g if a is not None and n else None
        for g, a, n in zip(grads, args[:N_GRAD_ARGS], need, strict=True)
    )


FusedLSTMRecurrenceFunction = recurrence_function(
    "FusedLSTMRecurrenceFunction",
    """The fused CPU recurrence as an autograd Function (the C++ backward is not itself
    differentiable).

    Reference: :class:`lstmkit.reference.backward.LSTMRecurrenceFunction`, with the same
    ``apply(batch_sizes, reverse, opts, *tensors)`` convention returning ``out, h_n, c_n``.
    """,
    fused_forward,
    lambda args, saved, dout, dh_n, dc_n, bs, rev, opts, needs: fused_backward(
        args, saved, dout, dh_n, dc_n, bs, rev, opts, needs_grad=needs
    ),
    backend="cpu",
)
