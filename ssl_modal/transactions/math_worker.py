"""`MathWorker`: a helper process that runs `EventMath.features` on half of a chunk's clients (`processes=2`).

Threads do not pay here: a chunk's math is a few thousand small numpy operations, and each one hands the GIL
back and forth (docs/benchmarks.md). A process has its own interpreter: the calling process sends one half's
inputs (event fields, states, counts: about 0.7 MB for 500 events) through a pipe, computes the other half
itself, and receives the features and new states back. SQLite is not touched by the helper: the calling process
reads and writes every state in its one transaction, so a batch stays atomic.

The process is started (spawn: a fresh interpreter, about 1-2 s once) with a copy of the math's weights on first
use and lives until `close()` or the end of the calling process.
"""

from __future__ import annotations

import multiprocessing as mp


def _serve(conn, math) -> None:  # pragma: no cover - runs in the helper process
    import torch

    torch.set_num_threads(1)
    while True:
        job = conn.recv()
        if job is None:
            return
        try:
            conn.send((True, math.features(*job)))
        except BaseException as exc:  # noqa: BLE001 - sent back and raised in the caller
            conn.send((False, exc))


class MathWorker:
    def __init__(self, math):
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, math), daemon=True, name="ssl_modal_math")
        self.process.start()
        child.close()
        self.math = math  # the math it was started with (a rebuilt math needs a new worker)

    def submit(self, *args) -> None:
        """Send `EventMath.features` arguments; `result()` returns its output."""
        self._conn.send(args)

    def result(self):
        try:
            ok, value = self._conn.recv()
        except EOFError:
            raise RuntimeError(
                f"incremental scoring helper process ended unexpectedly (exit code {self.process.exitcode})"
            ) from None
        if not ok:
            raise value
        return value

    def close(self) -> None:
        if self.process.is_alive():
            try:
                self._conn.send(None)
            except OSError:
                pass
            self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
        self._conn.close()
