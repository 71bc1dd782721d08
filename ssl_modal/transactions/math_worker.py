"""`MathWorker`: a helper process that serves one object's methods: a `ShardServer` scoring its shard's clients end
to end (`sharded_state.py`).

Threads do not pay here: a call's math is a few thousand small numpy operations, and each one hands the GIL
back and forth (docs/benchmarks.md). A process has its own interpreter: the calling process sends a method name
and arguments through a pipe (`send`) and reads the answer, or the error to raise, with `result()`.

The helper is a plain `python -c` subprocess (not `multiprocessing`, which would import the caller's main script
again in the child) with two pipes, started with a pickled copy of the object it serves (with the numpy math's
weights; about 1-4 s: it imports numpy and torch) and kept until `close()`; it ends by itself when the calling
process ends (its pipe closes). It pins itself to one of the caller's allowed CPUs other than the one the caller
runs on (helper k of several: the k-th such CPU, round robin).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path

# `python -c` puts the current directory first on sys.path: dropped, so that the caller's ssl_modal (PYTHONPATH: the
# caller's sys.path) is imported even when started from another checkout's folder
_CHILD = (
    "import sys; del sys.path[0]; from ssl_modal.transactions.math_worker import _serve; "
    "_serve(*map(int, sys.argv[1:]))"
)


def _current_cpu() -> int | None:
    try:  # field 39 of /proc/self/stat: the CPU this process last ran on (Linux)
        return int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[36])
    except (OSError, ValueError, IndexError):
        return None


def _other_cpu(k: int = 0) -> int:
    """The k-th (round robin) CPU this process may use other than the one it runs on (-1: none). A pipe write
    wakes its reader on the writer's CPU (a "sync" wake-up); pinned elsewhere, the helper computes beside the
    caller from the start."""
    if not hasattr(os, "sched_getaffinity"):
        return -1
    others = sorted(os.sched_getaffinity(0) - {_current_cpu()}, reverse=True)
    return others[k % len(others)] if len(others) and len(os.sched_getaffinity(0)) > 1 else -1


def _serve(read_fd: int, write_fd: int, cpu: int = -1) -> None:  # pragma: no cover - runs in the helper process
    if cpu >= 0:
        os.sched_setaffinity(0, {cpu})
    jobs, results = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    import torch

    torch.set_num_threads(1)
    target = pickle.loads(jobs.recv_bytes())
    while True:
        try:
            job = pickle.loads(jobs.recv_bytes())
        except EOFError:  # the calling process ended
            return
        if job is None:
            return
        try:
            out = (True, getattr(target, job[0])(*job[1]))
        except BaseException as exc:  # noqa: BLE001 - sent back and raised in the caller
            out = (False, exc)
        results.send_bytes(pickle.dumps(out, protocol=5))


class MathWorker:
    """A helper process serving `target`'s methods (`target` is pickled to it once; `k`: which other CPU)."""

    def __init__(self, target, k: int = 0):
        jobs_r, jobs_w = os.pipe()
        results_r, results_w = os.pipe()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # the caller's ssl_modal
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(jobs_r), str(results_w), str(_other_cpu(k))],
                pass_fds=(jobs_r, results_w),
                env=env,
            )
        finally:
            os.close(jobs_r)
            os.close(results_w)
        self._jobs, self._results = Connection(jobs_w, readable=False), Connection(results_r, writable=False)
        self._jobs.send_bytes(pickle.dumps(target, protocol=5))

    def send(self, method: str, *args) -> None:
        """Call `target.method(*args)` in the helper; `result()` returns its output (or raises its error)."""
        self._jobs.send_bytes(pickle.dumps((method, args), protocol=5))

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
