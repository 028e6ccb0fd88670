"""The loop of an annotator's background worker (a process, a thread, or a Ray actor): it builds its back-end
from a :class:`~zoo.llm.nethack_backends.BackendSpec` and answers one batch at a time until it is told to
stop or its parent goes away. Kept free of torch and the agents, so that a spawned worker starts fast.

Messages from the parent: ``("batch", batch_id, requests)`` and ``("stop",)``. To the parent: ``("ready",
pid)`` or ``("init_error", text)`` once, then ``("done", batch_id, outcomes, metrics)`` or ``("failed",
batch_id, text, metrics)`` per batch (``metrics``: the back-end's cumulative counters).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Sequence


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def serve(backend, receive: Callable[[], tuple], send: Callable[[tuple], None]) -> None:
    """Answers batches from ``receive()`` through ``send`` until a stop, ``None``, or a closed channel."""
    try:
        while True:
            try:
                message = receive()
            except (EOFError, OSError):  # the parent is gone
                return
            if message is None or message[0] == "stop":
                return
            _, batch_id, requests = message
            try:
                reply = ("done", batch_id, backend.run(requests), backend.metrics())
            except Exception as exc:  # noqa: BLE001  (a back-end bug fails the batch, not the worker)
                reply = ("failed", batch_id, describe(exc), backend.metrics())
            try:
                send(reply)
            except (EOFError, OSError):
                return
    finally:
        with contextlib.suppress(Exception):  # closing is best effort
            backend.close()


def process_main(spec, requests, results, unused: Sequence = ()) -> None:
    """A worker process: ``requests`` / ``results`` are its ends of two pipes; ``unused`` are the parent's
    ends, inherited through fork and closed here (so that the worker sees EOF when the parent dies)."""
    for connection in unused:
        connection.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the learner, which closes its annotator
    try:
        backend = spec.build()
    except BaseException as exc:  # noqa: BLE001  (reported to the parent, which retries later)
        try:
            results.send(("init_error", describe(exc)))
        except OSError:
            pass
        return
    try:
        results.send(("ready", os.getpid()))
    except OSError:
        return
    serve(backend, requests.recv, results.send)


class RayWorker:
    """The body of the Ray actor variant (wrapped by ``ray.remote`` when used)."""

    def __init__(self, spec):
        self.backend = spec.build()

    def ready(self) -> int:
        return os.getpid()

    def run(self, requests):
        return self.backend.run(requests), self.backend.metrics()
