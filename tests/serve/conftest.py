"""Fixtures of the serve tests: the fixture checkpoints served by one app, a tone recording,
and a real uvicorn server on a free loopback port in a thread."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")

from lstmkit.serve.app import create_app, load_runs  # noqa: E402
from lstmkit.serve.config import ServeConfig  # noqa: E402

CKPT = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints"
RUNS = ("sentiment", "lm", "spoken-words", "translation")


def make_config(**kw) -> ServeConfig:
    return ServeConfig(runs=tuple(str(CKPT / r) for r in RUNS), device="cpu", **kw)


@pytest.fixture(scope="session")
def served():
    """The four fixture runs, loaded once for the whole session."""
    return load_runs(make_config())


@pytest.fixture
def app_of(served):
    """``app_of(**limits)``: an app over the loaded runs with those options."""

    def make(**kw):
        return create_app(served, make_config(**kw))

    return make


@pytest.fixture
def client(app_of):
    from fastapi.testclient import TestClient

    with TestClient(app_of()) as c:
        yield c


def tone(path: Path, hz: float = 300.0, seconds: float = 0.4, rate: int = 8000) -> Path:
    import soundfile as sf

    t = np.arange(int(rate * seconds)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), rate, subtype="PCM_16")
    return path


@pytest.fixture
def wav(tmp_path) -> Path:
    return tone(tmp_path / "tone.wav")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_server(served):
    """A uvicorn server of the fixture runs on 127.0.0.1, in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(served, make_config())
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    sock.close()
