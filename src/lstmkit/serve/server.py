"""``lstmkit serve``: load the runs, build the application, and run it on uvicorn until
SIGINT or SIGTERM (uvicorn's graceful shutdown: it stops accepting, lets in-flight requests
finish, closes the socket)."""

from __future__ import annotations

import ipaddress
import logging
import signal
import sys

from lstmkit.serve.config import ServeConfig
from lstmkit.utils.errors import UserError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(cfg: ServeConfig) -> None:
    """The options' values, each bad one a :class:`UserError` naming it."""
    if not 0 <= cfg.port <= 65535:
        raise UserError(f"--port must be 0..65535, got {cfg.port}")
    for name in ("max_batch", "max_request_bytes", "max_text_chars", "max_streams", "max_queue"):
        if getattr(cfg, name) < 1:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} must be >= 1, got {getattr(cfg, name)}")
    if not 0 <= cfg.max_wait_ms <= 10_000:
        raise UserError(f"--max-wait-ms must be 0..10000, got {cfg.max_wait_ms:g}")
    if not cfg.max_audio_seconds > 0:
        raise UserError(f"--max-audio-seconds must be > 0, got {cfg.max_audio_seconds:g}")


def serve(cfg: ServeConfig) -> int:
    """Serve ``cfg.runs`` on ``cfg.host:cfg.port``; returns 0 after a graceful shutdown."""
    check(cfg)
    try:
        import uvicorn

        from lstmkit.serve.app import create_app, load_runs
    except ImportError as e:
        raise UserError(
            f"serve needs the serve extra: pip install 'lstmkit[serve]' ({e})"
        ) from None
    served = load_runs(cfg)
    app = create_app(served, cfg)
    if not is_loopback(cfg.host):
        print(
            f"lstmkit serve: warning: listening on {cfg.host}, reachable from other machines"
            + ("" if cfg.token else " without a token (--token)"),
            file=sys.stderr,
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = uvicorn.Config(
        app,
        host=cfg.host,
        port=cfg.port,
        log_level="info",
        timeout_graceful_shutdown=10,
        access_log=False,
    )
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again under the handler
    # it found: a no-op one here, so that a graceful stop is exit status 0, not death by signal
    previous = signal.signal(signal.SIGTERM, lambda sig, frame: None)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
