"""Options of ``lstmkit serve``: what to load, where to listen, and the limits that keep memory
and time bounded."""

from __future__ import annotations

from dataclasses import dataclass, field

from lstmkit.infer.inputs import device_field
from lstmkit.utils.meta import help_meta as _help

TOKEN_ENV = "LSTMKIT_SERVE_TOKEN"


@dataclass(frozen=True)
class ServeConfig:
    """Options of ``lstmkit serve``."""

    runs: tuple[str, ...] = field(
        default=(),
        metadata=_help("run folders (or their best/ or last/ checkpoints) to serve", argument=True),
    )
    host: str = field(
        default="127.0.0.1",
        metadata=_help(
            "address to listen on; anything but a loopback address is reachable from other machines"
        ),
    )
    port: int = field(default=8000, metadata=_help("TCP port (0: any free port)"))
    token: str = field(
        default="",
        metadata=_help(
            f"bearer token every endpoint but /health (and the page) asks for; default "
            f"${TOKEN_ENV}, none if unset"
        ),
    )
    max_batch: int = field(
        default=32,
        metadata=_help("most inputs gathered into one model call (1: no micro-batching)"),
    )
    max_wait_ms: float = field(
        default=5.0,
        metadata=_help("how long a model call waits for more requests after the first"),
    )
    max_request_bytes: int = field(
        default=10_000_000, metadata=_help("largest request body; a larger one gets 413")
    )
    max_text_chars: int = field(default=10_000, metadata=_help("longest text of a request"))
    max_audio_seconds: float = field(default=60.0, metadata=_help("longest recording"))
    max_streams: int = field(
        default=8,
        metadata=_help("concurrent streams (generate, transcription sockets); more get 503"),
    )
    max_queue: int = field(
        default=1024,
        metadata=_help("inputs waiting per model; beyond it requests get 503 with Retry-After"),
    )
    device: str = device_field()
