"""The command under random options and random input files (tests/cli/fuzz_cli.py), in one
process capped at 6 GB of address space: every case ends with status 0, or 2 and one error
line, and leaves the run it reads unchanged. ``make fuzz`` runs the same with many more cases
(LSTMKIT_FUZZ_EXAMPLES)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _fuzz(tmp_path: Path, examples: int, seed: int, big: int, timeout: int) -> dict:
    report = tmp_path / "report.json"
    args = ["--examples", str(examples), "--seed", str(seed), "--big", str(big)]
    proc = subprocess.run(
        [sys.executable, "-m", "tests.cli.fuzz_cli", *args, "--out", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert report.exists(), proc.stderr[-2000:]
    return json.loads(report.read_text())


def test_random_options_and_files_end_in_status_0_or_one_error_line(tmp_path):
    report = _fuzz(tmp_path, examples=6, seed=0, big=2_000_000, timeout=300)
    # 3 shared runs (adding, forecast, the adding run's int8 copy), then 7 kinds of 6 cases
    assert report["tried"] == 3 + 7 * 6
    assert report["failed"] == 0, report["failures"]


@pytest.mark.fuzz
def test_fuzz_long(tmp_path):
    examples = int(os.environ.get("LSTMKIT_FUZZ_EXAMPLES", "200"))
    seed = int(os.environ.get("LSTMKIT_FUZZ_SEED", "1"))
    report = _fuzz(tmp_path, examples=examples, seed=seed, big=50_000_000, timeout=3600)
    out = os.environ.get("LSTMKIT_FUZZ_REPORT")
    if out:
        Path(out).write_text(json.dumps(report, indent=2, default=str) + "\n")
    assert report["failed"] == 0, report["failures"][:5]
