"""lstmkit.utils.malloc: when the allocator is tuned, when it is left alone, and that the
setting really keeps large blocks off fresh mappings (glibc's own counters, in a subprocess so
this test process keeps its allocator)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from lstmkit.utils.errors import UserError
from lstmkit.utils.malloc import ENV, malloc_state, tune_malloc

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({ENV: "system"}, f"{ENV}=system"),
        ({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}, "jemalloc preloaded"),
        ({"LD_PRELOAD": "libtcmalloc_minimal.so.4"}, "tcmalloc preloaded"),
        ({"MALLOC_ARENA_MAX": "2"}, "the user's MALLOC_ARENA_MAX"),
        ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}, "the user's GLIBC_TUNABLES"),
    ],
)
def test_left_alone(env, reason):
    state = tune_malloc(env)
    assert state.startswith("system (") and reason in state
    assert malloc_state() == state


def test_a_bad_setting_is_an_error_naming_it():
    with pytest.raises(UserError, match="LSTMKIT_MALLOC='fast' is not understood"):
        tune_malloc({ENV: "fast"})


# Allocates and frees a 64 MB block, then reports glibc's counters (mallinfo2, glibc >= 2.33):
# "mapped" is the growth of hblkhd (bytes in mmap-ed blocks) while the block is live; "kept" is
# the free heap left in the process after the free (fordblks).
PROBE = r"""
import ctypes, json, sys
from lstmkit.utils.malloc import tune_malloc
state = tune_malloc({}) if sys.argv[1] == "tune" else "default"
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split())]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
before = libc.mallinfo2()
p = libc.malloc(64 << 20)
live = libc.mallinfo2()
libc.free(p)
after = libc.mallinfo2()
print(json.dumps({"state": state, "mapped": live.hblkhd - before.hblkhd, "kept": after.fordblks}))
"""


def _probe(mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


@pytest.mark.skipif(not GLIBC, reason="the allocator is tuned on glibc (Linux) only")
def test_tuned_keeps_large_blocks_in_the_heap():
    default, tuned = _probe("default"), _probe("tune")
    assert default["mapped"] >= 64 << 20  # glibc's default: a fresh mapping, unmapped on free
    assert default["kept"] < 64 << 20
    assert tuned["state"].startswith("glibc tuned")
    assert tuned["mapped"] == 0  # from the heap ...
    assert tuned["kept"] >= 64 << 20  # ... and kept there for the next step after the free
