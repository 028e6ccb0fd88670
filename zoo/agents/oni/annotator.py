"""ONI's annotators: an LLM (or the keyword judge) labels the agent's NetHack messages in the background
while the learner trains, and the learner collects the labels without ever waiting.

The interface, the same for every back-end::

    ann.submit(messages) -> int        # classification requests; messages already labelled, queued or in
                                       # flight are skipped; returns how many were queued
    ann.submit_pairs(pairs) -> int     # ranking requests (a, b); (b, a) counts as the same pair; a == b skipped
    ann.poll() -> Annotations          # never blocks: the results that arrived since the last poll, each once:
                                       # .labels [(message, 1 helpful | 0 not)],
                                       # .preferences [(a, b, p)], p = P(a is better) in {1, 0.5, 0}
    ann.stats() -> dict[str, float]    # counters, latency, queue, breaker and worker state (see Annotator.stats)
    ann.close()                        # stops the worker; idempotent (also on garbage collection and at exit)

Life cycle: requests wait in a bounded queue (``max_queue``; when full, the oldest are evicted, counted, and
may be submitted again). A dispatcher thread in the learner's process hands the worker (a process by default;
``background="thread"``, ``"ray"`` for a Ray actor, or ``"sync"``: work done inside ``submit``) the newest
``batch_size`` requests; when the queue is empty it waits ``idle_wait_s`` (the reference sleeps 5 s), waking
at once on close(). A request whose reply holds no label (classification; an unparsed ranking is a tie, as
in the reference) or that fails after the LLM client's own retries is queued again, at most
``max_attempts`` tries in all, then dropped (counted; it may be submitted again). ``breaker_threshold``
failures in a row open a circuit breaker: nothing is requested for ``breaker_cooldown_s`` (doubling up to
``breaker_max_cooldown_s``), then one probe; the queue is kept meanwhile and tries are not used up, so
annotation resumes where it was when the server comes back. A batch not answered within ``batch_timeout_s``
(a wedged back-end) has its worker killed; a worker that dies is started again (counted), its batch queued
again. Labels are delivered exactly once.

Back-ends: :class:`OpenAIAnnotator` (any OpenAI-compatible server), :class:`TransformersAnnotator` (a local
causal LM), :class:`KeywordAnnotator` (rules; for tests and CPU runs). Prompts: :mod:`zoo.agents.oni.prompts`.
"""

from __future__ import annotations

import math
import multiprocessing
import threading
import time
import weakref
from collections import Counter, OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from zoo.agents.oni.breaker import CircuitBreaker
from zoo.agents.oni.executors import BACKGROUNDS, BatchFailed, WorkerDied, make_executor
from zoo.errors import ConfigError
from zoo.llm.nethack_backends import (
    ERROR,
    OK,
    UNPARSED,
    BackendSpec,
    check_model_dir,
    validate_generation,
)
from zoo.llm.nethack_prompts import TEMPLATES, resolve_task


@dataclass
class Annotations:
    """Results since the last poll: ``labels`` [(message, 0|1)], ``preferences`` [(a, b, P(a is better))]."""

    labels: list[tuple[str, int]] = field(default_factory=list)
    preferences: list[tuple[str, str, float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels) + len(self.preferences)


class _Item:
    __slots__ = ("attempts", "key", "kind", "messages")

    def __init__(self, kind: str, messages: tuple[str, ...], key: tuple):
        self.kind, self.messages, self.key, self.attempts = kind, messages, key, 0


def _number(name: str, value, low: float, integer: bool = False, allow_zero: bool = False):
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    if not ok or not (value >= low if allow_zero else value > low) or value == float("inf"):
        kind = "an integer" if integer else "a finite number"
        raise ConfigError(f"{name} must be {kind} {'>=' if allow_zero else '>'} {low:g}, got {value!r}")
    return value


def _merge(done: dict, now: dict) -> dict[str, float]:
    """Back-end counters over worker incarnations: sums, maxima for ``*_max_s``; means are left out."""
    out = dict(done)
    for name, value in now.items():
        if name.endswith("_mean_s"):
            continue
        out[name] = max(out.get(name, 0.0), float(value)) if name.endswith("_max_s") else out.get(name, 0.0) + value
    return {name: float(out[name]) for name in sorted(out)}


class _Core:
    """The state shared by the caller's thread and the dispatcher thread (always under ``lock``)."""

    def __init__(self, spec: BackendSpec, background: str, batch_size: int, max_queue: int, idle_wait_s: float,
                 max_attempts: int, breaker: CircuitBreaker, batch_timeout_s: float, start_method, start_timeout_s,
                 ray_options):
        self.spec, self.background = spec, background
        self.batch_size, self.max_queue, self.idle_wait_s = batch_size, max_queue, idle_wait_s
        self.max_attempts, self.batch_timeout_s, self.start_timeout_s = max_attempts, batch_timeout_s, start_timeout_s
        self.start_method, self.ray_options = start_method, ray_options
        self.breaker = breaker
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self.queue: OrderedDict[tuple, _Item] = OrderedDict()  # oldest first
        self.known: dict[tuple, str] = {}  # key -> queued | in_flight | done
        self.in_flight: list[_Item] = []
        self.results: deque = deque()
        self.counts: Counter = Counter()
        self.errors: Counter = Counter()
        self.latencies: deque = deque(maxlen=1000)
        self.latency_total = 0.0
        self.llm_done: dict[str, float] = {}  # back-end counters of the workers that ended
        self.llm_now: dict[str, float] = {}
        self.executor = None
        self.worker_ident = None
        self.worker_started_at = 0.0
        self.restart_delay = 0.0
        self.last_error = ""
        self.started = time.monotonic()
        self.backend = None  # sync mode
        self.thread: threading.Thread | None = None
        self.closed = False

    # -- the caller's side ----------------------------------------------------------------------------------
    def submit(self, kind: str, entries: list[tuple[str, ...]]) -> int:
        queued = 0
        with self.lock:
            if self.closed:
                return 0
            for messages in entries:
                key = (kind, *(sorted(messages) if kind == "rank" else messages))
                if key in self.known:
                    continue
                self.queue[key] = _Item(kind, messages, tuple(key))
                self.known[key] = "queued"
                queued += 1
            self._bound()
        if self.background == "sync" and queued:
            self.run_sync()
        return queued

    def _bound(self) -> None:
        while len(self.queue) > self.max_queue:
            _, item = self.queue.popitem(last=False)
            del self.known[item.key]
            self.counts["evicted"] += 1

    def poll(self) -> Annotations:
        with self.lock:
            results = list(self.results)
            self.results.clear()
        out = Annotations()
        for result in results:
            (out.labels if len(result) == 2 else out.preferences).append(result)
        return out

    def stats(self) -> dict[str, float]:
        executor = self.executor
        alive = self.background == "sync" or bool(executor is not None and executor.alive())
        with self.lock:
            c = self.counts
            lat = sorted(self.latencies)
            n_lat = c["labels"] + c["preferences"]
            out = {name: float(c[name]) for name in ("requests", "failures", "unparsed", "retries", "dropped",
                                                      "evicted", "labels", "preferences", "duplicates", "batches",
                                                      "dispatcher_errors")}
            out.update({
                "labels_per_s": n_lat / max(time.monotonic() - self.started, 1e-9),
                "latency_mean_s": self.latency_total / n_lat if n_lat else 0.0,
                "latency_p95_s": lat[min(len(lat) - 1, math.ceil(0.95 * len(lat)) - 1)] if lat else 0.0,
                "queue": float(len(self.queue)), "in_flight": float(len(self.in_flight)),
                "breaker": float(self.breaker.state), "breaker_trips": float(self.breaker.trips),
                "worker_alive": float(alive), "worker_restarts": float(max(c["worker_starts"] - 1, 0)),
                "worker_deaths": float(c["worker_deaths"]), "worker_timeouts": float(c["worker_timeouts"]),
            })
            out.update({f"errors/{cause}": float(n) for cause, n in sorted(self.errors.items())})
            out.update(_merge(self.llm_done, self.llm_now))
        return out

    # -- bookkeeping (under the lock) -----------------------------------------------------------------------
    def _take(self, n: int) -> list[_Item]:
        with self.lock:
            batch = [self.queue.popitem(last=True)[1] for _ in range(min(n, len(self.queue)))]  # newest first
            for item in batch:
                self.known[item.key] = "in_flight"
            self.in_flight = batch
            return batch

    def _deliver(self, item: _Item, value) -> None:
        if self.known.get(item.key) == "done":  # never twice
            self.counts["duplicates"] += 1
            return
        self.known[item.key] = "done"
        if item.kind == "classify":
            self.results.append((item.messages[0], int(value)))
            self.counts["labels"] += 1
        else:
            self.results.append((item.messages[0], item.messages[1], float(value)))
            self.counts["preferences"] += 1

    def _again(self, item: _Item, use_try: bool) -> None:
        item.attempts += use_try
        if item.attempts >= self.max_attempts:
            self.counts["dropped"] += 1
            self.known.pop(item.key, None)
            return
        self.counts["retries"] += 1
        self.queue[item.key] = item  # the newest end: tried again soon
        self.known[item.key] = "queued"
        self._bound()

    def _settle(self, batch: list[_Item], outcomes: list, probe: bool) -> None:
        with self.lock:
            self.in_flight = []
            self.counts["batches"] += 1
            for item, (status, value, latency, detail) in zip(batch, outcomes):
                self.counts["requests"] += 1
                if status not in (OK, UNPARSED, ERROR):  # a back-end bug: a failure, not a crash
                    status, detail = ERROR, "backend_error"
                if status == ERROR:
                    self.counts["failures"] += 1
                    self.errors[str(detail).split(":", 1)[0] or "unknown"] += 1
                    self.breaker.failure()
                    self._again(item, use_try=not probe)  # a failed probe uses no try
                    continue
                self.breaker.success()
                if status == UNPARSED:
                    self.counts["unparsed"] += 1
                    if item.kind == "classify":
                        self._again(item, use_try=True)
                        continue
                    value = 0.5  # an unparsed ranking reply is a tie
                self.latencies.append(float(latency))
                self.latency_total += float(latency)
                self._deliver(item, value)

    def _lost(self, batch: list[_Item], cause: str) -> None:
        """The batch got no outcomes (the worker died or hung, the back-end raised): each request failed."""
        with self.lock:
            self.in_flight = []
            self.counts["requests"] += len(batch)
            self.counts["failures"] += len(batch)
            self.errors[cause] += len(batch)
            for item in batch:
                self._again(item, use_try=True)

    def _metrics(self, metrics: dict) -> None:
        with self.lock:
            self.llm_now = dict(metrics or {})

    # -- the dispatcher thread ------------------------------------------------------------------------------
    def start(self) -> None:
        if self.background != "sync":
            self.thread = threading.Thread(target=self.run, name="zoo-oni-dispatcher", daemon=True)
            self.thread.start()

    def run(self) -> None:
        try:
            while not self.closing.is_set():
                try:
                    self._step()
                except Exception as exc:  # noqa: BLE001  (a bug here must not end annotation silently)
                    with self.lock:
                        self.last_error = f"dispatcher: {type(exc).__name__}: {exc}"
                        self.counts["dispatcher_errors"] += 1
                    self.closing.wait(1.0)
        finally:
            self._retire(stop=True)

    def _step(self) -> None:
        if not self._ensure_worker():
            return
        with self.lock:
            n, probe = self.breaker.allowance(self.batch_size)
            wait_s = self.breaker.seconds_to_probe()
        if n == 0:
            self.closing.wait(min(max(wait_s, 0.01), 1.0))
            return
        batch = self._take(n)
        if not batch:
            self.closing.wait(self.idle_wait_s)
            return
        self._dispatch(batch, probe)

    def _ensure_worker(self) -> bool:
        executor = self.executor
        if executor is not None and executor.alive():
            return True
        if executor is not None:  # died between batches
            self._retire(stop=False)
        if self.restart_delay and self.closing.wait(self.restart_delay):
            return False
        executor = make_executor(self.background, self.spec, self.start_method, self.ray_options)
        try:
            executor.start(self.start_timeout_s, self.closing)
        except WorkerDied as exc:
            with self.lock:
                self.last_error = str(exc)
                self.counts["worker_start_failures"] += 1
            self.restart_delay = min(max(0.5, 2 * self.restart_delay), 30.0)
            return False
        with self.lock:
            self.executor, self.worker_ident = executor, executor.ident
            self.worker_started_at = time.monotonic()
            self.counts["worker_starts"] += 1
        return True

    def _retire(self, stop: bool) -> None:
        """Ends the current worker (``stop``: politely first) and keeps its back-end counters."""
        executor = self.executor
        if executor is None:
            return
        if stop:
            executor.stop(0.5)
        else:
            executor.kill()
            lived = time.monotonic() - self.worker_started_at
            self.restart_delay = 0.0 if lived > 10.0 else min(max(0.2, 2 * self.restart_delay), 30.0)
        with self.lock:
            self.counts["worker_deaths"] += not stop
            self.llm_done = _merge(self.llm_done, self.llm_now)
            self.llm_now, self.executor, self.worker_ident = {}, None, None

    def _dispatch(self, batch: list[_Item], probe: bool) -> None:
        executor = self.executor
        requests = [(item.kind, item.messages) for item in batch]
        deadline = time.monotonic() + self.batch_timeout_s
        try:
            executor.submit(self.counts["batches"] + 1, requests)
            while True:
                if self.closing.is_set():
                    with self.lock:  # back to the queue, untouched
                        for item in reversed(batch):
                            self.queue[item.key] = item
                            self.known[item.key] = "queued"
                        self.in_flight = []
                    executor.kill()  # busy with the batch: no polite stop
                    return
                got = executor.result(min(0.1, max(deadline - time.monotonic(), 0.0)))
                if got is not None:
                    break
                if time.monotonic() > deadline:
                    with self.lock:
                        self.counts["worker_timeouts"] += 1
                        self.last_error = f"a batch took longer than batch_timeout_s={self.batch_timeout_s:g} s"
                    self._lost(batch, "batch_timeout")
                    self._retire(stop=False)
                    return
        except WorkerDied as exc:
            with self.lock:
                self.last_error = str(exc)
            self._lost(batch, "worker_died")
            self._retire(stop=False)
            return
        except BatchFailed as exc:
            with self.lock:
                self.last_error = exc.text
            self._metrics(exc.metrics)
            self._lost(batch, "backend_error")
            return
        outcomes, metrics = got
        self._metrics(metrics)
        if len(outcomes) != len(batch):
            self._lost(batch, "backend_error")
            return
        self._settle(batch, outcomes, probe)

    def run_sync(self) -> None:
        """Sync mode: the queued work done here, in the caller's thread."""
        if self.backend is None:
            self.backend = self.spec.build()
        while True:
            with self.lock:
                n, probe = self.breaker.allowance(self.batch_size)
            batch = self._take(n) if n else []
            if not batch:
                return
            try:
                outcomes = self.backend.run([(item.kind, item.messages) for item in batch])
            except Exception as exc:  # noqa: BLE001  (counted; the items are tried again later)
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._lost(batch, "backend_error")
                return
            self._metrics(self.backend.metrics())
            self._settle(batch, outcomes, probe)

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        self.closing.set()
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(3.0)
            if thread.is_alive():  # the dispatcher is stuck talking to the worker: end the worker
                executor = self.executor
                if executor is not None:
                    executor.kill()
                thread.join(2.0)
        if self.backend is not None:
            self.backend.close()


class Annotator:
    """The machinery shared by the back-ends; see the module docstring. ``task`` (score, oracle,
    staircase-lvl<N> or an env id) picks the goal the judge is told."""

    def __init__(self, spec: BackendSpec, *, task: str = "score", batch_size: int = 100, max_queue: int = 10_000,
                 idle_wait_s: float = 5.0, max_attempts: int = 3, breaker_threshold: int = 5,
                 breaker_cooldown_s: float = 5.0, breaker_max_cooldown_s: float = 60.0,
                 batch_timeout_s: float = 600.0, background: str = "process", start_method: str | None = None,
                 start_timeout_s: float = 120.0, ray_options: dict | None = None):
        self.task = resolve_task(task)
        if background not in BACKGROUNDS:
            raise ConfigError(f"background must be one of {', '.join(BACKGROUNDS)}, got {background!r}")
        _number("batch_size", batch_size, 1, integer=True, allow_zero=True)
        _number("max_queue", max_queue, 1, integer=True, allow_zero=True)
        _number("max_attempts", max_attempts, 1, integer=True, allow_zero=True)
        _number("idle_wait_s", idle_wait_s, 0)
        _number("batch_timeout_s", batch_timeout_s, 0)
        _number("start_timeout_s", start_timeout_s, 0)
        if background == "process" and start_method is not None:
            make_executor("process", spec, start_method)  # validates the start method
        if background == "process" and multiprocessing.current_process().daemon:
            raise ConfigError("a daemonic process cannot start the annotator's worker process; pass "
                              "background='thread' (or 'ray') here")
        if background == "ray":
            make_executor("ray", spec, ray_options=ray_options)  # a clear error without the extra
        breaker = CircuitBreaker(breaker_threshold, breaker_cooldown_s, breaker_max_cooldown_s)
        self.background, self.batch_size = background, batch_size
        self._core = _Core(spec, background, batch_size, max_queue, float(idle_wait_s), max_attempts, breaker,
                           float(batch_timeout_s), start_method, float(start_timeout_s), ray_options)
        self._finalizer = weakref.finalize(self, self._core.close)
        self._core.start()

    def submit(self, messages: Sequence[str]) -> int:
        """Queues classification requests for the messages not yet labelled, queued or in flight; returns
        how many were queued (0 after close)."""
        if isinstance(messages, (str, bytes)):
            raise ConfigError("submit takes a sequence of messages, got a single string; pass [message]")
        entries = []
        for message in messages:
            if not isinstance(message, str):
                raise ConfigError(f"messages must be str (decode NetHack's bytes with decode_message), got "
                                  f"{type(message).__name__}")
            entries.append((message,))
        return self._core.submit("classify", list(dict.fromkeys(entries)))

    def submit_pairs(self, pairs: Sequence[tuple[str, str]]) -> int:
        """Queues ranking requests for the pairs not yet ranked, queued or in flight (in either order);
        pairs of equal messages carry no preference and are skipped."""
        entries = []
        for pair in pairs:
            if isinstance(pair, (str, bytes)) or len(pair) != 2 or not all(isinstance(m, str) for m in pair):
                raise ConfigError(f"pairs must be (str, str) tuples, got {pair!r}")
            if pair[0] != pair[1]:
                entries.append((pair[0], pair[1]))
        return self._core.submit("rank", list(dict.fromkeys(entries)))

    def poll(self) -> Annotations:
        """The results that arrived since the last poll (never blocks; each result is returned once)."""
        return self._core.poll()

    def stats(self) -> dict[str, float]:
        """``requests`` (outcomes, one per request and try), ``failures``, ``unparsed``, ``retries`` (requests
        queued again), ``dropped``, ``evicted``, ``labels``, ``preferences``, ``labels_per_s`` (both, since
        construction), ``latency_mean_s`` / ``latency_p95_s`` (answered requests, the last 1000 for p95),
        ``queue``, ``in_flight``, ``breaker`` (0 closed, 1 open, 2 half-open), ``breaker_trips``,
        ``worker_alive`` (a Ray actor counts as alive until a call to it fails), ``worker_restarts``,
        ``worker_deaths``, ``worker_timeouts``, ``duplicates`` (results suppressed as already delivered: 0),
        ``batches``, ``dispatcher_errors``, ``errors/<cause>`` and the back-end's own ``llm_*`` counters (e.g. the
        client's ``llm_retries``)."""
        return self._core.stats()

    @property
    def worker_pid(self):
        """The current worker's process id (a thread's ident for ``background="thread"``), ``None`` if none."""
        return self._core.worker_ident

    @property
    def last_error(self) -> str:
        """The last worker or back-end error, for logs (``""`` if none)."""
        return self._core.last_error

    @property
    def closed(self) -> bool:
        return self._core.closed

    def close(self) -> None:
        """Stops the dispatcher and the worker (at most about a second, even with a call in flight)."""
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task.key!r}, background={self.background!r})"


class KeywordAnnotator(Annotator):
    """The keyword judge (:func:`zoo.agents.oni.keywords.judge_message`) in the same machinery; with
    ``background="sync"`` the labels are ready at the next poll after ``submit``."""

    def __init__(self, task: str = "score", **machinery):
        spec = BackendSpec("zoo.llm.nethack_backends:KeywordBackend", {"task": resolve_task(task).key})
        super().__init__(spec, task=task, **machinery)


class OpenAIAnnotator(Annotator):
    """An OpenAI-compatible server (vLLM, FastChat, llama.cpp's server, a hosted API, ``zoo serve-judge``)
    through the shared :class:`~zoo.llm.client.LLMClient`: ``timeout_s`` a try, ``max_retries`` retries with
    back-off for what may pass (connection errors, timeouts, 429, 5xx), ``concurrency`` requests in flight
    (default: the batch). ``endpoint="completions"`` renders the prompt with ``template`` (``"auto"``: Llama 3's
    format for a model named llama-3, else plain text)."""

    def __init__(self, base_url: str, model: str, *, task: str = "score", api_key: str | None = None,
                 timeout_s: float = 120.0, max_retries: int = 3, backoff_s: float = 0.5, max_backoff_s: float = 8.0,
                 concurrency: int | None = None, temperature: float = 0.1, max_tokens: int = 4096,
                 endpoint: str = "chat", template: str = "auto", few_shot: bool = True, batch_size: int = 100,
                 batch_timeout_s: float | None = None, **machinery):
        from zoo.llm.client import LLMClient, _openai
        from zoo.llm.nethack_backends import warm_up_openai

        _openai()  # a clear error without the extra
        warm_up_openai()  # a forked worker finds the client's modules loaded
        concurrency = batch_size if concurrency is None else concurrency
        LLMClient(base_url, model, timeout_s=timeout_s, retries=max_retries, backoff_s=backoff_s,
                  max_backoff_s=max_backoff_s, concurrency=concurrency)  # validates; opens nothing
        validate_generation(temperature, max_tokens, "max_tokens")
        if endpoint not in ("chat", "completions"):
            raise ConfigError(f"endpoint must be 'chat' or 'completions', got {endpoint!r}")
        if template == "auto":
            template = "llama3" if "llama-3" in model.lower() else "plain"
        if template not in TEMPLATES:
            raise ConfigError(f"template must be 'auto' or one of {', '.join(TEMPLATES)}, got {template!r}")
        if batch_timeout_s is None:  # every try of every request, one slot after another, plus slack
            waves = math.ceil(_number("batch_size", batch_size, 1, True, True) / concurrency)
            batch_timeout_s = (timeout_s + max_backoff_s) * (max_retries + 1) * waves + 30.0
        spec = BackendSpec("zoo.llm.nethack_backends:OpenAIBackend", {
            "base_url": base_url, "model": model, "task": resolve_task(task).key, "api_key": api_key,
            "timeout_s": timeout_s, "max_retries": max_retries, "backoff_s": backoff_s, "max_backoff_s": max_backoff_s,
            "concurrency": concurrency, "temperature": temperature, "max_tokens": max_tokens, "endpoint": endpoint,
            "template": template, "few_shot": few_shot})
        self.base_url, self.model = base_url, model
        super().__init__(spec, task=task, batch_size=batch_size, batch_timeout_s=batch_timeout_s, **machinery)

    def __repr__(self) -> str:  # never the key
        return f"OpenAIAnnotator({self.base_url!r}, {self.model!r}, task={self.task.key!r})"


class TransformersAnnotator(Annotator):
    """A local ``transformers`` causal LM (a directory, e.g. from ``save_pretrained``; nothing is
    downloaded), loaded in the worker and generating up to ``max_new_tokens`` tokens a reply,
    ``generation_batch`` prompts at a time, on ``device``."""

    def __init__(self, model_path: str, *, task: str = "score", max_new_tokens: int = 256,
                 temperature: float = 0.1, generation_batch: int = 8, device: str = "cpu", seed: int = 0,
                 threads: int | None = None, few_shot: bool = True, max_prompt_tokens: int | None = None,
                 **machinery):
        check_model_dir(model_path)
        validate_generation(temperature, max_new_tokens, "max_new_tokens")
        spec = BackendSpec("zoo.llm.nethack_backends:TransformersBackend", {
            "model_path": str(model_path), "task": resolve_task(task).key, "max_new_tokens": max_new_tokens,
            "temperature": temperature, "generation_batch": generation_batch, "device": device, "seed": seed,
            "threads": threads, "few_shot": few_shot, "max_prompt_tokens": max_prompt_tokens})
        self.model_path = str(model_path)
        super().__init__(spec, task=task, **machinery)
