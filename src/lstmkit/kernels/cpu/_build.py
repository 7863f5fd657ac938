"""What the fused CPU kernel is built from: one description for the two ways it is built.

- At install: ``setup.py`` compiles ``lstm.cpp`` into ``lstmkit/kernels/cpu/_lstm_cpu*.so``
  (``pip install``, editable or not) and writes :data:`RECORD_NAME` beside it.
- At run time, only when that prebuilt module is missing or does not match (a source checkout
  without a build, ``lstm.cpp`` edited since, another torch): ``recurrence.py`` compiles it with
  ``torch.utils.cpp_extension.load`` into a folder named by :func:`jit_key`.

Standard library only: ``setup.py`` loads this file by its path, before lstmkit (and maybe
before torch) can be imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().with_name("lstm.cpp")
# The module name of the install-time build: lstmkit.kernels.cpu._lstm_cpu.
EXT_NAME = "_lstm_cpu"
# Written beside the prebuilt module: what it was built from (see build_record).
RECORD_NAME = EXT_NAME + ".build.json"
# The second extension, the quantized (int8 / bf16 weights) inference recurrence:
# lstmkit.kernels.cpu._lstm_quant, built and recorded the same way (loaded by quant.py).
QUANT_SOURCE = SOURCE.with_name("lstm_quant.cpp")
QUANT_EXT_NAME = "_lstm_quant"
QUANT_RECORD_NAME = QUANT_EXT_NAME + ".build.json"

# -ffast-math lets GCC call glibc's vector expf/tanhf (libmvec) in the gate loops and vectorize
# the GEMV dot products; it is given only to the compiler, not the linker, so crtfastmath (which
# would flush denormals for the whole process) is not linked in. -march=native: the kernel is
# built on the machine that runs it (pip install, or the run-time build, whose folder is keyed
# on the CPU's flags), and the record names the CPU, so a venv copied to another CPU rebuilds.
# -fopenmp makes at::parallel_for (inline in the headers) parallel; the library resolves to the
# libgomp that torch already loaded.
CFLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp"]
LDFLAGS = ["-fopenmp"]


def source_sha256(source: Path = SOURCE) -> str:
    return hashlib.sha256(source.read_bytes()).hexdigest()


def cpu_signature() -> str:
    """A short hash of the CPU's feature flags (what -march=native compiled for)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        flags = platform.processor()
    return hashlib.sha256(f"{platform.machine()} {flags}".encode()).hexdigest()[:16]


def build_record(torch_version: str, source: Path = SOURCE) -> dict[str, object]:
    """What a build of ``source`` depends on: the prebuilt module is used only while these hold.

    The Python version is not here: the module's file name carries its ABI tag
    (``cpython-311-...``), so another Python does not find it at all.
    """
    return {
        "source_sha256": source_sha256(source),
        "cflags": CFLAGS,
        "ldflags": LDFLAGS,
        "torch": torch_version,
        "cpu": cpu_signature(),
    }


def mismatch(
    recorded: dict[str, object], current: dict[str, object], source: Path = SOURCE
) -> str | None:
    """Why a module built as ``recorded`` must not be loaded now (``current``), or None."""
    if recorded.get("source_sha256") != current["source_sha256"]:
        return f"{source.name} changed since install"
    if recorded.get("torch") != current["torch"]:
        return f"built for torch {recorded.get('torch')}, torch is {current['torch']}"
    if recorded.get("cflags") != current["cflags"] or recorded.get("ldflags") != current["ldflags"]:
        return "compiler flags changed since install"
    if recorded.get("cpu") != current["cpu"]:
        return "built on another CPU"
    return None


def read_record(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_record(path: Path, record: dict[str, object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)


def compiler() -> str | None:
    """The C++ compiler torch's builds would run (``$CXX``, else ``c++``), if it exists."""
    return shutil.which(os.environ.get("CXX", "c++"))


def jit_key(
    torch_version: str, ninja: str | None, source: Path = SOURCE, prefix: str = "lstmkit_cpu_lstm_"
) -> str:
    """The run-time build's folder name: one per source, flags, torch, Python, compiler and ninja.

    Torch's ninja build recompiles whenever the recorded command differs, and two ninja binaries
    (the venv's pip ``ninja`` and the system one, chosen by PATH) record different command hashes
    in a shared folder: keyed on the ninja binary too, each gets its own folder and each compiles
    once.
    """
    parts = (
        source_sha256(source),
        " ".join(CFLAGS + LDFLAGS),
        torch_version,
        sys.version,
        sys.prefix,  # one build per environment: venvs sharing the cache do not clash
        os.path.realpath(compiler() or os.environ.get("CXX", "c++")),
        os.path.realpath(ninja) if ninja else "no-ninja",
        cpu_signature(),
    )
    return prefix + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
