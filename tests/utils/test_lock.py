"""The run-folder lock: one holder, named in the refusal, gone with its process."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lstmkit.utils.errors import UserError
from lstmkit.utils.lock import lock_folder

ROOT = Path(__file__).resolve().parents[2]


def test_one_holder_among_racers_on_a_folder_that_does_not_exist_yet(tmp_path):
    folder = tmp_path / "a" / "run"
    start = threading.Barrier(8)
    got, refused = [], []

    def race():
        start.wait()
        try:
            got.append(lock_folder(folder))
        except UserError as e:
            refused.append(str(e))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 1 and len(refused) == 7
    assert set(refused) == {f"{folder} is in use by another lstmkit train (PID {os.getpid()})"}
    got[0].release()
    with lock_folder(folder) as lock:  # free again once released
        assert lock.path.read_text() == f"{os.getpid()}\n"


def test_a_sigkilled_holder_leaves_no_stale_lock(tmp_path):
    code = (
        "import sys, time; from lstmkit.utils.lock import lock_folder; "
        f"lock = lock_folder({str(tmp_path)!r}); print('held', flush=True); time.sleep(60)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        with pytest.raises(
            UserError, match=rf"in use by another lstmkit train \(PID {holder.pid}\)"
        ):
            lock_folder(tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock_folder(tmp_path).release()


def test_a_file_or_a_file_parent_is_refused(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(UserError, match=f"--out {f} is a file"):
        lock_folder(f)
    with pytest.raises(UserError, match=f"--out {f / 'run'}: a parent of it is a file"):
        lock_folder(f / "run")
    assert f.read_text() == "x"
