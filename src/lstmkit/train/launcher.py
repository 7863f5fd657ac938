"""``python -m lstmkit.train.launcher <torchrun options> -m lstmkit ...``: torch's launcher, tied
to its parent and quiet.

The process between ``lstmkit train --nproc N`` and its N workers. It differs from
``python -m torch.distributed.run`` in three ways: it stops (and stops its workers) when the
``lstmkit`` process above it dies, however that dies; its own log goes to
``<out>/logs/launcher.log`` instead of the terminal; and a worker's failure is one line naming the
rank, its exit status and its log, instead of torch's 40-line ``ChildFailedError`` report.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

from lstmkit.train import distributed as dist_utils


def describe_failure(rank: int, pid: int, exitcode: int, logs: Path) -> str:
    """One line for the worker that failed first: its rank, status and log (and its error)."""
    log = dist_utils.rank_log(logs, rank)
    if exitcode < 0:
        how = f"was killed by {signal.Signals(-exitcode).name}"
    else:
        how = f"exited with status {exitcode}"
    said = _last_error(log)
    return (
        f"lstmkit: error: rank {rank} (PID {pid}) {how}{': ' + said if said else ''}; "
        f"the other processes were stopped; its log: {log}"
    )


def _last_error(log: Path) -> str:
    """The worker's own ``lstmkit: error:`` line, if it wrote one before it ended."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    errors = [ln for ln in lines if ln.startswith("lstmkit: error: ")]
    return errors[-1].removeprefix("lstmkit: error: ") if errors else ""


def _log_to(path: Path) -> None:
    """Send torch's log records and Python's warnings to ``path`` instead of the terminal.

    torch gives its loggers their own stderr handlers (they do not propagate to the root), so
    each of those is swapped for the file.
    """
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    torch_names = [n for n in logging.root.manager.loggerDict if n.startswith("torch")]
    for logger in {logging.root, *map(logging.getLogger, torch_names)}:
        to_terminal = [
            h
            for h in logger.handlers
            if type(h) is logging.StreamHandler and h.stream in (sys.stderr, sys.stdout)
        ]
        for h in to_terminal:
            logger.removeHandler(h)
        if to_terminal or logger is logging.root:
            logger.addHandler(handler)
    logging.captureWarnings(True)


def main(argv: list[str]) -> int:
    dist_utils.die_with_parent()
    os.environ[dist_utils.PARENT_ENV] = str(os.getpid())  # the workers' expected parent
    logs = Path(os.environ[dist_utils.LOGS_ENV])
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    _log_to(logs / "launcher.log")
    try:
        run(parse_args(argv))
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        print(describe_failure(rank, failure.pid, failure.exitcode, logs), file=sys.stderr)
        return 2 if failure.exitcode == 2 else 1
    except SignalException as e:  # the agent has stopped the workers
        logging.getLogger(__name__).warning("stopped by %s", e.sigval.name)
        return 128 + int(e.sigval)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
