"""The C allocator's settings for training and inference on CPU (glibc only).

A training step on CPU allocates and frees the same large buffers every step: gate
activations, the oneDNN workspace, gradients (tens of MB each for a 2-layer LSTM of 384 units
over 32 x 128 tokens). With its defaults, glibc's ``malloc`` serves blocks above a (dynamic,
at most 32 MB) threshold with ``mmap`` and unmaps them on ``free``, and it trims the top of the
heap back to the kernel; the next step maps the memory again and the kernel zeroes every page
on first touch. That page-fault traffic showed as 12% system time and cost 14-19% of the
training step of the tinyshakespeare language model (docs/BENCHMARKS.md, ``make bench-lm``).

:func:`tune_malloc` keeps freed memory in the process for reuse, as jemalloc and tcmalloc do
(which PyTorch's CPU tuning guide and its ``torch.backends.xeon.run_cpu`` launcher preload for
the same reason), through two ``mallopt`` calls:

* ``M_MMAP_MAX = 0``: large blocks come from the heap, not from fresh mappings;
* ``M_TRIM_THRESHOLD = 1 GiB``: the heap is not handed back to the kernel after each step.

The price is memory: the process keeps its peak heap (peak resident memory -3% to +11% in
training runs of the language, sentiment and translation models). The ``lstmkit`` command
calls it at start; the library never does on import (a process-wide setting is the
application's choice).

Left alone, and reported so: other platforms and C libraries, another allocator in
``LD_PRELOAD`` (jemalloc, tcmalloc, mimalloc), the user's own ``MALLOC_*_`` environment
variables or ``glibc.malloc`` tunables, and ``LSTMKIT_MALLOC=system`` (the opt-out).
"""

from __future__ import annotations

import ctypes
import os
import platform

from lstmkit.utils.errors import UserError

ENV = "LSTMKIT_MALLOC"
M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_MAX = -4
TRIM_THRESHOLD = 1 << 30
_PRELOADED = ("jemalloc", "tcmalloc", "mimalloc")
_GLIBC_ENV = (
    "MALLOC_MMAP_MAX_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_ARENA_MAX",
)

_state = "system (not tuned)"


def tune_malloc(environ: dict[str, str] | None = None) -> str:
    """Set glibc's allocator to keep freed memory (see the module docstring); returns what it
    did, as :func:`malloc_state` will report it: ``"glibc tuned (...)"`` or
    ``"system (...)"`` with the reason it was left alone. An ``LSTMKIT_MALLOC`` other than
    ``tuned`` or ``system`` is a :class:`UserError`."""
    global _state
    env = os.environ if environ is None else environ
    _state = _tune(env)
    return _state


def malloc_state() -> str:
    """What the last :func:`tune_malloc` did (``"system (not tuned)"`` before any call)."""
    return _state


def _tune(env) -> str:
    choice = env.get(ENV, "").strip().lower()
    if choice == "system":
        return f"system ({ENV}=system)"
    if choice not in ("", "tuned"):
        raise UserError(f"{ENV}={env[ENV]!r} is not understood: use 'tuned' or 'system'")
    preload = env.get("LD_PRELOAD", "")
    for name in _PRELOADED:
        if name in preload:
            return f"system ({name} preloaded)"
    user = [k for k in _GLIBC_ENV if k in env]
    if "glibc.malloc." in env.get("GLIBC_TUNABLES", ""):
        user.append("GLIBC_TUNABLES")
    if user:
        return f"system (the user's {', '.join(user)})"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "system (not glibc)"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "system (mallopt not found)"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(M_MMAP_MAX, 0) != 1 or mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return "system (mallopt refused)"
    return "glibc tuned (M_MMAP_MAX=0, M_TRIM_THRESHOLD=1 GiB)"
