"""Back-ends that judge NetHack messages for ONI's annotators: what runs inside an annotator's background
worker (a process, a thread or a Ray actor; :mod:`zoo.llm.annotation_worker`).

A back-end is built in the worker from a :class:`BackendSpec` (a class path and keyword arguments: nothing
heavy is pickled) and answers a batch of requests, each ``("classify", (message,))`` or
``("rank", (first, second))``, with one outcome per request: ``(status, value, latency_s, detail)``, where
``status`` is :data:`OK` (``value``: the label 0/1, or P(first is better)), :data:`UNPARSED` (the reply held
no answer; ``detail``: the start of the reply) or :data:`ERROR` (``detail``: the cause, e.g. ``connection``,
``timeout``, ``server``). Back-ends: :class:`KeywordBackend` (the keyword judge), :class:`OpenAIBackend`
(any OpenAI-compatible server through :class:`~zoo.llm.client.LLMClient`) and :class:`TransformersBackend`
(a local ``transformers`` causal LM).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import (
    ConfigError,
    LLMAuthError,
    LLMBadRequestError,
    LLMConnectionError,
    LLMRateLimitError,
    LLMResponseError,
    LLMServerError,
    LLMTimeoutError,
)
from zoo.llm.nethack_keywords import judge_message, keyword_preference
from zoo.llm.nethack_prompts import (
    TEMPLATES,
    Prompt,
    classification_prompt,
    parse_classification,
    parse_ranking,
    ranking_parsed,
    ranking_prompt,
    render_completion,
    resolve_task,
)

OK, UNPARSED, ERROR = "ok", "unparsed", "error"
KINDS = ("classify", "rank")
Request = tuple[str, tuple[str, ...]]
Outcome = tuple[str, Any, float, str]

_CAUSES = ((LLMConnectionError, "connection"), (LLMTimeoutError, "timeout"), (LLMServerError, "server"),
           (LLMRateLimitError, "rate_limit"), (LLMAuthError, "auth"), (LLMBadRequestError, "bad_request"),
           (LLMResponseError, "response"))


def error_cause(exc: BaseException) -> str:
    """A short name for why a request failed (``connection``, ``timeout``, ``server``, ...)."""
    return next((name for cls, name in _CAUSES if isinstance(exc, cls)), type(exc).__name__)


@dataclass(frozen=True)
class BackendSpec:
    """How to build a back-end in a worker: ``factory`` (``"module:Class"``) and its keyword arguments."""

    factory: str
    kwargs: dict = field(default_factory=dict)

    def build(self):
        module, _, name = self.factory.partition(":")
        return getattr(importlib.import_module(module), name)(**self.kwargs)


def build_prompt(request: Request, task, few_shot: bool = True) -> Prompt:
    kind, messages = request
    if kind == "classify":
        return classification_prompt(messages[0], task, few_shot)
    return ranking_prompt(messages[0], messages[1], task, few_shot)


def parse_outcome(request: Request, reply: str, prompt: Prompt, latency_s: float) -> Outcome:
    """The outcome of one reply: OK with the label / preference, or UNPARSED with the start of the reply."""
    if request[0] == "classify":
        label = parse_classification(reply, prompt)
        return (UNPARSED, None, latency_s, reply[:200]) if label is None else (OK, label, latency_s, "")
    if not ranking_parsed(reply, prompt):
        return UNPARSED, 0.5, latency_s, reply[:200]
    return OK, parse_ranking(reply, prompt), latency_s, ""


class KeywordBackend:
    """The keyword judge (:func:`~zoo.llm.nethack_keywords.judge_message`): instant, never fails."""

    def __init__(self, task: str = "score"):
        self.task = resolve_task(task)

    def run(self, requests: Sequence[Request]) -> list[Outcome]:
        out = []
        for kind, messages in requests:
            start = time.perf_counter()
            if kind == "classify":
                value: Any = judge_message(messages[0], self.task).label
            else:
                value = keyword_preference(messages[0], messages[1], self.task)
            out.append((OK, value, time.perf_counter() - start, ""))
        return out

    def metrics(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        pass


class OpenAIBackend:
    """Prompts sent to an OpenAI-compatible server, a batch at a time (``concurrency`` in flight), each
    request settled on its own: a failure (after the client's retries) fails only that request."""

    def __init__(self, base_url: str, model: str, task: str = "score", api_key: str | None = None,
                 timeout_s: float = 120.0, max_retries: int = 3, backoff_s: float = 0.5, max_backoff_s: float = 8.0,
                 concurrency: int = 100, temperature: float = 0.1, max_tokens: int = 4096, endpoint: str = "chat",
                 template: str = "plain", few_shot: bool = True):
        from zoo.llm.client import LLMClient

        validate_generation(temperature, max_tokens, "max_tokens")
        if endpoint not in ("chat", "completions"):
            raise ConfigError(f"endpoint must be 'chat' or 'completions', got {endpoint!r}")
        if template not in TEMPLATES:
            raise ConfigError(f"template must be one of {', '.join(TEMPLATES)}, got {template!r}")
        self.task, self.endpoint, self.template, self.few_shot = resolve_task(task), endpoint, template, few_shot
        self.client = LLMClient(base_url, model, api_key, timeout_s=timeout_s, retries=max_retries,
                                backoff_s=backoff_s, max_backoff_s=max_backoff_s, concurrency=concurrency)
        self.params: dict[str, Any] = {"temperature": float(temperature), "max_tokens": int(max_tokens)}
        if endpoint == "completions" and template == "llama3":
            self.params["stop"] = ["<|eot_id|>"]

    def run(self, requests: Sequence[Request]) -> list[Outcome]:
        prompts = [build_prompt(r, self.task, self.few_shot) for r in requests]
        if self.endpoint == "chat":
            settled = self.client.chat_batch_settled([p.messages() for p in prompts], **self.params)
        else:
            settled = self.client.complete_batch_settled([render_completion(p, self.template) for p in prompts],
                                                         **self.params)
        out = []
        for request, prompt, result in zip(requests, prompts, settled):
            if result.error is not None:
                out.append((ERROR, None, result.latency_s, error_cause(result.error)))
            else:
                out.append(parse_outcome(request, result.text or "", prompt, result.latency_s))
        unparsed = sum(o[0] == UNPARSED for o in out)
        if unparsed:
            self.client.count_invalid(unparsed)
        return out

    def metrics(self) -> dict[str, float]:
        return self.client.metrics("llm_")

    def close(self) -> None:
        self.client.close()


def warm_up_openai() -> None:
    """Imports what the ``openai`` client loads lazily on its first request (about a second), so that a worker
    forked afterwards does not spend it on its first batch. Opens no connection."""
    import openai

    client = openai.AsyncOpenAI(base_url="http://127.0.0.1:1/v1", api_key="none", max_retries=0)
    _ = client.chat.completions.with_raw_response, client.completions.with_raw_response


def validate_generation(temperature, max_tokens, name: str) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        raise ConfigError(f"temperature must be a number in [0, 2], got {temperature!r}")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ConfigError(f"{name} must be a positive integer, got {max_tokens!r}")


class TransformersBackend:
    """A local ``transformers`` causal LM (a directory: nothing is downloaded) generating the replies,
    ``generation_batch`` prompts at a time; the model's chat template is used when it has one. Sampling at
    ``temperature`` (0: greedy) uses a private seed sequence (the process's generators are left as they are)."""

    def __init__(self, model_path: str, task: str = "score", max_new_tokens: int = 256, temperature: float = 0.1,
                 generation_batch: int = 8, device: str = "cpu", seed: int = 0, threads: int | None = None,
                 few_shot: bool = True, max_prompt_tokens: int | None = None):
        import torch

        from zoo.llm.models import load_actor, load_tokenizer

        check_model_dir(model_path)
        validate_generation(temperature, max_new_tokens, "max_new_tokens")
        if threads is not None:
            torch.set_num_threads(int(threads))
        self.task, self.few_shot = resolve_task(task), few_shot
        self.tokenizer = load_tokenizer(str(Path(model_path).expanduser()))
        self.model = load_actor(str(Path(model_path).expanduser()), self.tokenizer).to(device).eval()
        self.device, self.max_new_tokens, self.temperature = device, max_new_tokens, float(temperature)
        self.generation_batch, self.max_prompt_tokens = max(1, int(generation_batch)), max_prompt_tokens
        self.seed, self.calls = int(seed), 0
        self.counts = {"llm_requests": 0.0, "llm_failures": 0.0, "llm_invalid_replies": 0.0}

    def _text(self, prompt: Prompt) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(prompt.messages(), tokenize=False, add_generation_prompt=True)
        return render_completion(prompt, "plain")

    def _generate(self, texts: list[str]) -> list[str]:
        import torch

        batch = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=self.max_prompt_tokens is not None,
                               max_length=self.max_prompt_tokens).to(self.device)
        sampling = ({"do_sample": True, "temperature": self.temperature, "top_k": 0, "top_p": 1.0}
                    if self.temperature > 0 else {"do_sample": False})
        self.calls += 1
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(self.seed * 1_000_003 + self.calls)
            out = self.model.generate(**batch, max_new_tokens=self.max_new_tokens,
                                      pad_token_id=self.tokenizer.pad_token_id, **sampling)
        return self.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)

    def run(self, requests: Sequence[Request]) -> list[Outcome]:
        out: list[Outcome] = []
        for i in range(0, len(requests), self.generation_batch):
            chunk = list(requests[i:i + self.generation_batch])
            prompts = [build_prompt(r, self.task, self.few_shot) for r in chunk]
            start = time.monotonic()
            self.counts["llm_requests"] += len(chunk)
            try:
                replies = self._generate([self._text(p) for p in prompts])
            except Exception as exc:  # noqa: BLE001  (a failed generation fails its requests, not the worker)
                self.counts["llm_failures"] += len(chunk)
                out += [(ERROR, None, time.monotonic() - start, f"model: {type(exc).__name__}: {exc}"[:200])] * len(chunk)
                continue
            latency = time.monotonic() - start
            for request, prompt, reply in zip(chunk, prompts, replies):
                outcome = parse_outcome(request, reply, prompt, latency)
                self.counts["llm_invalid_replies"] += outcome[0] == UNPARSED
                out.append(outcome)
        return out

    def metrics(self) -> dict[str, float]:
        return dict(self.counts)

    def close(self) -> None:
        pass


def check_model_dir(model_path) -> None:
    if not isinstance(model_path, (str, Path)) or not Path(model_path).expanduser().is_dir():
        raise ConfigError(f"model_path must be a local model directory (nothing is downloaded), got {model_path!r}; "
                          "save one with save_pretrained, or serve a hub model with vLLM and use OpenAIAnnotator")
