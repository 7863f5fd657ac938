"""Load on ``lstmkit serve`` (issue 20): an asyncio httpx load generator on 127.0.0.1.

    .venv/bin/python bench/serve_load.py --out docs/bench-serve.json      # (make bench-serve)

For the sentiment model and the character language model (the test fixtures by default: tiny
models, so the numbers measure the server's own cost per request, not the LSTM's), requests/s
and p50/p99 latency of ``POST /v1/RUN/predict`` (one text each) at 1, 8, 64 and 256 concurrent
clients, with micro-batching (``--max-batch 32 --max-wait-ms 2``) and without (``--max-batch
1``), and the same model called in-process (``task.predict`` one text a call, and 32 a call) as
the ceiling. Then overload (a server with ``--max-queue 32`` under 512 clients: the share shed
with 503, the server's peak RSS, VmHWM from /proc), and 10,000 requests of which half are
malformed (:func:`lstmkit.serve.fuzz.requests_mix`): the server must stay up, answer no 5xx,
and answer every malformed request with a 4xx. The load generator shares the machine's cores
with the server: on a small machine it is part of what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from lstmkit.bench import machine_info, write_json_atomic
from lstmkit.serve.fuzz import requests_mix

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "checkpoints"
TEXTS = {
    "sentiment": "a gripping , beautifully acted film",
    "lm": "to be or not to be, that is the question",
}
CONCURRENCY = (1, 8, 64, 256)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``lstmkit serve RUNS --port P ARGS`` in a subprocess, up once /health answers."""

    def __init__(self, runs: list[str], *args: str, threads: int = 1) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable,
            "-m",
            "lstmkit.cli.main",
            "serve",
            *runs,
            "--port",
            str(self.port),
            "--threads",
            str(threads),
            "--device",
            "cpu",
            *args,
        ]
        # the log goes to a file: a pipe nobody reads would fill and stall the server
        self.log = tempfile.TemporaryFile("w+b", prefix="lstmkit-serve-")
        self.proc = subprocess.Popen(
            cmd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LSTMKIT_SERVE_TOKEN": ""},
        )
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(self.log.read().decode())
            try:
                if httpx.get(self.base + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not come up")
            time.sleep(0.1)

    def model_stats(self, run: str) -> tuple[int, float]:
        """(model calls, inputs run) of ``run`` so far, from /v1/runs."""
        for r in httpx.get(self.base + "/v1/runs", timeout=30).json()["runs"]:
            if r["name"] == run:
                return r["model_calls"], r["model_calls"] * r["mean_batch"]
        raise KeyError(run)

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def _post(reader, writer, path: str, payload: bytes) -> int:
    """One keep-alive HTTP/1.1 POST on an open connection; its status (the body is read)."""
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def closed_loop(base: str, run: str, clients: int, seconds: float) -> dict:
    """``clients`` clients, each on its own keep-alive connection, sending its next request
    when the last is answered, for ``seconds`` (after a 0.3 s warm-up); latencies of those
    answered. The client is raw asyncio streams, not httpx: httpx's connection pool costs more
    per request than the server at 64+ connections, and would be what is measured."""
    host, port = base.removeprefix("http://").split(":")
    payload = json.dumps({"texts": [TEXTS[run]]}).encode()
    path = f"/v1/{run}/predict"
    lat: list[float] = []
    codes: dict[int, int] = {}
    phase = {"stop": time.perf_counter() + 0.3, "measuring": False}

    async def client():
        reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
        try:
            while time.perf_counter() < phase["stop"]:
                t0 = time.perf_counter()
                try:
                    status = await _post(reader, writer, path, payload)
                except (OSError, asyncio.IncompleteReadError):
                    codes[0] = codes.get(0, 0) + 1  # 0: no answer (connection reset...)
                    reader, writer = await asyncio.open_connection(host, int(port))
                    continue
                if phase["measuring"]:
                    lat.append(time.perf_counter() - t0)
                    codes[status] = codes.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))  # warm-up
    phase["measuring"] = True
    t0 = time.perf_counter()
    phase["stop"] = t0 + seconds
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - t0
    ok = codes.get(200, 0)
    return {
        "clients": clients,
        "requests": len(lat),
        "rps": ok / wall,
        "p50_ms": 1000 * pct(lat, 0.5),
        "p99_ms": 1000 * pct(lat, 0.99),
        "codes": {str(k): v for k, v in sorted(codes.items())},
    }


def in_process(path: Path, run: str, seconds: float) -> dict:
    """The model called directly: ``task.predict`` on 1 text a call, and on 32."""
    import torch

    from lstmkit.infer.load import load_trained

    torch.set_num_threads(1)
    task, model, _ = load_trained(path, torch.device("cpu"))
    out = {}
    for batch in (1, 32):
        items = [TEXTS[run]] * batch
        n, t0 = 0, time.perf_counter()
        with torch.no_grad():
            while time.perf_counter() - t0 < seconds:
                task.predict(model, items, torch.device("cpu"))
                n += batch
        out[f"batch_{batch}_per_s"] = n / (time.perf_counter() - t0)
    return out


async def overload(base: str, clients: int, each: int) -> dict:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    codes: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as c:

        async def client():
            for _ in range(each):
                try:
                    r = await c.post("/v1/sentiment/predict", json={"texts": [TEXTS["sentiment"]]})
                except httpx.TransportError:
                    codes[0] = codes.get(0, 0) + 1
                    continue
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                if r.status_code == 503:
                    assert r.headers.get("retry-after") == "1"

        await asyncio.gather(*(client() for _ in range(clients)))
    return {str(k): v for k, v in sorted(codes.items())}


async def fuzz(base: str, n: int, clients: int) -> dict:
    rng = random.Random(10_000)
    todo = list(requests_mix(rng, n, max_text_chars=10_000))
    counts = {
        "requests": 0,
        "malformed": 0,
        "malformed_4xx": 0,
        "valid_200": 0,
        "5xx": 0,
        "500": 0,
        "transport_errors": 0,
    }
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as c:
        it = iter(todo)

        async def client():
            for method, path, kw, malformed in it:
                counts["requests"] += 1
                counts["malformed"] += malformed
                try:
                    r = await c.request(method, path, **kw)
                except httpx.TransportError:
                    counts["transport_errors"] += 1
                    continue
                counts["5xx"] += r.status_code >= 500
                counts["500"] += r.status_code == 500
                if malformed:
                    counts["malformed_4xx"] += 400 <= r.status_code < 500
                else:
                    counts["valid_200"] += r.status_code == 200

        await asyncio.gather(*(client() for _ in range(clients)))
    return counts


def markdown(result: dict) -> str:
    """The docs/BENCHMARKS.md table of a result: req/s, p50/p99 per run, mode and clients."""
    lines = [
        "| model | clients | batched req/s | p50 ms | p99 ms | mean batch | unbatched req/s "
        "| p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    cell = {(r["run"], r["mode"], r["clients"]): r for r in result["table"]}
    for run in result["models"]:
        for clients in CONCURRENCY:
            b, u = cell[(run, "batched", clients)], cell[(run, "unbatched", clients)]
            lines.append(
                f"| {run} | {clients} | {b['rps']:.0f} | {b['p50_ms']:.0f} | {b['p99_ms']:.0f} "
                f"| {b['mean_batch']:.1f} | {u['rps']:.0f} | {u['p50_ms']:.0f} | "
                f"{u['p99_ms']:.0f} |"
            )
    for run, c in result["in_process"].items():
        lines.append(
            f"| {run}, in-process | - | {c['batch_32_per_s']:.0f} (32 a call) | | | 32 | "
            f"{c['batch_1_per_s']:.0f} (1 a call) | | |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sentiment", default=str(FIXTURES / "sentiment"))
    ap.add_argument("--lm", default=str(FIXTURES / "lm"))
    ap.add_argument("--seconds", type=float, default=2.0, help="per cell of the table")
    ap.add_argument("--fuzz", type=int, default=10_000)
    ap.add_argument("--out", default="")
    ap.add_argument(
        "--table", default="", help="print the markdown table of this JSON, run nothing"
    )
    args = ap.parse_args(argv)
    if args.table:
        print(markdown(json.loads(Path(args.table).read_text())))
        return 0
    runs = {"sentiment": args.sentiment, "lm": args.lm}
    paths = list(runs.values())
    started = time.perf_counter()
    load = os.getloadavg()
    result: dict = {
        "machine": machine_info(),
        "loadavg_start": load,
        "models": runs,
        "seconds_per_cell": args.seconds,
        "table": [],
        "in_process": {},
    }
    print(
        f"machine: {result['machine']['cpu']} ({result['machine']['cores']} cores, "
        f"{' '.join(result['machine']['isa'])}); load average {load[0]:.1f} at the start"
    )
    for mode, extra in (
        ("batched", ["--max-batch", "32", "--max-wait-ms", "2"]),
        ("unbatched", ["--max-batch", "1"]),
    ):
        server = Server(paths, *extra)
        try:
            for run in runs:
                for clients in CONCURRENCY:
                    before = server.model_stats(run)
                    row = asyncio.run(closed_loop(server.base, run, clients, args.seconds))
                    after = server.model_stats(run)
                    calls = after[0] - before[0]
                    row.update(
                        run=run, mode=mode, mean_batch=(after[1] - before[1]) / max(1, calls)
                    )
                    result["table"].append(row)
                    print(
                        f"{run:9} {mode:9} {clients:4} clients: {row['rps']:7.0f} req/s  "
                        f"p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  "
                        f"batch {row['mean_batch']:5.1f}  {row['codes']}",
                        flush=True,
                    )
            result[f"peak_rss_mb_{mode}"] = server.peak_rss_mb()
        finally:
            result[f"exit_{mode}"] = server.stop()
    for run, path in runs.items():
        result["in_process"][run] = in_process(Path(path), run, args.seconds)
        print(f"{run:9} in-process: {result['in_process'][run]}", flush=True)

    server = Server(paths, "--max-batch", "32", "--max-wait-ms", "2", "--max-queue", "32")
    try:
        before = server.rss_mb()
        codes = asyncio.run(overload(server.base, 512, 4))
        result["overload"] = {
            "clients": 512,
            "max_queue": 32,
            "codes": codes,
            "rss_mb_before": before,
            "peak_rss_mb": server.peak_rss_mb(),
            "alive": server.alive(),
        }
        print(
            f"overload, 512 clients, --max-queue 32: {codes}; RSS {before:.0f} MB before, "
            f"peak {server.peak_rss_mb():.0f} MB",
            flush=True,
        )
        t0 = time.perf_counter()
        counts = asyncio.run(fuzz(server.base, args.fuzz, 32))
        counts.update(
            seconds=time.perf_counter() - t0, alive=server.alive(), peak_rss_mb=server.peak_rss_mb()
        )
        result["fuzz"] = counts
        print(f"fuzz: {counts}", flush=True)
    finally:
        result["exit_overload"] = server.stop()
    result["seconds"] = time.perf_counter() - started
    result["loadavg_end"] = os.getloadavg()
    f = result["fuzz"]
    ok = (
        f["5xx"] == 0
        and f["transport_errors"] == 0
        and f["malformed_4xx"] == f["malformed"]
        and f["alive"]
        and result["overload"]["alive"]
    )
    result["fuzz_passed"] = ok
    print(
        f"fuzz {'passed' if ok else 'FAILED'}: {f['malformed_4xx']} of {f['malformed']} "
        f"malformed answered 4xx, {f['5xx']} 5xx; {result['seconds']:.0f} s in all"
    )
    if args.out:
        write_json_atomic(Path(args.out), result)
        print(f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
