"""Builds the fused CPU kernels (src/lstmkit/kernels/cpu/lstm.cpp, and lstm_quant.cpp, the
quantized inference kernel) when lstmkit is installed.

Everything else about the package is in pyproject.toml; this file only adds the C++ extensions
``lstmkit.kernels.cpu._lstm_cpu`` and ``lstmkit.kernels.cpu._lstm_quant``, as compiled
PyTorch extensions are usually shipped (``torch.utils.cpp_extension.CppExtension`` +
``BuildExtension``), so that importing lstmkit never compiles. ``pip install
--no-build-isolation -e .`` (what the Makefile runs) builds them in place in src/; see
pyproject.toml's [build-system] for why without build isolation.

The build never makes the installation fail: without torch in the build environment (an
isolated build), without a C++ compiler, or when the compile fails, it prints one line and
installs the package without the module. lstmkit then compiles the kernel at first use if it
can (saying so), or runs the slower PyTorch loop with its one warning line.

Beside each module it writes its record (``_lstm_cpu.build.json``, ``_lstm_quant.build.json``):
the sha256 of its source, the flags, the torch version and the CPU it was built from. lstmkit
loads a module only while these match; an edited source (or another torch) falls back to the
run-time build. An install whose modules and records already match (a second ``pip install
-e .``) does not compile again; one whose lstm_quant.cpp alone changed compiles only that.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import warnings
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
PKG_DIR = ROOT / "src" / "lstmkit" / "kernels" / "cpu"
EXT = "lstmkit.kernels.cpu._lstm_cpu"
QUANT_EXT = "lstmkit.kernels.cpu._lstm_quant"  # the quantized inference kernel, lstm_quant.cpp


def _load_build_module():
    # By path: lstmkit itself is not importable here (its dependencies may not be installed yet).
    spec = importlib.util.spec_from_file_location("_lstmkit_build", PKG_DIR / "_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build_module()


def _say(message: str) -> None:
    print(f"lstmkit: {message}", file=sys.stderr, flush=True)


def _last_line(message: str) -> str:
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


def _kernel_commands() -> tuple[list, dict]:
    # torch is imported here before pip has installed numpy (no build isolation: the
    # dependencies come after the build); torch's warning about it means nothing for the build.
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    try:
        import torch
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        _say(
            "torch is not importable in the build environment, so the fused CPU kernel is not "
            "built at install (install torch first, then pip install --no-build-isolation); "
            "lstmkit will build it at first use"
        )
        return [], {}

    # module name -> (source, record file name)
    sources = {
        EXT: (build.SOURCE, build.RECORD_NAME),
        QUANT_EXT: (build.QUANT_SOURCE, build.QUANT_RECORD_NAME),
    }

    class BuildKernel(BuildExtension):
        """BuildExtension that records what it built, skips a module that is up to date, and
        installs without a module it cannot build."""

        def build_extensions(self) -> None:
            self._kernel_reused: set[str] = set()
            todo = []  # (ext, out, record, record name) of the modules to compile
            for ext in self.extensions:
                source, record_name = sources[ext.name]
                out = Path(self.get_ext_fullpath(ext.name))  # in build_lib (copied in place later)
                record = build.build_record(torch.__version__, source)
                for have in (out, PKG_DIR / out.name):
                    if have.is_file() and build.read_record(have.with_name(record_name)) == record:
                        _say(f"{source.name} is up to date ({have.name}), not compiled again")
                        if have != out:
                            if not self.editable_mode:  # a wheel: take the in-place build along
                                out.parent.mkdir(parents=True, exist_ok=True)
                                shutil.copyfile(have, out)
                                build.write_record(out.with_name(record_name), record)
                            else:  # editable: the module in src/ stays as it is
                                self._kernel_reused.add(ext.name)
                        break
                else:
                    todo.append((ext, out, record, record_name))
            if not todo:
                return
            for _, out, _, record_name in todo:  # a failed compile must not leave an old one
                for stale in (out, out.with_name(record_name)):
                    stale.unlink(missing_ok=True)
            why = None
            names = " and ".join(sources[ext.name][0].name for ext, *_ in todo)
            if build.compiler() is None:
                why = "no C++ compiler found"
            else:
                _say(f"compiling the CPU kernels ({names}, about a minute)")
                every = self.extensions
                self.extensions = [ext for ext, *_ in todo]
                try:
                    super().build_extensions()
                except Exception as e:  # the compiler's output was printed above it
                    why = f"the compile failed: {_last_line(str(e))}"
                finally:
                    self.extensions = every
            failed = []
            for ext, out, record, record_name in todo:
                if why is None and out.is_file():
                    build.write_record(out.with_name(record_name), record)
                else:
                    failed.append(sources[ext.name][0].name)
            if failed:
                _say(
                    f"the fused CPU kernel was not built ({why or 'the compile failed'}) from "
                    f"{', '.join(failed)}; installing without it: lstmkit will run the slower "
                    "PyTorch loop (and say so)"
                )

        def copy_extensions_to_source(self) -> None:
            """Editable install: put each module and its record into src/. Each file is replaced
            by a rename, not rewritten in place: a process that has the old module loaded
            (mapped) keeps its copy intact."""
            for ext in self.extensions:
                if ext.name in getattr(self, "_kernel_reused", set()):
                    continue
                record_name = sources[ext.name][1]
                self.inplace = False
                out = Path(self.get_ext_fullpath(ext.name))
                self.inplace = True
                pairs = [(out, PKG_DIR / out.name)]
                pairs.append((out.with_name(record_name), PKG_DIR / record_name))
                for src, dst in pairs:
                    if src.is_file():
                        tmp = dst.with_name(dst.name + ".tmp")
                        shutil.copyfile(src, tmp)
                        os.replace(tmp, dst)
                    else:  # not built: an old module in src/ would not match this source
                        dst.unlink(missing_ok=True)

    # -g0 after the -g of Python's own flags: the run-time build has no debug information
    # either, and without it the module is 0.5 MB instead of 12 MB and compiles faster.
    # optional: a failed build leaves no module to copy in place; not an error.
    exts = [
        CppExtension(
            name,
            sources=[str(source.relative_to(ROOT))],
            extra_compile_args={"cxx": [*build.CFLAGS, "-g0"]},
            extra_link_args=build.LDFLAGS,
            optional=True,
        )
        for name, (source, _) in sources.items()
    ]
    return exts, {"build_ext": BuildKernel}


ext_modules, cmdclass = _kernel_commands()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
