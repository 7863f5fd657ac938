"""``lstmkit serve`` as a real server: a subprocess on a free loopback port, real HTTP, then
SIGTERM: it exits 0 and the port can be bound again; the option checks and the warning for a
non-loopback address."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from lstmkit.serve.config import ServeConfig
from lstmkit.serve.server import is_loopback
from lstmkit.utils.errors import UserError
from tests.serve.conftest import CKPT, free_port


def test_serve_subprocess_answers_then_exits_0_on_sigterm_and_frees_the_port():
    port = free_port()
    env = {**os.environ, "LSTMKIT_SERVE_TOKEN": "", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "lstmkit.cli.main",
        "serve",
        str(CKPT / "sentiment"),
        str(CKPT / "lm"),
        "--port",
        str(port),
        "--threads",
        "1",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.1)
        r = httpx.post(base + "/v1/sentiment/predict", json={"texts": ["good fine movie"]})
        assert r.status_code == 200 and r.json()["results"][0]["label"] in ("pos", "neg")
        with httpx.stream(
            "POST", base + "/v1/lm/generate", json={"prompt": "a", "length": 5, "seed": 1}
        ) as s:
            body = s.read().decode()
        assert body.count('data: {"piece"') == 5 and "event: end" in body
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out.decode()
    with socket.socket() as s:  # released: bindable again at once
        s.bind(("127.0.0.1", port))


def test_a_missing_run_is_one_line_and_status_2(capsys):
    from lstmkit.cli.main import cli_main

    assert cli_main(["serve", "/no/such/run", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/no/such/run" in err


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.4", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_non_loopback_host_warns_once(monkeypatch, capsys):
    import uvicorn

    from lstmkit.serve import server

    started = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: started.append(self.config.host))
    cfg = ServeConfig(runs=(str(CKPT / "sentiment"),), host="0.0.0.0", port=0, device="cpu")
    assert server.serve(cfg) == 0 and started == ["0.0.0.0"]
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "without a token" in err
    server.serve(ServeConfig(runs=(str(CKPT / "sentiment"),), port=0, device="cpu"))
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kw", "flag"),
    [
        ({"port": 70000}, "--port"),
        ({"max_batch": 0}, "--max-batch"),
        ({"max_wait_ms": -1}, "--max-wait-ms"),
        ({"max_audio_seconds": 0}, "--max-audio-seconds"),
        ({"max_queue": 0}, "--max-queue"),
    ],
)
def test_bad_options_name_the_flag(kw, flag):
    from lstmkit.serve.server import check

    with pytest.raises(UserError, match=flag):
        check(ServeConfig(runs=("x",), **kw))


def test_two_runs_of_one_name_are_refused(tmp_path):
    from lstmkit.serve.app import load_runs

    with pytest.raises(UserError, match="already served"):
        load_runs(ServeConfig(runs=(str(CKPT / "lm"), str(CKPT / "lm")), device="cpu"))
