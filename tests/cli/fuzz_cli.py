"""Randomised robustness cases for the ``lstmkit`` command, run in one capped process.

``python -m tests.cli.fuzz_cli --examples N --out report.json`` tries N random cases of each
kind and writes what it found; tests/cli/test_fuzz.py runs a few dozen in ``make test`` and
``make fuzz`` runs many. Each case calls the command in this process (torch is imported once)
under an address-space limit (``resource.setrlimit``), so a case that would grow without bound
fails to allocate instead of taking the machine. A case passes when the command ends with
status 0, or with status 2 and exactly one line on stderr, ``lstmkit: error: ...``, and never
with a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

VALUES = [
    "nan",
    "inf",
    "-inf",
    "-1",
    "0",
    "1",
    "2",
    "0.5",
    "1e308",
    "-1e-300",
    str(2**63),
    str(2**70),
    "abc",
    "",
    " ",
    "1_000",
    "0x10",
    "☺",
    "--",
    "--steps",
]
ADDING_OPTIONS = [
    "--seq-len",
    "--n-valid",
    "--n-test",
    "--tolerance",
    "--solved-share",
    "--hidden-size",
    "--num-layers",
    "--dropout",
    "--proj-size",
    "--zoneout-h",
    "--zoneout-c",
    "--forget-bias",
    "--layer-norm-eps",
    "--recurrent-dropout",
    "--weight-drop",
    "--lr",
    "--weight-decay",
    "--clip-norm",
    "--warmup-steps",
    "--ema",
    "--min-lr-ratio",
    "--eval-every",
    "--patience",
    "--max-time",
    "--max-cpu-time",
    "--seed",
    "--save-every",
    "--log-every",
    "--threads",
    "--batch-size",
    "--steps",
    "--backend",
    "--cell",
    "--variant",
    "--schedule",
    "--amp",
]
BASE = [
    "--steps",
    "2",
    "--batch-size",
    "4",
    "--hidden-size",
    "4",
    "--seq-len",
    "6",
    "--n-valid",
    "4",
    "--n-test",
    "4",
    "--eval-every",
    "1",
    "--no-progress",
    "--device",
    "cpu",
    "--threads",
    "1",
]


def run(args: list[str]) -> dict:
    """One call of the command: its status, its stderr lines, and whether it kept the rules."""
    from lstmkit.cli.main import cli_main

    err, out = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            status = cli_main(args)
        except BaseException as e:  # noqa: BLE001 - an escaped exception is a finding
            status = f"raised {type(e).__name__}: {e}"
    lines = [x for x in err.getvalue().splitlines() if x.strip()]
    errors = [x for x in lines if not x.startswith("lstmkit: warning:")]
    ok = status == 0 or (
        status == 2 and len(errors) == 1 and errors[0].startswith("lstmkit: error:")
    )
    ok = ok and "Traceback" not in err.getvalue()
    return {
        "args": args,
        "status": status,
        "stderr": lines[-3:],
        "ok": ok,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def random_bytes(rng: random.Random, big: int) -> bytes:
    kind = rng.choice(["bytes", "giant-line", "bad-utf8", "empty", "blank", "nul", "many-lines"])
    if kind == "bytes":
        return rng.randbytes(rng.randint(1, 4096))
    if kind == "giant-line":
        return b"a good film " * (big // 12)
    if kind == "bad-utf8":
        return b"fine text\n\xff\xfe broken \xc3\n"
    if kind == "empty":
        return b""
    if kind == "blank":
        return b"\n \n\t\n"
    if kind == "nul":
        return b"a\x00b\n" * 100
    return b"".join(f'line {i} "quote\ttab,comma\n'.encode() for i in range(rng.randint(1, 20000)))


def cases(n: int, seed: int, big: int, work: Path):
    rng = random.Random(seed)
    trained = work / "trained"
    yield ["train", "adding", *BASE, "--out", str(trained)]
    for k in range(n):  # train adding with random values of random options
        args = list(BASE)
        for _ in range(rng.randint(1, 3)):
            args += [rng.choice(ADDING_OPTIONS), rng.choice(VALUES)]
        yield ["train", "adding", *args, "--out", str(work / f"t{k}")]
    for k in range(n):  # use verbs on random input files
        f = work / f"input{k}.txt"
        f.write_bytes(random_bytes(rng, big))
        verb = rng.choice(["predict", "inspect", "evaluate"])
        extra = {
            "predict": ["--input", str(f), "--output", str(work / f"p{k}.jsonl")],
            "inspect": ["--input", str(f), "--out", str(work / f"i{k}")],
            "evaluate": ["--split", rng.choice(["valid", "test", "both"])],
        }[verb]
        yield [verb, str(trained), *extra]
    for k in range(n):  # sentiment training data of random bytes and formats
        f = work / f"data{k}.{rng.choice(['csv', 'tsv', 'jsonl', 'txt'])}"
        f.write_bytes(random_bytes(rng, big))
        yield [
            "train",
            "sentiment",
            "--train",
            str(f),
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--hidden-size",
            "4",
            "--embedding-dim",
            "4",
            "--no-progress",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--out",
            str(work / f"s{k}"),
        ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=10, help="random cases of each kind")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--big", type=int, default=2_000_000, help="bytes of the giant-line files")
    p.add_argument("--memory-gb", type=float, default=6.0, help="address-space cap")
    p.add_argument("--out", default="", help="write the report as JSON here")
    a = p.parse_args(argv)
    cap = int(a.memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    os.environ.setdefault("LSTMKIT_MALLOC", "system")
    import torch

    torch.set_num_threads(1)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for args in cases(a.examples, a.seed, a.big, Path(tmp)):
            results.append(run(args))
    failed = [r for r in results if not r["ok"]]
    report = {
        "tried": len(results),
        "handled": len(results) - len(failed),
        "failed": len(failed),
        "memory_cap_gb": a.memory_gb,
        "failures": failed,
        "max_seconds": max(r["seconds"] for r in results),
    }
    text = json.dumps(report, indent=2, default=str)
    if a.out:
        Path(a.out).write_text(text + "\n")
    print(
        f"{report['tried']} cases, {report['handled']} handled, {report['failed']} failed",
        file=sys.stderr,
    )
    for r in failed:
        print(json.dumps(r, default=str)[:400], file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
