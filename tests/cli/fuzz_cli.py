"""Randomised robustness cases for the ``lstmkit`` command, run in one capped process.

``python -m tests.cli.fuzz_cli --examples N --out report.json`` tries N random cases of each
kind and writes what it found; tests/cli/test_fuzz.py runs a few dozen in ``make test`` and
``make fuzz`` runs many. Each case calls the command in this process (torch is imported once)
under an address-space limit (``resource.setrlimit``), so a case that would grow without bound
fails to allocate instead of taking the machine. A case passes when the command ends with
status 0, or with status 2 and exactly one line on stderr, ``lstmkit: error: ...``, and never
with a traceback; a case that names a source run (predict, quantize, export) also fails when
any file of that run changed or vanished.

Kinds, in the order their random draws are taken (a new kind goes last, so that the cases of a
seed stay those of the kinds before it): ``train adding`` options; predict/inspect/evaluate of
a trained adding run on random files; ``train sentiment`` on random data files; ``train
forecast`` on broken time-series CSVs with random forecast options; predict/inspect of a
trained forecast run on broken recent CSVs; ``quantize`` and ``export`` of a copy of a trained
run (adding, its int8 copy, forecast) to good and bad output paths with random options.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta
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


def tree_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path."""
    if not folder.is_dir():
        return {}
    return {
        str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.is_file() and not f.is_symlink()
    }


def run(args: list[str], guard: Path | None = None) -> dict:
    """One call of the command: its status, its stderr lines, and whether it kept the rules
    (``guard``: a run folder whose files must come out unchanged; new files are allowed, the
    command may have been told to write inside it)."""
    from lstmkit.cli.main import cli_main

    before = tree_hashes(guard) if guard is not None else {}
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
    result = {
        "args": args,
        "status": status,
        "stderr": lines[-3:],
        "ok": ok,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if guard is not None:
        after = tree_hashes(guard)
        changed = sorted(k for k in before if after.get(k) != before[k])
        if changed:
            result["ok"] = False
            result["source_changed"] = changed[:10]
    return result


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


MODELS = ["lstm", "lstm-seq2seq", "dlinear", "last", "seasonal24", "seasonal168", "arima"]
FORECAST_OPTIONS = {
    # each option with values of its own kind (good and bad); VALUES are drawn too
    "--lookback": ["1", "2", "3", "8", "24", "0", "-1", "59", "100000"],
    "--horizon": ["1", "3", "0", "-2", "57", "24"],
    "--fill": ["none", "ffill", "interpolate", "bfill"],
    "--split": ["fractions", "rows", "dates", "informer", "ltsf", "random"],
    "--train-end": ["30", "0", "-5", "2020-01-02", "2020-01-02 05:00:00", "1999-01-01", "99999"],
    "--valid-end": ["40", "35", "2020-01-02 12:00:00", "10", "2020-02-30"],
    "--test-end": ["60", "50", "1000", "2030-01-01"],
    "--valid-fraction": ["0.1", "0.5", "0", "1", "0.9", "0.01"],
    "--test-fraction": ["0.2", "0.5", "0", "1", "0.9", "0.01"],
    "--mase-season": ["1", "2", "24", "168", "1000", "0"],
    "--target": ["OT", "a", "b", "date", "nope", ""],
    "--targets": ["all", "a,OT", "OT,OT", "a,b,OT", ",", "nope"],
    "--covariates": ["a", "b", "OT", "a,b", "date", "nope"],
    "--time-column": ["date", "a", "OT", "Date"],
    "--series-column": ["a", "date", "OT", "nope"],
    "--model": MODELS,
    "--likelihood": ["point", "gaussian", "student-t", "quantile", "poisson"],
    "--quantiles": ["0.1,0.5,0.9", "0.9,0.1", "0.5", "0,1", "0.5,0.5", "1.5", ""],
    "--kernel": ["1", "3", "25", "4", "0", "101"],
    "--batch-size": ["1", "4", "64"],
}
ONE = ["--threads", "1"]
FORECAST_FLAGS = ["--calendar", "--channel-independent", "--revin", "--individual"]
FORECAST_BASE = [
    "--lookback",
    "4",
    "--horizon",
    "2",
    "--target",
    "OT",
    "--steps",
    "2",
    "--batch-size",
    "4",
    "--hidden-size",
    "4",
    "--eval-every",
    "1",
    "--no-progress",
    "--no-curves",
    "--device",
    "cpu",
    "--threads",
    "1",
]
MUTATIONS = [
    "non-numeric",
    "empty-cell",
    "nan-inf",
    "huge-value",
    "duplicate-time",
    "swap-rows",
    "bad-time",
    "timezone",
    "gap",
    "far-gap",
    "half-step",
    "drop-column",
    "extra-column",
    "ragged-row",
    "header-only",
    "no-header",
    "blank-lines",
    "quoted",
    "spaces",
    "date-only",
    "constant",
    "bom",
    "crlf",
    "semicolon",
    "giant-line",
    "random-bytes",
    "bad-utf8",
    "nul",
    "long-series",
]
T0 = datetime(2020, 1, 1)


def _stamp(hours: int) -> str:
    return str(T0 + timedelta(hours=hours))


def series_rows(rng: random.Random, n: int, cols: list[str], offset: int = 0) -> list[list[str]]:
    """A clean hourly table: header, then ``n`` rows from hour ``offset``."""
    return [["date", *cols]] + [
        [_stamp(offset + r), *(f"{rng.uniform(-5, 5):.4f}" for _ in cols)] for r in range(n)
    ]


def broken_csv(rng: random.Random, big: int, rows: list[list[str]]) -> bytes:
    """``rows`` (a valid table) after 0-3 random mutations, as the bytes of a file."""
    sep, eol, head = ",", "\n", b""
    tail: list[bytes] = []
    for m in rng.sample(MUTATIONS, rng.choice([0, 1, 1, 2, 3])):
        try:  # a mutation that no longer fits the table (a row or column gone) is skipped
            body = len(rows) - 1
            r = rng.randint(1, body) if body else 0
            c = rng.randrange(len(rows[0]))
            j = rng.randint(1, len(rows[0]) - 1)  # a value column
            if m == "non-numeric" and r:
                rows[r][j] = rng.choice(["abc", "☺", "1_000", "0x1f"])
            elif m == "empty-cell" and r:
                rows[r][c] = ""
            elif m == "nan-inf" and r:
                rows[r][j] = rng.choice(["nan", "NaN", "inf", "-inf"])
            elif m == "huge-value" and r:
                rows[r][j] = rng.choice(["1e308", "-1e308", "1e309"])
            elif m == "duplicate-time" and r > 1:
                rows[r][0] = rows[r - 1][0]
            elif m == "swap-rows" and body > 2:
                a, b = rng.sample(range(1, len(rows)), 2)
                rows[a], rows[b] = rows[b], rows[a]
            elif m == "bad-time" and r:
                rows[r][0] = rng.choice(["2020-13-01 00:00", "yesterday", "", "2020-01-01 25:00"])
            elif m == "timezone" and r:
                rows[r][0] += rng.choice(["+02:00", "Z", "-00:30"])
            elif m == "gap" and body > 4:
                del rows[r : r + rng.randint(1, 3)]
            elif m == "far-gap" and body > 2:
                rows[-1][0] = rng.choice(["9999-12-31 23:00:00", "2120-01-01 00:00:00"])
            elif m == "half-step" and r:
                rows[r][0] = rows[r][0][:14] + "30:00"
            elif m == "drop-column":
                for row in rows:
                    if c < len(row):
                        del row[c]
            elif m == "extra-column":
                for k, row in enumerate(rows):
                    row.append("extra" if k == 0 else str(k))
            elif m == "ragged-row" and r:
                rows[r] = rows[r][: rng.randrange(len(rows[r]))] or [""]
            elif m == "header-only":
                del rows[1:]
            elif m == "no-header" and body:
                del rows[0]
            elif m == "blank-lines" and r:
                rows.insert(r, [])
            elif m == "quoted" and r:
                rows[r][c] = '"' + rows[r][c] + rng.choice(['"', "\n", '""', ""])
            elif m == "spaces" and r:
                rows[r] = [f"  {x} " for x in rows[r]]
            elif m == "date-only":
                for row in rows[1:]:
                    row[0] = row[0][:10]
            elif m == "constant":
                for row in rows[1:]:
                    row[1:] = ["1.5"] * (len(row) - 1)
            elif m == "bom":
                head = b"\xef\xbb\xbf"
            elif m == "crlf":
                eol = "\r\n"
            elif m == "semicolon":
                sep = ";"
            elif m == "giant-line":
                tail.append(b"2021-01-01 00:00:00," + b"1" * big + b"\n")
            elif m == "random-bytes":
                tail.append(rng.randbytes(rng.randint(1, 4096)))
            elif m == "bad-utf8" and r:
                rows[r][c] += "\udcff"
            elif m == "nul" and r:
                rows[r][c] += "\x00"
            elif m == "long-series" and len(rows[0]) > 1:
                n = max(1, big // 40)
                rows = [rows[0]] + [
                    [_stamp(k), *(f"{(k * 7919 % 1000) / 100:.2f}" for _ in rows[0][1:])]
                    for k in range(n)
                ]
        except (IndexError, ValueError):
            pass
    text = eol.join(sep.join(row) for row in rows) + eol
    return head + text.encode("utf-8", "surrogateescape") + b"".join(tail)


def forecast_options(rng: random.Random) -> list[str]:
    """Random values of random forecast options (after the base ones: the last wins)."""
    extra: list[str] = []
    for _ in range(rng.choice([0, 0, 1, 2, 3, 4])):
        opt = rng.choice(list(FORECAST_OPTIONS))
        extra += [opt, rng.choice(FORECAST_OPTIONS[opt] if rng.random() < 0.8 else VALUES)]
    if rng.random() < 0.3:
        extra.append(rng.choice(FORECAST_FLAGS))
    return extra


def copy_run(source: Path, dest: Path) -> Path:
    """A fresh copy of a shared run for a case that may write (or be told to write) into it."""
    if dest.exists():
        shutil.rmtree(dest)
    if source.is_dir():
        shutil.copytree(source, dest)
    return dest


def out_path(rng: random.Random, work: Path, name: str, src: Path, suffix: str) -> str:
    """A good or bad ``--out`` (always under ``work``): fresh, an existing file or folder, a
    path under a file, the source run or a folder or file in it, a too-long or odd name."""
    kind = rng.choice(
        ["fresh", "fresh", "fresh", "file", "under-file", "source", "source-best", "in-source",
         "source-file", "full-dir", "empty-dir", "long", "odd", "slash", "empty", "no-parent"]
    )  # fmt: skip
    base = work / f"{name}{suffix}"
    if kind in ("file", "under-file"):
        base.write_bytes(b"not a checkpoint\n")
        return str(base / "sub" if kind == "under-file" else base)
    if kind in ("full-dir", "empty-dir"):
        base.mkdir(exist_ok=True)
        if kind == "full-dir":
            (base / "notes.txt").write_text("keep me\n")
        return str(base)
    return {
        "fresh": str(base),
        "source": str(src),
        "source-best": str(src / "best"),
        "in-source": str(src / f"inner{suffix}"),
        "source-file": str(src / rng.choice(["config.json", "best/model.json", "results.json"])),
        "long": str(work / ("q" * 300)),
        "odd": str(work / f"☺ {name}\t{suffix}"),
        "slash": str(base) + "/",
        "empty": "",
        "no-parent": str(work / "missing" / f"{name}{suffix}"),
    }[kind]


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
    # the shared runs of the kinds below, made with their own generator (the draws of the
    # kinds above stay those of the seed)
    clean = work / "clean.csv"
    table = series_rows(random.Random(seed), 60, ["a", "OT"])
    clean.write_text("\n".join(",".join(row) for row in table) + "\n")
    forecast = work / "forecast"
    yield ["train", "forecast", "--data", str(clean), *FORECAST_BASE, "--out", str(forecast)]
    int8 = work / "trained-int8"
    yield ["quantize", str(trained), "--out", str(int8), "--threads", "1"]
    for k in range(n):  # train forecast on broken time-series CSVs, random forecast options
        cols = ["a", "OT"] if rng.random() < 0.5 else ["a", "b", "OT"]
        data = broken_csv(rng, big, series_rows(rng, rng.randint(12, 80), cols))
        f = work / f"series{k}.{rng.choice(['csv', 'csv', 'csv', 'CSV', 'parquet', 'txt'])}"
        f.write_bytes(data)
        out = ["--out", str(work / f"fc{k}")]
        yield ["train", "forecast", "--data", str(f), *FORECAST_BASE, *forecast_options(rng), *out]
    for k in range(n):  # predict/inspect of the forecast run on broken recent tables
        cols = rng.choice([["OT"], ["a", "OT"], ["a"], ["OT", "b"]])
        data = broken_csv(rng, big, series_rows(rng, rng.randint(1, 30), cols, offset=60))
        f = work / f"recent{k}.{rng.choice(['csv', 'csv', 'csv', 'parquet', 'jsonl'])}"
        f.write_bytes(data)
        if rng.random() < 0.7:
            out = ["--output", str(work / f"pf{k}.{rng.choice(['csv', 'jsonl'])}")]
            args = ["predict", str(forecast), "--input", str(f), *out]
        else:
            args = ["inspect", str(forecast), "--input", str(f), "--out", str(work / f"fi{k}")]
        yield args + ["--threads", "1", "--device", "cpu"], forecast
    sources = [trained, int8, forecast]
    for k in range(n):  # quantize a copy of a run, to good and bad places, with random options
        src = copy_run(rng.choice(sources), work / f"qsrc{k}")
        point = src / "best" if rng.random() < 0.25 else src
        args = ["quantize", str(point), "--out", out_path(rng, work, f"q{k}", src, ""), *ONE]
        for _ in range(rng.randint(0, 2)):
            opt = rng.choice(["--mode", "--activations", "--device", "--threads"])
            pool = {"--mode": ["int8", "bf16"], "--activations": ["auto", "int8", "float"],
                    "--device": ["cpu", "auto", "cuda"], "--threads": ["1"]}[opt]  # fmt: skip
            args += [opt, rng.choice(pool * 3 + VALUES[:6])]
        args += [f for f in ("--overwrite", "--allow-nonfinite") if rng.random() < 0.3]
        yield args, src
    for k in range(n):  # export a copy of a run, to good and bad places, with random options
        src = copy_run(rng.choice(sources), work / f"esrc{k}")
        point = src / "best" if rng.random() < 0.25 else src
        suffix = rng.choice([".onnx", ".onnx", ".onnx", "", ".json", ".ONNX"])
        args = ["export", str(point), "--out", out_path(rng, work, f"e{k}", src, suffix), *ONE]
        for _ in range(rng.randint(0, 2)):
            opt = rng.choice(["--format", "--opset", "--int8-lstm", "--threads"])
            pool = {"--format": ["onnx"], "--opset": ["0", "7", "13", "17", "18", "21", "99"],
                    "--int8-lstm": ["dynamic", "dequantize"], "--threads": ["1"]}[opt]  # fmt: skip
            args += [opt, rng.choice(pool * 2 + VALUES[:10])]
        args += [f for f in ("--overwrite", "--allow-nonfinite") if rng.random() < 0.3]
        yield args, src


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=10, help="random cases of each kind")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--big", type=int, default=2_000_000, help="bytes of the giant-line files")
    p.add_argument("--memory-gb", type=float, default=6.0, help="address-space cap")
    p.add_argument("--out", default="", help="write the report as JSON here")
    p.add_argument("--work", default="", help="keep the cases' files in this (empty) folder")
    p.add_argument("--all", action="store_true", help="every case in the report, not only failures")
    a = p.parse_args(argv)
    cap = int(a.memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    os.environ.setdefault("LSTMKIT_MALLOC", "system")
    import torch

    torch.set_num_threads(1)
    results = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for case in cases(a.examples, a.seed, a.big, work):
            args, guard = case if isinstance(case, tuple) else (case, None)
            results.append(run(args, guard))
    failed = [r for r in results if not r["ok"]]
    report = {
        "tried": len(results),
        "handled": len(results) - len(failed),
        "failed": len(failed),
        "memory_cap_gb": a.memory_gb,
        "failures": failed,
        "max_seconds": max(r["seconds"] for r in results),
        "total_seconds": round(sum(r["seconds"] for r in results), 1),
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    if a.all:
        report["results"] = results
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
