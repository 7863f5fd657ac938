"""How the fused CPU kernel is found, built and rebuilt (issue 16, part 1).

The kernel is built by ``pip install`` (setup.py) and loaded from there while its record matches;
otherwise it is compiled at run time once per source, flags, torch, Python, compiler and ninja
binary, after one line on stderr. No test here compiles: the run-time build is replaced by a
fake, and the setup.py tests run without a compiler.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from lstmkit.kernels.cpu import _build, recurrence

REPO = Path(__file__).resolve().parents[3]
PKG_DIR = Path(recurrence.__file__).resolve().parent


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """recurrence as a new process sees it: nothing loaded yet, its own extensions folder."""
    for name in ("_module", "_origin", "_available", "_error"):
        monkeypatch.setattr(recurrence, name, None)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    monkeypatch.delenv("LSTMKIT_FORBID_JIT", raising=False)
    monkeypatch.delenv("LSTMKIT_NO_PREBUILT", raising=False)
    return recurrence


@pytest.fixture
def fake_jit(monkeypatch):
    """Replace the compiler run (torch.utils.cpp_extension.load) and the import of its result;
    returns the list of the build folders that were 'compiled'."""
    from torch.utils import cpp_extension

    compiled: list[Path] = []

    def load(name, sources, extra_cflags, extra_ldflags, build_directory, verbose):
        assert sources == [str(recurrence._SOURCE)] and extra_cflags == _build.CFLAGS
        compiled.append(Path(build_directory))
        (Path(build_directory) / f"{name}.so").write_bytes(b"not really a module")
        return f"module built in {build_directory}"

    monkeypatch.setattr(cpp_extension, "load", load)
    monkeypatch.setattr(recurrence, "_import_from", lambda path, name: f"module from {path}")
    return compiled


def _edited_source(tmp_path: Path, note: str = "edited") -> Path:
    src = tmp_path / "lstm.cpp"
    src.write_text(_build.SOURCE.read_text() + f"\n// {note}\n")
    return src


def test_installed_module_is_loaded_when_it_matches(fresh):
    module, why = fresh._load_prebuilt()
    if module is None:
        # `make test` installs first (and sets LSTMKIT_FORBID_JIT), so there it must be there
        if os.environ.get("LSTMKIT_FORBID_JIT"):
            pytest.fail(f"make test: the kernel built at install is not usable: {why}")
        pytest.skip(f"no matching install-time kernel here ({why}); `make` builds it")
    assert module.__name__ == "lstmkit.kernels.cpu._lstm_cpu"
    record = _build.read_record(Path(module.__file__).with_name(_build.RECORD_NAME))
    assert record == _build.build_record(torch.__version__)
    fresh.load_extension()
    assert fresh.kernel_origin() == module.__file__  # not a run-time build


def test_edited_source_is_built_once_with_one_line(fresh, fake_jit, monkeypatch, tmp_path, capfd):
    monkeypatch.setattr(fresh, "_SOURCE", _edited_source(tmp_path))
    assert fresh.load_extension().startswith("module built in")
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lstmkit: building the fused CPU kernel ("), err
    installed = importlib.util.find_spec("lstmkit.kernels.cpu._lstm_cpu") is not None
    reason = "lstm.cpp changed since install" if installed else "no kernel was built at install"
    assert reason in err and "about a minute, once" in err
    assert len(fake_jit) == 1 and fake_jit[0].parent == tmp_path / "ext"

    # a new process, same source: the build is imported from its folder, nothing compiled or said
    for name in ("_module", "_origin"):
        monkeypatch.setattr(fresh, name, None)
    assert fresh.load_extension() == f"module from {fake_jit[0] / fake_jit[0].name}.so"
    assert len(fake_jit) == 1 and capfd.readouterr().err == ""

    # another edit: another folder, compiled once more
    monkeypatch.setattr(fresh, "_SOURCE", _edited_source(tmp_path, "edited again"))
    for name in ("_module", "_origin"):
        monkeypatch.setattr(fresh, name, None)
    fresh.load_extension()
    assert len(fake_jit) == 2 and fake_jit[1] != fake_jit[0]
    assert capfd.readouterr().err.count("\n") == 1


def test_forbid_jit_refuses_the_run_time_build(fresh, fake_jit, monkeypatch, tmp_path, capfd):
    monkeypatch.setattr(fresh, "_SOURCE", _edited_source(tmp_path))
    monkeypatch.setenv("LSTMKIT_FORBID_JIT", "1")
    assert not fresh.is_available()
    assert "LSTMKIT_FORBID_JIT is set" in fresh.build_error()
    assert "\n" not in fresh.build_error()
    assert fake_jit == [] and capfd.readouterr().err == ""


def test_no_prebuilt_env_skips_the_installed_module(fresh, fake_jit, monkeypatch, capfd):
    monkeypatch.setenv("LSTMKIT_NO_PREBUILT", "1")
    fresh.load_extension()
    assert len(fake_jit) == 1
    assert "(LSTMKIT_NO_PREBUILT is set)" in capfd.readouterr().err


def test_a_stale_record_names_what_changed():
    now = _build.build_record("2.13.0+cpu")
    assert _build.mismatch(dict(now), now) is None
    assert _build.mismatch({**now, "source_sha256": "0" * 64}, now) == (
        "lstm.cpp changed since install"
    )
    assert "torch 2.12.0" in _build.mismatch({**now, "torch": "2.12.0"}, now)
    assert "flags" in _build.mismatch({**now, "cflags": ["-O2"]}, now)
    assert "CPU" in _build.mismatch({**now, "cpu": "x"}, now)


def test_build_folder_is_keyed_on_the_ninja_binary(tmp_path):
    """The venv's pip ninja and the system ninja record different command hashes: one folder
    shared by both recompiled at every switch (12 compiles in 40 minutes, issue 16)."""
    v = torch.__version__
    assert _build.jit_key(v, "/usr/bin/ninja") == _build.jit_key(v, "/usr/bin/ninja")
    assert _build.jit_key(v, "/usr/bin/ninja") != _build.jit_key(v, "/work/.venv/bin/ninja")
    link = tmp_path / "ninja"
    link.symlink_to("/usr/bin/ninja")  # the same binary by another path: the same build
    assert _build.jit_key(v, str(link)) == _build.jit_key(v, "/usr/bin/ninja")
    assert _build.jit_key(v, "/usr/bin/ninja") != _build.jit_key("2.12.0", "/usr/bin/ninja")
    edited = _edited_source(tmp_path)
    assert _build.jit_key(v, "/usr/bin/ninja", edited) != _build.jit_key(v, "/usr/bin/ninja")


def _env_without_compiler(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LSTMKIT_")}
    bare = tmp_path / "bin"  # a PATH with no c++, g++ or ninja
    bare.mkdir()
    env.update(
        PATH=str(bare),
        CXX="/nonexistent/c++",
        TORCH_EXTENSIONS_DIR=str(tmp_path / "ext"),
        LSTMKIT_NO_PREBUILT="1",
    )
    return env


@pytest.mark.slow
def test_without_a_compiler_the_torch_loop_runs_with_one_warning(tmp_path):
    code = textwrap.dedent(
        """
        import torch, lstmkit
        torch.manual_seed(0)
        lstm = lstmkit.LSTM(3, 5, layer_norm=True)
        ref = lstmkit.LSTM(3, 5, layer_norm=True, backend="reference")
        ref.load_state_dict(lstm.state_dict())
        x = torch.randn(4, 2, 3)
        out, _ = lstm(x)
        torch.testing.assert_close(out, ref(x)[0])
        print("ran", tuple(out.shape))
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        env=_env_without_compiler(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ran (4, 2, 5)"
    said = [ln for ln in res.stderr.splitlines() if "lstmkit:" in ln]
    assert len(said) == 1, res.stderr
    assert "fused CPU kernel unavailable" in said[0] and "no C++ compiler" in said[0]
    assert "building the fused CPU kernel" not in res.stderr
    assert not (tmp_path / "ext").exists()  # nothing was attempted on disk


def _project_copy(tmp_path: Path) -> Path:
    """setup.py, pyproject.toml and the package sources, without any built module."""
    dst = tmp_path / "proj"
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE"):
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, dst / name)
    shutil.copytree(
        REPO / "src",
        dst / "src",
        ignore=shutil.ignore_patterns(
            "__pycache__", "*.so", _build.RECORD_NAME, _build.QUANT_RECORD_NAME, "*.egg-info"
        ),
    )
    return dst


def _build_ext(proj: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "-b", str(tmp_path / "lib")],
        cwd=proj,
        env={**_env_without_compiler(tmp_path), "PATH": os.environ["PATH"]},  # CXX still missing
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.slow
def test_setup_installs_without_a_compiler(tmp_path):
    proj = _project_copy(tmp_path)
    res = _build_ext(proj, tmp_path)
    assert res.returncode == 0, res.stderr
    said = [ln for ln in res.stderr.splitlines() if ln.startswith("lstmkit:")]
    assert len(said) == 1 and "not built (no C++ compiler found)" in said[0], res.stderr
    assert not list((tmp_path / "lib").rglob("*.so"))


@pytest.mark.slow
def test_setup_does_not_recompile_a_matching_module(tmp_path):
    """A second install reuses the in-place module whose record matches (here a stand-in file;
    with CXX=/nonexistent any compile would fail)."""
    proj = _project_copy(tmp_path)
    cpu = proj / "src/lstmkit/kernels/cpu"
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    for stem, record_name, source in (
        ("_lstm_cpu", _build.RECORD_NAME, "lstm.cpp"),
        ("_lstm_quant", _build.QUANT_RECORD_NAME, "lstm_quant.cpp"),
    ):
        (cpu / f"{stem}{suffix}").write_bytes(b"stand-in module")
        _build.write_record(cpu / record_name, _build.build_record(torch.__version__, cpu / source))
    res = _build_ext(proj, tmp_path)
    assert res.returncode == 0, res.stderr
    assert "up to date" in res.stderr and "not built" not in res.stderr, res.stderr
    built, _ = sorted((tmp_path / "lib").rglob("*.so"))  # _lstm_cpu, _lstm_quant
    assert built.name.startswith("_lstm_cpu")
    assert built.read_bytes() == b"stand-in module"
    assert _build.read_record(built.with_name(_build.RECORD_NAME)) == _build.build_record(
        torch.__version__
    )
