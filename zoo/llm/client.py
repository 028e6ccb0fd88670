"""One client for every LLM behind an OpenAI-compatible server (vLLM, FastChat, llama.cpp's server, a hosted
API, the project's own ``zoo serve-judge``), on the ``openai`` package's async client.

* a wall-clock limit per try (``timeout_s``: the whole reply, not one socket read, so a server that drips one
  byte a second times out too) and optionally per request, retries and back-off included (``deadline_s``);
* a batch of requests in flight together (``concurrency`` at most), all-or-nothing: one request that fails
  for good fails the batch (the others are cancelled) and no partial result is returned; or, with the
  ``*_settled`` methods, each request's own outcome (its text or its error) and latency;
* retries with exponential back-off only for what may pass on its own: connection errors, timeouts,
  HTTP 408 / 429 / 5xx (``Retry-After`` honoured up to ``max_backoff_s``); never 400 / 401 / 403 / 404;
* one :class:`zoo.errors.LLMError` subclass per cause, naming the endpoint, the cause and the fix;
* counters (:class:`LLMStats`; :meth:`LLMClient.metrics` gives them as a flat ``llm/...`` dict for a logger).

The client is synchronous to its callers (the requests run on a private event loop thread); it can be
deep-copied and pickled (a copy opens its own connections).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import (
    ConfigError,
    LLMAuthError,
    LLMBadRequestError,
    LLMConnectionError,
    LLMError,
    LLMRateLimitError,
    LLMResponseError,
    LLMServerError,
    LLMTimeoutError,
    MissingExtraError,
)

Messages = Sequence[dict[str, str]]


def _openai():
    try:
        import openai
    except ModuleNotFoundError as exc:
        raise MissingExtraError("The LLM client (OpenAI-compatible servers)", "openai", exc) from exc
    return openai


@dataclass
class LLMStats:
    """What a client did: requests (one per prompt), tries, retries, requests that failed for good (by cause),
    replies a caller found invalid, and the latency of the requests that succeeded (retries included)."""

    requests: int = 0
    attempts: int = 0
    retries: int = 0
    failures: int = 0
    invalid_replies: int = 0
    succeeded: int = 0
    latency_total_s: float = 0.0
    latency_max_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    def as_metrics(self, prefix: str = "llm/") -> dict[str, float]:
        out = {f"{prefix}requests": float(self.requests), f"{prefix}attempts": float(self.attempts),
               f"{prefix}retries": float(self.retries), f"{prefix}failures": float(self.failures),
               f"{prefix}invalid_replies": float(self.invalid_replies),
               f"{prefix}latency_mean_s": self.latency_total_s / self.succeeded if self.succeeded else 0.0,
               f"{prefix}latency_max_s": self.latency_max_s}
        out.update({f"{prefix}errors/{cause}": float(n) for cause, n in sorted(self.errors.items())})
        return out


@dataclass
class Settled:
    """One request's outcome in a settled batch: its reply's ``text``, or the :class:`LLMError` that failed it
    for good, and ``latency_s`` from the batch's start to the request's end (retries and queueing included)."""

    text: str | None
    error: LLMError | None
    latency_s: float

    @property
    def ok(self) -> bool:
        return self.error is None


class _LoopThread:
    """A private asyncio event loop on a daemon thread (so that sync callers can run async requests)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="zoo-llm-client", daemon=True)
        self.thread.start()

    def run(self, coro):
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()


class _Retryable(Exception):
    def __init__(self, cause: str, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.cause, self.detail, self.retry_after = cause, detail, retry_after


class _Final(Exception):
    def __init__(self, cause: str, detail: str):
        super().__init__(detail)
        self.cause, self.detail = cause, detail


class LLMClient:
    """Requests to the OpenAI-compatible server at ``base_url`` (e.g. ``http://127.0.0.1:8000/v1``) for
    ``model``.

    ``timeout_s``: wall-clock limit of one try (connect, wait and the whole body); ``deadline_s``: wall-clock
    limit of one request, every try and back-off included (``None``: only the tries' limits); ``retries``:
    extra tries after a retryable failure, waiting ``backoff_s * 2**k`` (at most ``max_backoff_s``) before the
    k-th; ``concurrency``: requests in flight at once in a batch.
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, timeout_s: float = 30.0,
                 deadline_s: float | None = None, retries: int = 3, backoff_s: float = 0.5,
                 max_backoff_s: float = 8.0, concurrency: int = 16):
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {base_url!r}")
        for name, value, low in (("timeout_s", timeout_s, 0.0), ("backoff_s", backoff_s, -1e-300),
                                 ("max_backoff_s", max_backoff_s, -1e-300)):
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > low
                    or value == float("inf")):
                raise ConfigError(f"{name} must be a finite number {'> 0' if low == 0 else '>= 0'}, got {value!r}")
        if deadline_s is not None and (isinstance(deadline_s, bool) or not isinstance(deadline_s, (int, float))
                                       or not 0 < deadline_s < float("inf")):
            raise ConfigError(f"deadline_s must be a finite number > 0 or None, got {deadline_s!r}")
        for name, value, low in (("retries", retries, 0), ("concurrency", concurrency, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        self.base_url, self.model = base_url.rstrip("/"), model
        self.api_key = api_key
        self.timeout_s, self.deadline_s = float(timeout_s), None if deadline_s is None else float(deadline_s)
        self.retries, self.backoff_s, self.max_backoff_s = retries, float(backoff_s), float(max_backoff_s)
        self.concurrency = concurrency
        self.stats = LLMStats()
        self._init_runtime()

    # -- runtime (not copied) -------------------------------------------------------------------------------
    def _init_runtime(self) -> None:
        self._lock = threading.Lock()
        self._runtime: _LoopThread | None = None
        self._client = None
        self._pid = os.getpid()

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_runtime", "_client", "_pid")}
        state["stats"] = LLMStats(**{**self.stats.__dict__, "errors": dict(self.stats.errors)})
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    def __deepcopy__(self, memo):
        copy = object.__new__(type(self))
        copy.__setstate__(self.__getstate__())
        return copy

    def _loop(self) -> _LoopThread:
        with self._lock:
            if self._runtime is None or self._pid != os.getpid():  # first use, or a forked child
                self._runtime, self._client, self._pid = _LoopThread(), None, os.getpid()
            return self._runtime

    def _openai_client(self):
        if self._client is None:  # created on the loop thread, bound to its loop
            openai = _openai()
            import httpx

            self._client = openai.AsyncOpenAI(
                base_url=self.base_url, api_key=self.api_key or os.environ.get("OPENAI_API_KEY") or "none",
                max_retries=0, timeout=httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 10.0)),
                http_client=httpx.AsyncClient(limits=httpx.Limits(max_connections=self.concurrency,
                                                                  max_keepalive_connections=self.concurrency)))
        return self._client

    def close(self) -> None:
        """Closes the connections and the loop thread (a later request opens new ones)."""
        with self._lock:
            runtime, client, self._runtime, self._client = self._runtime, self._client, None, None
        if runtime is not None and runtime.thread.is_alive():
            if client is not None:
                try:
                    runtime.run(asyncio.wait_for(client.close(), 5))
                except Exception:  # noqa: BLE001  (closing is best effort)
                    pass
            runtime.stop()

    def __del__(self):  # pragma: no cover - best effort at interpreter exit
        try:
            runtime = self.__dict__.get("_runtime")
            if runtime is not None and self._pid == os.getpid():
                runtime.loop.call_soon_threadsafe(runtime.loop.stop)
        except Exception:  # noqa: BLE001
            pass

    # -- public API -----------------------------------------------------------------------------------------
    def chat(self, messages: Messages, **params: Any) -> str:
        """The reply's text to one chat conversation (``params``: ``max_tokens``, ``temperature``, ...)."""
        return self.chat_batch([messages], **params)[0]

    def complete(self, prompt: str, **params: Any) -> str:
        """The completion of one prompt (``/completions``)."""
        return self.complete_batch([prompt], **params)[0]

    def chat_batch(self, conversations: Sequence[Messages], **params: Any) -> list[str]:
        """The replies to many conversations, requested concurrently; all of them or an :class:`LLMError`."""
        return self._run_batch("/chat/completions", self._chat_bodies(conversations, params))

    def complete_batch(self, prompts: Sequence[str], **params: Any) -> list[str]:
        """The completions of many prompts, requested concurrently; all of them or an :class:`LLMError`."""
        return self._run_batch("/completions", self._prompt_bodies(prompts, params))

    def chat_batch_settled(self, conversations: Sequence[Messages], **params: Any) -> list[Settled]:
        """The outcome of each conversation on its own (one failure does not cancel the others)."""
        return self._run_settled("/chat/completions", self._chat_bodies(conversations, params))

    def complete_batch_settled(self, prompts: Sequence[str], **params: Any) -> list[Settled]:
        """The outcome of each prompt's completion on its own (one failure does not cancel the others)."""
        return self._run_settled("/completions", self._prompt_bodies(prompts, params))

    def count_invalid(self, n: int = 1) -> None:
        """Counts replies that a caller could not parse (they are in :attr:`stats` and :meth:`metrics`)."""
        with self._lock:
            self.stats.invalid_replies += n

    def metrics(self, prefix: str = "llm/") -> dict[str, float]:
        """The counters as floats, e.g. ``{"llm/requests": 12.0, "llm/retries": 1.0, ...}`` (for a logger)."""
        with self._lock:
            return self.stats.as_metrics(prefix)

    def reset_stats(self) -> None:
        with self._lock:
            self.stats = LLMStats()

    def __repr__(self) -> str:
        return (f"LLMClient({self.base_url!r}, model={self.model!r}, timeout_s={self.timeout_s:g}, "
                f"retries={self.retries}, concurrency={self.concurrency})")

    # -- machinery ------------------------------------------------------------------------------------------
    def _chat_bodies(self, conversations: Sequence[Messages], params: dict) -> list[dict]:
        return [{"model": self.model, "messages": list(m), **params} for m in conversations]

    def _prompt_bodies(self, prompts: Sequence[str], params: dict) -> list[dict]:
        return [{"model": self.model, "prompt": p, **params} for p in prompts]

    def _run_batch(self, path: str, bodies: list[dict]) -> list[str]:
        if not bodies:
            return []
        return self._loop().run(self._batch(path, bodies))

    async def _batch(self, path: str, bodies: list[dict]) -> list[str]:
        semaphore = asyncio.Semaphore(self.concurrency)
        return await _gather_or_cancel([self._request(path, body, semaphore) for body in bodies])

    def _run_settled(self, path: str, bodies: list[dict]) -> list[Settled]:
        if not bodies:
            return []
        return self._loop().run(self._settled(path, bodies))

    async def _settled(self, path: str, bodies: list[dict]) -> list[Settled]:
        semaphore, start = asyncio.Semaphore(self.concurrency), time.monotonic()

        async def one(body: dict) -> Settled:
            try:
                text = await self._request(path, body, semaphore)
            except LLMError as exc:
                return Settled(None, exc, time.monotonic() - start)
            return Settled(text, None, time.monotonic() - start)

        return await _gather_or_cancel([one(body) for body in bodies])

    def _count(self, **changes: int) -> None:
        with self._lock:
            for name, n in changes.items():
                setattr(self.stats, name, getattr(self.stats, name) + n)

    async def _request(self, path: str, body: dict, semaphore: asyncio.Semaphore) -> str:
        url = self.base_url + path
        self._count(requests=1)
        start = time.monotonic()
        attempts, last = 0, None
        async with semaphore:
            while True:
                attempts += 1
                self._count(attempts=1)
                limit = self.timeout_s
                if self.deadline_s is not None:
                    limit = min(limit, self.deadline_s - (time.monotonic() - start))
                try:
                    if limit <= 0:
                        raise _Retryable("timeout", "no time left in the request's deadline")
                    try:
                        text = await asyncio.wait_for(self._attempt(path, body), timeout=limit)
                    except TimeoutError:
                        raise _Retryable("timeout", f"no complete reply within {limit:.3g} s") from None
                except _Final as exc:
                    raise self._fail(exc.cause, exc.detail, url, attempts) from None
                except _Retryable as exc:
                    last = exc
                    wait = min(self.backoff_s * 2 ** (attempts - 1), self.max_backoff_s)
                    if exc.retry_after is not None:
                        wait = min(max(wait, exc.retry_after), self.max_backoff_s)
                    out_of_time = (self.deadline_s is not None
                                   and time.monotonic() - start + wait >= self.deadline_s)
                    if attempts > self.retries or out_of_time:
                        raise self._fail(last.cause, last.detail, url, attempts) from None
                    self._count(retries=1)
                    await asyncio.sleep(wait)
                    continue
                latency = time.monotonic() - start
                with self._lock:
                    self.stats.succeeded += 1
                    self.stats.latency_total_s += latency
                    self.stats.latency_max_s = max(self.stats.latency_max_s, latency)
                return text

    async def _attempt(self, path: str, body: dict) -> str:
        openai = _openai()
        client = self._openai_client()
        try:
            if path == "/chat/completions":
                raw = await client.chat.completions.with_raw_response.create(**body)
            else:
                raw = await client.completions.with_raw_response.create(**body)
            status, content = raw.http_response.status_code, raw.http_response.text
        except openai.APITimeoutError as exc:
            raise _Retryable("timeout", f"{type(exc).__name__}: {exc}") from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise _Retryable("connection", f"{type(cause).__name__}: {cause}") from None
        except openai.APIStatusError as exc:
            status = exc.status_code
            detail = f"HTTP {status}: {_error_message(exc)}"
            if status == 429:
                raise _Retryable("rate_limit", detail, _retry_after(exc.response)) from None
            if status == 408:
                raise _Retryable("timeout", detail) from None
            if status >= 500:
                raise _Retryable("server", detail, _retry_after(exc.response)) from None
            if status in (401, 403):
                raise _Final("auth", detail) from None
            raise _Final("bad_request", detail) from None
        return _reply_text(path, status, content)

    def _fail(self, cause: str, detail: str, url: str, attempts: int) -> LLMError:
        with self._lock:
            self.stats.failures += 1
            self.stats.errors[cause] = self.stats.errors.get(cause, 0) + 1
        tries = f"after {attempts} {'try' if attempts == 1 else 'tries'}"
        if cause == "connection":
            return LLMConnectionError(
                f"the LLM server at {url} could not be reached {tries} ({detail}). Is it running at that "
                f"address? Start an OpenAI-compatible server (e.g. `vllm serve {self.model}`, or `zoo serve-judge` "
                "for the rule oracle) or fix base_url.", url, attempts)
        if cause == "timeout":
            limit = f"{self.timeout_s:g} s a try" + (f", {self.deadline_s:g} s a request" if self.deadline_s else "")
            return LLMTimeoutError(
                f"the LLM server at {url} did not finish a reply in time {tries} ({detail}; limits: {limit}). "
                "The server hangs or is overloaded: check it, or raise timeout_s / deadline_s.", url, attempts)
        if cause == "auth":
            return LLMAuthError(
                f"the LLM server at {url} refused the credentials ({detail}; not retried). Pass the server's key "
                "as api_key (or set OPENAI_API_KEY).", url, attempts)
        if cause == "rate_limit":
            return LLMRateLimitError(
                f"the LLM server at {url} kept rate-limiting the requests {tries} ({detail}). Lower the "
                "concurrency, or raise retries / backoff_s.", url, attempts)
        if cause == "server":
            return LLMServerError(
                f"the LLM server at {url} kept failing {tries} ({detail}). Check the server's log.", url, attempts)
        if cause == "bad_request":
            return LLMBadRequestError(
                f"the LLM server at {url} rejected the request ({detail}; not retried). Check the model name "
                f"{self.model!r} and the request's parameters.", url, attempts)
        return LLMResponseError(
            f"the LLM server at {url} sent a reply that is not an OpenAI completion ({detail}). Is base_url the "
            "/v1 root of an OpenAI-compatible server?", url, attempts)


async def _gather_or_cancel(coroutines: list) -> list:
    """The coroutines' results in order; when one raises (or the caller is cancelled) the others are
    cancelled and awaited before the error propagates, so no request outlives its batch."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        pending = [t for t in tasks if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


def _error_message(exc) -> str:
    body = getattr(exc, "body", None)  # the openai package passes the reply's "error" object, when there is one
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        if message:
            return str(message)[:200]
    try:
        return exc.response.text[:200]
    except Exception:  # noqa: BLE001
        return str(exc)[:200]


def _retry_after(response) -> float | None:
    try:
        value = float(response.headers.get("retry-after", ""))
    except (TypeError, ValueError, AttributeError):
        return None
    return value if value >= 0 else None


def _reply_text(path: str, status: int, content: str) -> str:
    try:
        data = json.loads(content)
    except ValueError:
        raise _Final("response", f"HTTP {status}, not JSON: {content[:80]!r}") from None
    try:
        choice = data["choices"][0]
        text = choice["message"]["content"] if path == "/chat/completions" else choice["text"]
    except (KeyError, IndexError, TypeError):
        raise _Final("response", f"no choices[0] text in {content[:120]!r}") from None
    if not isinstance(text, str):
        raise _Final("response", f"the reply's text is {type(text).__name__}, not a string: {content[:120]!r}")
    return text
