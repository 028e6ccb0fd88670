"""Where an annotator's back-end runs, seen from the learner's process: a worker process (default; a hung or
crashing back-end cannot stall or kill the learner, and can be killed), a thread (no process; a hung call
cannot be killed, only abandoned) or a Ray actor (the ``distributed`` extra). Each executor is one
incarnation of the worker: the annotator starts a new one when it dies. The worker's side is
:mod:`zoo.llm.annotation_worker`.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import queue
import sys
import threading
import time
from multiprocessing.connection import wait

from zoo.errors import ConfigError, MissingExtraError
from zoo.llm.annotation_worker import RayWorker, describe, process_main, serve

BACKGROUNDS = ("process", "thread", "ray", "sync")


class WorkerDied(Exception):
    """The worker is gone (crashed, killed, could not start): its batch in flight is lost."""


class BatchFailed(Exception):
    """The back-end raised on a batch (the worker lives on)."""

    def __init__(self, text: str, metrics: dict):
        super().__init__(text)
        self.text, self.metrics = text, metrics


def default_start_method() -> str:
    """``fork`` where there is one and CUDA is not initialised in this process, else ``spawn``."""
    if "fork" not in mp.get_all_start_methods():
        return "spawn"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "spawn"
    return "fork"


def _wait_started(get, timeout_s: float, closing: threading.Event, what: str, dead=lambda: None):
    """Waits for the worker's first message (``get(slice_s)`` returns it or ``None``); its pid on "ready"."""
    deadline = time.monotonic() + timeout_s
    while True:
        if closing.is_set():
            raise WorkerDied("the annotator is closing")
        message = get(min(0.1, max(0.0, deadline - time.monotonic())))
        if message is not None:
            if message[0] == "ready":
                return message[1]
            raise WorkerDied(f"the {what}'s back-end could not start: {message[1]}")
        death = dead()
        if death:
            raise WorkerDied(death)
        if time.monotonic() > deadline:
            raise WorkerDied(f"the {what} did not start within {timeout_s:g} s")


class ProcessExecutor:
    """The back-end in a daemon worker process, talked to over two pipes."""

    kind = "process"

    def __init__(self, spec, start_method: str | None = None):
        if start_method is not None and start_method not in mp.get_all_start_methods():
            raise ConfigError(f"start_method must be one of {mp.get_all_start_methods()}, got {start_method!r}")
        self.spec, self.start_method = spec, start_method
        self.proc = None
        self.ident: int | None = None
        self._req = self._res = None

    def _death(self) -> str | None:
        if self.proc is not None and not self.proc.is_alive():
            return f"the worker process exited with code {self.proc.exitcode}"
        return None

    def _recv(self, timeout_s: float):
        ready = wait([self._res, self.proc.sentinel], timeout_s)
        if self._res in ready:
            try:
                return self._res.recv()
            except (EOFError, OSError):
                raise WorkerDied(self._death() or "the worker process closed its pipe") from None
        if ready:
            raise WorkerDied(self._death() or "the worker process is gone")
        return None

    def start(self, timeout_s: float, closing: threading.Event) -> None:
        ctx = mp.get_context(self.start_method or default_start_method())
        req_r, req_w = ctx.Pipe(duplex=False)
        res_r, res_w = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=process_main, args=(self.spec, req_r, res_w, (req_w, res_r)), daemon=True,
                                name="zoo-oni-annotator")
        self.proc.start()
        req_r.close()
        res_w.close()
        self._req, self._res = req_w, res_r
        try:
            self.ident = _wait_started(self._recv, timeout_s, closing, "worker process")
        except WorkerDied:
            self.kill()
            raise

    def submit(self, batch_id: int, requests: list) -> None:
        try:
            self._req.send(("batch", batch_id, requests))
        except (OSError, ValueError):
            raise WorkerDied(self._death() or "the worker process's pipe is broken") from None

    def result(self, timeout_s: float):
        """``(outcomes, metrics)`` when the batch is done, ``None`` if not yet; raises WorkerDied / BatchFailed."""
        message = self._recv(timeout_s)
        if message is None:
            return None
        if message[0] == "failed":
            raise BatchFailed(message[2], message[3])
        return message[2], message[3]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.is_alive()

    def stop(self, grace_s: float = 0.5) -> None:
        if self.proc is None:
            return
        try:
            self._req.send(("stop",))
        except (OSError, ValueError):
            pass
        self.proc.join(grace_s)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(0.5)
        self.kill()

    def kill(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.is_alive():
            proc.kill()
        proc.join(2.0)
        for connection in (self._req, self._res):
            try:
                connection.close()
            except (OSError, AttributeError):
                pass


class ThreadExecutor:
    """The back-end on a daemon thread of this process (for where a process cannot be used)."""

    kind = "thread"

    def __init__(self, spec):
        self.spec = spec
        self.thread: threading.Thread | None = None
        self.ident: int | None = None
        self._in: queue.Queue = queue.Queue()
        self._out: queue.Queue = queue.Queue()

    def _main(self) -> None:
        try:
            backend = self.spec.build()
        except BaseException as exc:  # noqa: BLE001  (reported to the dispatcher)
            self._out.put(("init_error", describe(exc)))
            return
        self._out.put(("ready", threading.get_ident()))
        serve(backend, self._in.get, self._out.put)

    def _get(self, timeout_s: float):
        try:
            return self._out.get(timeout=max(timeout_s, 1e-4))
        except queue.Empty:
            return None

    def start(self, timeout_s: float, closing: threading.Event) -> None:
        self.thread = threading.Thread(target=self._main, name="zoo-oni-annotator", daemon=True)
        self.thread.start()
        def dead():
            return None if self.thread.is_alive() or not self._out.empty() else "the worker thread ended"

        self.ident = _wait_started(self._get, timeout_s, closing, "worker thread", dead)

    def submit(self, batch_id: int, requests: list) -> None:
        if not self.alive():
            raise WorkerDied("the worker thread ended")
        self._in.put(("batch", batch_id, requests))

    def result(self, timeout_s: float):
        message = self._get(timeout_s)
        if message is None:
            if not self.alive():
                raise WorkerDied("the worker thread ended")
            return None
        if message[0] == "failed":
            raise BatchFailed(message[2], message[3])
        return message[2], message[3]

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def stop(self, grace_s: float = 0.5) -> None:
        self._in.put(("stop",))
        if self.thread is not None:
            self.thread.join(grace_s)  # a thread stuck in a call is abandoned (it is a daemon)

    def kill(self) -> None:
        self._in.put(None)


def _ray():
    try:
        import ray
    except ModuleNotFoundError as exc:
        raise MissingExtraError("The Ray annotator worker", "distributed", exc) from exc
    return ray


_RAY_CLASS = None


class RayExecutor:
    """The back-end in a Ray actor (``ray_options``: passed to ``.options()``, default one CPU)."""

    kind = "ray"

    def __init__(self, spec, options: dict | None = None):
        _ray()
        self.spec, self.options = spec, {"num_cpus": 1, "max_restarts": 0, **(options or {})}
        self.actor = None
        self.ident: int | None = None
        self._ref = None

    def _call(self, ref, timeout_s: float):
        ray = _ray()
        ready, _ = ray.wait([ref], timeout=max(timeout_s, 0.0))
        if not ready:
            return None
        try:
            return (ray.get(ready[0]),)
        except ray.exceptions.RayActorError as exc:
            raise WorkerDied(f"the Ray actor died: {str(exc)[:300]}") from None
        except ray.exceptions.RayTaskError as exc:
            raise BatchFailed(str(exc)[:500], {}) from None
        except ray.exceptions.RayError as exc:  # e.g. the actor is unavailable
            raise WorkerDied(f"the Ray actor failed: {str(exc)[:300]}") from None

    def start(self, timeout_s: float, closing: threading.Event) -> None:
        global _RAY_CLASS
        ray = _ray()
        if _RAY_CLASS is None:
            _RAY_CLASS = ray.remote(RayWorker)
        self.actor = _RAY_CLASS.options(**self.options).remote(self.spec)
        ref = self.actor.ready.remote()

        def get(slice_s):
            try:
                got = self._call(ref, slice_s)
            except BatchFailed as exc:
                return ("init_error", exc.text)
            return None if got is None else ("ready", got[0])

        try:
            self.ident = _wait_started(get, timeout_s, closing, "Ray actor")
        except WorkerDied:
            self.kill()
            raise

    def submit(self, batch_id: int, requests: list) -> None:
        self._ref = self.actor.run.remote(requests)

    def result(self, timeout_s: float):
        got = self._call(self._ref, timeout_s)
        return None if got is None else got[0]

    def alive(self) -> bool:
        return self.actor is not None

    def stop(self, grace_s: float = 0.5) -> None:
        self.kill()

    def kill(self) -> None:
        if self.actor is not None:
            with contextlib.suppress(Exception):  # already gone
                _ray().kill(self.actor, no_restart=True)
            self.actor = None


def make_executor(background: str, spec, start_method: str | None = None, ray_options: dict | None = None):
    if background == "process":
        return ProcessExecutor(spec, start_method)
    if background == "thread":
        return ThreadExecutor(spec)
    if background == "ray":
        return RayExecutor(spec, ray_options)
    raise ConfigError(f"background must be one of {', '.join(BACKGROUNDS)}, got {background!r}")
