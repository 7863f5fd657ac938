"""The FastAPI application of ``lstmkit serve``: the endpoints of each loaded run's verbs, the
web inspector, the limits and the errors.

Every error is JSON ``{"error": ..., "field": ..., "id": ...}``: a bad request a 4xx naming the
field (``texts[2]``, ``body.length``), an unknown run or a verb its task lacks 404, a full
queue or too many streams 503 with ``Retry-After``, an internal error 500 with an id that the
log line of its traceback carries (the server goes on serving).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import torch
from fastapi import FastAPI, File, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from lstmkit.infer.load import load_trained
from lstmkit.infer.predict import predict_items
from lstmkit.serve.batching import MicroBatcher, Overloaded
from lstmkit.serve.config import ServeConfig
from lstmkit.serve.traces import inspect_audio, inspect_text
from lstmkit.tasks.base import Task
from lstmkit.train.checkpoint import Checkpoint
from lstmkit.utils.device import resolve_device
from lstmkit.utils.errors import UserError

log = logging.getLogger("lstmkit.serve")
STATIC = Path(__file__).with_name("static")
MAX_TEXTS = 256
"""Texts (or files) in one request; more is one 422."""
MAX_GENERATE = 2_000
"""Tokens one /generate request may ask for."""
AUDIO_TASKS = ("spoken-words", "asr-ctc")


# ----- request and response bodies (the OpenAPI schema is built from them)
class ErrorResponse(BaseModel):
    error: str = Field(description="what was wrong, in one line")
    field: str | None = Field(None, description="the request field at fault, where one is")
    id: str | None = Field(None, description="an internal error's id, as the server log has it")


class Health(BaseModel):
    status: str = "ok"
    runs: int


class RunInfo(BaseModel):
    name: str = Field(description="the name in the URLs: /v1/{name}/...")
    task: str
    verbs: list[str] = Field(description="the endpoints this run has")
    version: str = Field(description="the lstmkit version that wrote the checkpoint")
    checksum: str = Field(description="SHA-256 of the weight file (model.json's sha256)")
    step: int
    path: str
    inputs: str = Field(description="'text' or 'audio': what predict and inspect take")
    model_calls: int = Field(description="predict calls of the model so far (micro-batched)")
    mean_batch: float = Field(description="inputs per predict call, on average")


class Runs(BaseModel):
    runs: list[RunInfo]


class PredictRequest(BaseModel):
    texts: list[str] = Field(
        min_length=1,
        max_length=MAX_TEXTS,
        description="inputs in the task's text format (a sentence, a text to score...)",
    )


class PredictResponse(BaseModel):
    run: str
    results: list[dict[str, Any]] = Field(
        description="one per input, the objects `lstmkit predict` prints"
    )


class GenerateRequest(BaseModel):
    prompt: str = ""
    length: int = Field(200, ge=0, le=MAX_GENERATE, description="tokens to sample")
    temperature: float = Field(1.0, gt=0, le=100)
    top_k: int = Field(0, ge=0, description="sample from the k likeliest (0: all)")
    seed: int | None = Field(None, ge=0, lt=2**63)
    stream: bool = Field(True, description="server-sent events, one per token; else one JSON")


class GenerateResponse(BaseModel):
    run: str
    text: str


class TranslateRequest(BaseModel):
    sentences: list[str] = Field(min_length=1, max_length=MAX_TEXTS)
    beam: int | None = Field(None, ge=1, le=64)


class TranslateResponse(BaseModel):
    run: str
    translations: list[str]


class TranscribeResponse(BaseModel):
    run: str
    results: list[dict[str, Any]] = Field(description="input (the file's name) and text each")


class InspectRequest(BaseModel):
    text: str = Field(description="one input in the task's text format")


class UnitTrace(BaseModel):
    unit: int = Field(description="index over the layer's directions side by side")
    name: str = Field(description="→k forward, ←k backward unit k")
    score: float = Field(description="how much it matters (see ranked_by)")
    i: list[float]
    f: list[float]
    o: list[float]
    c: list[float]


class Prediction(BaseModel):
    label: str
    probabilities: dict[str, float]


class InspectResponse(BaseModel):
    run: str
    kind: str = Field(description="'tokens' or 'frames': what the steps are")
    steps: list[str] = Field(description="each step's token (or frame number)")
    prediction: Prediction
    shares: list[float] | None = Field(description="each token's share of the class score")
    attention: list[float] | None = Field(description="attention weight per step, if any")
    marks: list[int] | None = None
    ranked_by: str
    layer: int
    units: list[UnitTrace]
    cut: int = Field(description="steps left out at the end (the input was longer)")


ERRORS = {
    400: {"model": ErrorResponse},
    401: {"model": ErrorResponse},
    403: {"model": ErrorResponse},
    404: {"model": ErrorResponse},
    413: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
}


# ----- what is served
class FieldError(Exception):
    """A bad field of a request: 422 (or ``status``) naming it."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.field, self.status = field, status


class Busy(Exception):
    """Too many streams: 503."""


@dataclass
class Served:
    """One loaded run: its task, model, checkpoint and batcher."""

    name: str
    task: Task
    model: torch.nn.Module
    checkpoint: Checkpoint
    device: torch.device
    batcher: MicroBatcher

    def info(self) -> RunInfo:
        meta = self.checkpoint.meta
        return RunInfo(
            name=self.name,
            task=self.task.name,
            verbs=[
                v
                for v in self.task.verbs()
                if v in ("predict", "inspect", "generate", "translate", "transcribe")
            ],
            version=str(meta.get("lstmkit_version", "")),
            checksum=str(meta.get("sha256", "")),
            step=int(meta.get("step", 0)),
            path=str(self.checkpoint.path),
            inputs="audio" if self.task.name in AUDIO_TASKS else "text",
            model_calls=self.batcher.calls,
            mean_batch=round(self.batcher.items / max(1, self.batcher.calls), 2),
        )


def run_name(path: str) -> str:
    """A run's name in the URLs: its folder's (the run's, for a best/ or last/ checkpoint)."""
    p = Path(path).resolve()
    return p.parent.name if p.name in ("best", "last") else p.name


def load_runs(cfg: ServeConfig) -> dict[str, Served]:
    """Every run of ``cfg.runs``, loaded once; two runs of one name are refused."""
    if not cfg.runs:
        raise UserError("serve: give one or more run folders")
    dev = resolve_device(cfg.device)
    served: dict[str, Served] = {}
    for path in cfg.runs:
        name = run_name(path)
        if name in served:
            raise UserError(
                f"{path}: a run named {name!r} is already served ({served[name].checkpoint.path})"
            )
        task, model, ckpt = load_trained(path, dev)
        ckpt = replace(ckpt, weights={})  # the model holds them; no second copy in memory

        def fn(items, task=task, model=model):
            return predict_items(task, model, items, dev)

        batcher = MicroBatcher(
            fn,
            max_batch=cfg.max_batch,
            max_wait_ms=cfg.max_wait_ms,
            max_queue=cfg.max_queue,
            name=name,
        )
        served[name] = Served(name, task, model, ckpt, dev, batcher)
    return served


def _error(status: int, error: str, field: str | None = None, **headers: str) -> JSONResponse:
    body = {"error": error, "field": field, "id": None}
    return JSONResponse(body, status_code=status, headers=headers or None)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is 413, counted as it arrives (a
    Content-Length over it is refused before reading), so a huge upload never sits in memory."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = _error(413, f"the request body is over {self.limit} bytes (--max-request-bytes)")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await too_big(scope, receive, send)
        seen = 0
        started = answered = False

        async def counted():
            # past the limit: answer 413 now, and tell the app the client left (what it sends
            # after that is dropped), so the rest of the body is never read
            nonlocal seen, answered
            if answered:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit and not started:
                    answered = True
                    await too_big(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def sending(message):
            nonlocal started
            if answered:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counted, sending)


def _output(out: Any) -> dict | None:
    """A stream's output as JSON (None before the first frame)."""
    return None if out is None else out.to_dict()


def _next(it: Iterator[str]) -> str | None:
    with torch.no_grad():  # per thread: each piece may be sampled in another worker thread
        return next(it, None)


def create_app(served: dict[str, Served], cfg: ServeConfig) -> FastAPI:
    """The application serving ``served`` under the limits of ``cfg``."""
    token = cfg.token or os.environ.get("LSTMKIT_SERVE_TOKEN", "")
    streams = {"open": 0}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        for s in served.values():  # uvicorn's shutdown: in-flight requests have finished
            s.batcher.close()

    app = FastAPI(
        lifespan=lifespan,
        # FastAPI's /docs and /redoc pages load their scripts from a CDN: off, nothing here
        # reaches the internet; the schema itself stays at /openapi.json
        docs_url=None,
        redoc_url=None,
        title="lstmkit serve",
        description="Trained lstmkit runs over HTTP: predict, generate, translate, transcribe "
        "and the gate traces of inspect.",
        version="1",
    )
    app.state.served = served
    app.state.config = cfg

    # ----- errors: JSON naming the field; a 500 carries the id of its log line
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ())]
        field = ".".join(loc) if loc else None
        return _error(422, f"{field or 'request'}: {first.get('msg', 'invalid')}", field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail), None, **(exc.headers or {}))

    @app.exception_handler(FieldError)
    async def _field(request: Request, exc: FieldError):
        return _error(exc.status, f"{exc.field}: {exc}", exc.field)

    @app.exception_handler(UserError)
    async def _user(request: Request, exc: UserError):
        return _error(400, str(exc))

    @app.exception_handler(Overloaded)
    async def _overloaded(request: Request, exc: Overloaded):
        return _error(503, f"overloaded: {exc}; try again", None, **{"Retry-After": "1"})

    @app.exception_handler(Busy)
    async def _busy(request: Request, exc: Busy):
        return _error(503, str(exc), None, **{"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        eid = uuid.uuid4().hex[:12]
        log.error("error %s on %s %s", eid, request.method, request.url.path, exc_info=exc)
        return JSONResponse(
            {"error": f"internal error {eid} (in the server's log)", "field": None, "id": eid},
            status_code=500,
        )

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        path = request.url.path
        public = path in ("/", "/health", "/favicon.ico") or path.startswith("/static/")
        if token and not public:
            given = request.headers.get("authorization", "")
            if not given.lower().startswith("bearer "):
                return _error(
                    401,
                    "give the token: Authorization: Bearer TOKEN",
                    None,
                    **{"WWW-Authenticate": "Bearer"},
                )
            if not hmac.compare_digest(given[7:].strip().encode(), token.encode()):
                return _error(403, "wrong token")
        return await call_next(request)

    def get(run: str, verb: str) -> Served:
        s = served.get(run)
        if s is None:
            raise StarletteHTTPException(
                404, f"no run {run!r} is served; these are: {', '.join(served)}"
            )
        if verb not in s.task.capabilities:
            raise StarletteHTTPException(
                404,
                f"run {run!r} ({s.task.name}) has no {verb}; it has {', '.join(s.info().verbs)}",
            )
        return s

    def check_texts(texts: list[str], field: str) -> None:
        for k, t in enumerate(texts):
            if len(t) > cfg.max_text_chars:
                raise FieldError(
                    f"{field}[{k}]",
                    f"{len(t)} characters, over --max-text-chars {cfg.max_text_chars}",
                    413,
                )

    async def saved_audio(files: list[UploadFile], folder: str) -> list[str]:
        """The uploads written into ``folder`` and checked: a readable recording each, no
        longer than --max-audio-seconds."""
        import soundfile

        if not files:
            raise FieldError("files", "upload one or more audio files")
        if len(files) > MAX_TEXTS:
            raise FieldError("files", f"{len(files)} files, at most {MAX_TEXTS}")
        paths = []
        for k, f in enumerate(files):
            suffix = Path(f.filename or "").suffix.lower()[:8] or ".wav"
            path = os.path.join(folder, f"{k}{suffix if suffix.isascii() else '.wav'}")
            with open(path, "wb") as out:
                while chunk := await f.read(1 << 20):
                    out.write(chunk)
            try:
                seconds = soundfile.info(path).duration
            except Exception as e:  # noqa: BLE001 (any unreadable file is the client's)
                raise FieldError(
                    f"files[{k}]",
                    f"{f.filename!r} is not a readable audio file ({type(e).__name__})",
                    400,
                ) from None
            if seconds > cfg.max_audio_seconds:
                raise FieldError(
                    f"files[{k}]",
                    f"{f.filename!r} lasts {seconds:.1f} s, over "
                    f"--max-audio-seconds {cfg.max_audio_seconds:g}",
                    413,
                )
            paths.append(path)
        return paths

    def renamed(results: list[dict], paths: list[str], files: list[UploadFile]) -> list[dict]:
        names = {p: f.filename or "" for p, f in zip(paths, files, strict=True)}
        return [{**r, "input": names.get(r.get("input"), r.get("input"))} for r in results]

    # ----- the page
    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health", response_model=Health)
    async def health():
        return Health(runs=len(served))

    @app.get("/v1/runs", response_model=Runs, responses=ERRORS)
    async def runs():
        return Runs(runs=[s.info() for s in served.values()])

    @app.post("/v1/{run}/predict", response_model=PredictResponse, responses=ERRORS)
    async def predict(run: str, body: PredictRequest):
        """The prediction for each text, gathered with concurrent requests into one batch."""
        s = get(run, "predict")
        if s.task.name in AUDIO_TASKS:
            raise FieldError(
                "texts", f"a {s.task.name} run predicts uploads: POST /v1/{run}/predict/audio", 400
            )
        check_texts(body.texts, "texts")
        return PredictResponse(run=run, results=await s.batcher.submit(body.texts))

    @app.post("/v1/{run}/predict/audio", response_model=PredictResponse, responses=ERRORS)
    async def predict_audio(run: str, files: Annotated[list[UploadFile], File()]):
        """The prediction for each uploaded recording (a speech run)."""
        s = get(run, "predict")
        if s.task.name not in AUDIO_TASKS:
            raise FieldError(
                "files", f"a {s.task.name} run predicts texts: POST /v1/{run}/predict", 400
            )
        with tempfile.TemporaryDirectory(prefix="lstmkit-serve-") as folder:
            paths = await saved_audio(files, folder)
            results = await s.batcher.submit(paths)
        return PredictResponse(run=run, results=renamed(results, paths, files))

    @app.post(
        "/v1/{run}/generate",
        response_model=GenerateResponse,
        responses={
            **ERRORS,
            200: {
                "content": {
                    "text/event-stream": {"schema": {"type": "string"}},
                    "application/json": {},
                },
                "description": 'with stream: events `data: {"piece": ...}`, '
                "then `event: end`; else one JSON",
            },
        },
    )
    async def generate(run: str, body: GenerateRequest):
        """Text sampled after ``prompt``, streamed token by token as server-sent events."""
        from lstmkit.infer.generate import generate_pieces

        s = get(run, "generate")
        check_texts([body.prompt], "prompt")

        def pieces() -> Iterator[str]:
            return generate_pieces(
                s.task,
                s.model,
                s.device,
                body.prompt,
                body.length,
                temperature=body.temperature,
                top_k=body.top_k,
                seed=body.seed,
                on_unknown="unk",
                echo_prompt=False,
            )

        if not body.stream:
            text = await s.batcher.call(lambda: "".join(pieces()))
            return GenerateResponse(run=run, text=text)
        if streams["open"] >= cfg.max_streams:
            raise Busy(f"{streams['open']} streams are open (--max-streams {cfg.max_streams})")
        streams["open"] += 1
        try:
            it = await s.batcher.call(pieces)  # the prompt is read (and checked) before 200 is sent
            first = await s.batcher.call(_next, it)
        except BaseException:
            streams["open"] -= 1
            raise

        def events() -> Iterator[str]:
            try:
                piece = first
                while piece is not None:
                    yield f"data: {json.dumps({'piece': piece}, ensure_ascii=False)}\n\n"
                    piece = s.batcher.call_blocking(_next, it)
                yield "event: end\ndata: {}\n\n"
            finally:
                streams["open"] -= 1

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    @app.post("/v1/{run}/translate", response_model=TranslateResponse, responses=ERRORS)
    async def translate(run: str, body: TranslateRequest):
        from lstmkit.infer.translate import translate_sentences, with_decoding

        s = get(run, "translate")
        check_texts(body.sentences, "sentences")
        task = with_decoding(
            s.task, beam=body.beam, len_penalty=None, max_len_ratio=None, decode_batch=None
        )

        def work():
            with torch.no_grad():
                return translate_sentences(
                    task, s.model, s.device, [x.strip() for x in body.sentences]
                )

        return TranslateResponse(run=run, translations=await s.batcher.call(work))

    @app.post("/v1/{run}/transcribe", response_model=TranscribeResponse, responses=ERRORS)
    async def transcribe(run: str, files: Annotated[list[UploadFile], File()]):
        from lstmkit.infer.transcribe import transcribe_files

        s = get(run, "transcribe")
        with tempfile.TemporaryDirectory(prefix="lstmkit-serve-") as folder:
            paths = await saved_audio(files, folder)
            results = await s.batcher.call(
                transcribe_files, s.task, s.model, s.device, paths, "", 0
            )
        return TranscribeResponse(run=run, results=renamed(results, paths, files))

    @app.post("/v1/{run}/inspect", response_model=InspectResponse, responses=ERRORS)
    async def inspect(run: str, body: InspectRequest):
        """The gates of the layer the prediction reads, along the tokens, for the units that
        matter most (see :mod:`lstmkit.serve.traces`)."""
        s = get(run, "inspect")
        if s.task.name in AUDIO_TASKS:
            raise FieldError(
                "text", f"a {s.task.name} run inspects uploads: POST /v1/{run}/inspect/audio", 400
            )
        if not body.text.strip():
            raise FieldError("text", "is empty")
        check_texts([body.text], "text")
        trace = await s.batcher.call(inspect_text, s.task, s.model, body.text, s.device)
        return InspectResponse(run=run, **trace)

    @app.post("/v1/{run}/inspect/audio", response_model=InspectResponse, responses=ERRORS)
    async def inspect_recording(run: str, file: Annotated[UploadFile, File()]):
        s = get(run, "inspect")
        if s.task.name not in AUDIO_TASKS:
            raise FieldError(
                "file", f"a {s.task.name} run inspects text: POST /v1/{run}/inspect", 400
            )
        with tempfile.TemporaryDirectory(prefix="lstmkit-serve-") as folder:
            (path,) = await saved_audio([file], folder)
            trace = await s.batcher.call(inspect_audio, s.task, s.model, path, s.device)
        return InspectResponse(run=run, **trace)

    # ----- streamed audio over a WebSocket (lstmkit.infer.stream's AudioSession)
    streams_of: dict[str, Any] = {}

    async def audio_stream(ws: WebSocket, run: str, verb: str) -> None:
        """Binary messages: float32 little-endian mono samples at the run's sample rate; after
        each, ``{"partial": ...}`` (the running prediction or transcript); the text message
        ``end``: ``{"final": ...}`` (the whole recording's output), then the socket closes.
        Errors are ``{"error": ...}`` and close 1008 (policy) or 1011 (internal)."""
        import numpy as np

        from lstmkit.infer.stream import Stream

        await ws.accept()
        given = ws.headers.get("authorization", "")[7:].strip() or ws.query_params.get("token", "")
        if token and not hmac.compare_digest(given.encode(), token.encode()):
            await ws.send_json({"error": "give the token: Authorization: Bearer TOKEN or ?token="})
            return await ws.close(1008)
        s = served.get(run)
        if s is None or verb not in s.task.capabilities or s.task.name not in AUDIO_TASKS:
            await ws.send_json({"error": f"run {run!r} has no streamed {verb} (a speech run has)"})
            return await ws.close(1008)
        if streams["open"] >= cfg.max_streams:
            await ws.send_json(
                {
                    "error": f"{streams['open']} streams are open (--max-streams "
                    f"{cfg.max_streams}); try again"
                }
            )
            return await ws.close(1013)  # try again later
        streams["open"] += 1
        session = None
        try:
            if run not in streams_of:
                streams_of[run] = Stream(s)
            session = await s.batcher.call(streams_of[run].open_audio)
            rate = session.spec.sample_rate
            await ws.send_json({"ready": True, "sample_rate": rate, "format": "float32le"})
            samples = 0
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    return
                data, text = msg.get("bytes"), msg.get("text")
                if text is not None:
                    if text.strip() != "end":
                        await ws.send_json({"error": f"text message {text[:40]!r}: only 'end'"})
                        return await ws.close(1008)
                    out = await s.batcher.call(session.finish)
                    await ws.send_json({"final": _output(out)})
                    return await ws.close(1000)
                if len(data) > cfg.max_request_bytes or len(data) % 4:
                    await ws.send_json(
                        {
                            "error": f"a chunk of {len(data)} bytes: give float32 "
                            f"samples, at most {cfg.max_request_bytes} bytes"
                        }
                    )
                    return await ws.close(1008)
                samples += len(data) // 4
                if samples > cfg.max_audio_seconds * rate:
                    await ws.send_json(
                        {"error": f"over --max-audio-seconds {cfg.max_audio_seconds:g}"}
                    )
                    return await ws.close(1008)
                wave = np.frombuffer(data, dtype="<f4").copy()
                try:
                    out = await s.batcher.call(session.feed, wave)
                except UserError as e:
                    await ws.send_json({"error": str(e)})
                    return await ws.close(1008)
                await ws.send_json({"partial": _output(out), "seconds": samples / rate})
        except WebSocketDisconnect:
            return
        except Exception as exc:  # noqa: BLE001 (logged with an id; the server goes on)
            eid = uuid.uuid4().hex[:12]
            log.error("error %s on websocket %s", eid, ws.url.path, exc_info=exc)
            with contextlib.suppress(Exception):
                await ws.send_json(
                    {"error": f"internal error {eid} (in the server's log)", "id": eid}
                )
                await ws.close(1011)
        finally:
            streams["open"] -= 1
            if session is not None:
                session.close()

    @app.websocket("/v1/{run}/transcribe/stream")
    async def transcribe_stream(ws: WebSocket, run: str):
        await audio_stream(ws, run, "transcribe")

    @app.websocket("/v1/{run}/predict/stream")
    async def predict_stream(ws: WebSocket, run: str):
        await audio_stream(ws, run, "predict")

    app.add_middleware(BodyLimit, limit=cfg.max_request_bytes)
    return app
