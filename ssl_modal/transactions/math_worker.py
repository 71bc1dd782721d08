"""`MathWorker`: a helper process that runs `EventMath.features` on half of a chunk's clients (`processes=2`).

Threads do not pay here: a chunk's math is a few thousand small numpy operations, and each one hands the GIL
back and forth (docs/benchmarks.md). A process has its own interpreter: the calling process sends one half's
inputs (event fields, states, counts: about 0.7 MB for 500 events) through a pipe, computes the other half
itself, and receives the features and new states back. SQLite is not touched by the helper: the calling process
reads and writes every state in its one transaction, so a batch stays atomic.

The helper is a plain `python -c` subprocess (not `multiprocessing`, which would import the caller's main script
again in the child) with two pipes, started on first use with a copy of the math's weights (about 1-4 s: it
imports numpy and torch) and kept until `close()`; it ends by itself when the calling process ends (its pipe
closes). It pins itself to one of the caller's allowed CPUs other than the one the caller runs on.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path

_CHILD = "import sys; from ssl_modal.transactions.math_worker import _serve; _serve(*map(int, sys.argv[1:]))"


def _current_cpu() -> int | None:
    try:  # field 39 of /proc/self/stat: the CPU this process last ran on (Linux)
        return int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[36])
    except (OSError, ValueError, IndexError):
        return None


def _other_cpu() -> int:
    """A CPU this process may use other than the one it runs on (-1: none). A pipe write wakes its reader on the
    writer's CPU (a "sync" wake-up); pinned elsewhere, the helper computes beside the caller from the start."""
    if not hasattr(os, "sched_getaffinity"):
        return -1
    others = sorted(os.sched_getaffinity(0) - {_current_cpu()})
    return others[-1] if len(others) and len(os.sched_getaffinity(0)) > 1 else -1


def _serve(read_fd: int, write_fd: int, cpu: int = -1) -> None:  # pragma: no cover - runs in the helper process
    if cpu >= 0:
        os.sched_setaffinity(0, {cpu})
    jobs, results = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    import torch

    torch.set_num_threads(1)
    math = pickle.loads(jobs.recv_bytes())
    while True:
        try:
            job = pickle.loads(jobs.recv_bytes())
        except EOFError:  # the calling process ended
            return
        if job is None:
            return
        try:
            out = (True, math.features(*job))
        except BaseException as exc:  # noqa: BLE001 - sent back and raised in the caller
            out = (False, exc)
        results.send_bytes(pickle.dumps(out, protocol=5))


class MathWorker:
    def __init__(self, math):
        jobs_r, jobs_w = os.pipe()
        results_r, results_w = os.pipe()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # the caller's ssl_modal
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(jobs_r), str(results_w), str(_other_cpu())],
                pass_fds=(jobs_r, results_w),
                env=env,
            )
        finally:
            os.close(jobs_r)
            os.close(results_w)
        self._jobs, self._results = Connection(jobs_w, readable=False), Connection(results_r, writable=False)
        self._jobs.send_bytes(pickle.dumps(math, protocol=5))
        self.math = math  # the math it was started with (a rebuilt math needs a new worker)

    def submit(self, *args) -> None:
        """Send `EventMath.features` arguments; `result()` returns its output."""
        self._jobs.send_bytes(pickle.dumps(args, protocol=5))

    def result(self):
        try:
            ok, value = pickle.loads(self._results.recv_bytes())
        except EOFError:
            raise RuntimeError(
                f"incremental scoring helper process ended unexpectedly (exit code {self.process.poll()})"
            ) from None
        if not ok:
            raise value
        return value

    def close(self) -> None:
        try:
            self._jobs.send_bytes(pickle.dumps(None))
        except OSError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._jobs.close()
        self._results.close()
