"""Oracles answer a text game's questions about a hidden secret: by rules over an attribute table, or by an
LLM behind an OpenAI-compatible HTTP endpoint.

Every oracle answers one of :data:`ANSWERS` (the reference games' format).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Protocol

from zoo.errors import ConfigError, LLMError
from zoo.llm.client import LLMClient, LLMStats

YES, NO, INVALID = "Yes.", "No.", "Invalid Question."
ANSWERS = (YES, NO, INVALID)


#: an oracle back-end that failed (each cause its own subclass: ``zoo.errors.LLMConnectionError``,
#: ``LLMTimeoutError``, ``LLMAuthError``, ``LLMRateLimitError``, ``LLMServerError``, ``LLMBadRequestError``,
#: ``LLMResponseError``; each names the endpoint, the cause and the fix)
OracleError = LLMError


class Oracle(Protocol):
    """Answers questions; an oracle may also have ``answer_batch(pairs) -> list[str]`` (all or nothing),
    which :func:`ask_all` prefers."""

    def answer(self, secret: str, question: str) -> str:
        """One of :data:`ANSWERS` to ``question`` about ``secret``."""


_IS_IT = re.compile(r"^(is|are) (it|this|that|they)( an?| the)?( [a-z0-9]+){1,3}$")


def normalize(text: str) -> str:
    """Lower case, accents folded (``São`` -> ``sao``), punctuation to spaces, single spaces."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", folded.lower()).split())


def plural(word: str) -> str:
    """English plural of a (lower-case) noun, good enough to recognise ``dogs`` or ``buses``."""
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def contains_phrase(text: str, phrase: str) -> bool:
    """Whether the normalised ``phrase`` occurs in the normalised ``text`` as whole words."""
    return f" {phrase} " in f" {text} "


@dataclass
class AttributeOracle:
    """Answers by rules: a question naming a secret (or an alias, or a plural) is a guess; otherwise the
    question's attribute phrases (``triggers``: attribute -> phrases) are looked up in the secret's
    attribute set; "is it (a) X?" about an unknown X is answered No; any other question is invalid.

    ``secrets``: name -> set of attributes; ``aliases``: name -> other names for it.
    """

    secrets: dict[str, frozenset[str]]
    triggers: dict[str, tuple[str, ...]]
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def names_of(self, secret: str) -> list[str]:
        names = [normalize(secret), *(normalize(a) for a in self.aliases.get(secret, ()))]
        return names + [plural(n) for n in names]

    def guessed(self, question: str) -> str | None:
        """The secret a question names, if any (the longest name wins: ``sea lion`` over ``lion``)."""
        text = normalize(question)
        best, best_len = None, 0
        for secret in self.secrets:
            for name in self.names_of(secret):
                if len(name) > best_len and contains_phrase(text, name):
                    best, best_len = secret, len(name)
        return best

    def attributes_asked(self, question: str) -> list[str]:
        """The attributes whose phrases occur in the question, longest phrase first."""
        text = normalize(question)
        found = [(len(p), attribute) for attribute, phrases in self.triggers.items() for p in phrases
                 if contains_phrase(text, normalize(p))]
        return [attribute for _, attribute in sorted(found, reverse=True)]

    def answer(self, secret: str, question: str) -> str:
        if secret not in self.secrets:
            raise KeyError(f"unknown secret {secret!r}")
        named = self.guessed(question)
        if named is not None:
            return YES if named == secret else NO
        asked = self.attributes_asked(question)
        if asked:
            return YES if asked[0] in self.secrets[secret] else NO
        # "Is it (a) <something unknown>?" guesses a thing or names a property the secret does not have
        return NO if _IS_IT.match(normalize(question)) else INVALID


def parse_answer(reply: str) -> str | None:
    """The answer a reply gives, strictly: its first clause (up to the first ``.``, ``,``, ``;``, ``:``, ``!``,
    ``?`` or line break), with case and spacing normalised, must be exactly ``yes``, ``no`` or ``invalid
    question`` (``"Yes."``, ``"no"``, ``"Yes, it is."``); anything else (``"Not sure."``, ``"No idea"``,
    ``"Nope"``) is ``None``."""
    if not isinstance(reply, str):
        return None
    first = re.split(r"[.,;:!?\n]", reply.strip().strip("\"'`*"), maxsplit=1)[0]
    return _STRICT.get(normalize(first))


_STRICT = {"yes": YES, "no": NO, "invalid question": INVALID, "invalid": INVALID}


def ask_all(oracle: Oracle, pairs: list[tuple[str, str]]) -> list[str]:
    """``oracle``'s answers to every ``(secret, question)`` pair, or an error and no answer at all (a batched
    oracle asks them together; any other oracle one after the other, all before the caller changes anything)."""
    batch = getattr(oracle, "answer_batch", None)
    answers = list(batch(pairs)) if callable(batch) else [oracle.answer(s, q) for s, q in pairs]
    if len(answers) != len(pairs) or not all(a in ANSWERS for a in answers):
        raise OracleError(f"the oracle {type(oracle).__name__} gave {answers!r} for {len(pairs)} questions; "
                          f"it must give one of {ANSWERS} per question")
    return answers


@dataclass
class HTTPOracle:
    """An LLM behind an OpenAI-compatible server answers the questions, through the shared
    :class:`zoo.llm.client.LLMClient` (``/v1/chat/completions``, or ``/v1/completions`` with
    ``endpoint="completions"``).

    ``prompt`` is formatted with ``secret`` and ``question``; the reply is parsed strictly
    (:func:`parse_answer`): one that is not an answer counts in ``stats.invalid_replies`` and answers
    ``Invalid Question.``. A batch (:meth:`answer_batch`, which ``TextVecEnv.step`` uses) is requested
    concurrently and is all or nothing. ``timeout_s`` limits each try (the whole reply), ``deadline_s`` each
    request; connection errors, timeouts, HTTP 429 and 5xx are retried ``retries`` times with exponential
    back-off from ``backoff_s``; every failure raises an :class:`OracleError` subclass naming the cause
    (``zoo.errors.LLMConnectionError``, ``LLMTimeoutError``, ``LLMAuthError``, ...). ``client``: share one
    client (and its counters) instead of building one from these settings.
    """

    base_url: str
    model: str
    prompt: str = ("You are the oracle of a guessing game. The hidden answer is '{secret}'. Answer the player's "
                   "question with exactly one of: Yes. / No. / Invalid Question. Never reveal the answer.\n"
                   "Question: {question}")
    api_key: str | None = None
    timeout_s: float = 30.0
    retries: int = 3
    backoff_s: float = 1.0
    deadline_s: float | None = None
    concurrency: int = 16
    endpoint: str = "chat"
    max_tokens: int = 8
    client: LLMClient | None = None

    def __post_init__(self) -> None:
        if self.endpoint not in ("chat", "completions"):
            raise ConfigError(f"endpoint must be 'chat' or 'completions', got {self.endpoint!r}")
        if "{secret}" not in self.prompt or "{question}" not in self.prompt:
            raise ConfigError("prompt must contain the fields {secret} and {question}")
        if self.client is None:
            self.client = LLMClient(self.base_url, self.model, self.api_key, timeout_s=self.timeout_s,
                                    deadline_s=self.deadline_s, retries=self.retries, backoff_s=self.backoff_s,
                                    concurrency=self.concurrency)

    @property
    def stats(self) -> LLMStats:
        return self.client.stats

    def metrics(self, prefix: str = "llm/") -> dict[str, float]:
        """The client's counters (requests, retries, failures, invalid replies, latency) for a logger."""
        return self.client.metrics(prefix)

    def answer(self, secret: str, question: str) -> str:
        return self.answer_batch([(secret, question)])[0]

    def answer_batch(self, pairs: list[tuple[str, str]]) -> list[str]:
        """The answers to every ``(secret, question)``, asked concurrently; all of them or an error."""
        prompts = [self.prompt.format(secret=secret, question=question) for secret, question in pairs]
        params = {"temperature": 0.0, "max_tokens": self.max_tokens}
        if self.endpoint == "chat":
            replies = self.client.chat_batch([[{"role": "user", "content": p}] for p in prompts], **params)
        else:
            replies = self.client.complete_batch(prompts, **params)
        answers = [parse_answer(r) for r in replies]
        if None in answers:
            self.client.count_invalid(answers.count(None))
        return [INVALID if a is None else a for a in answers]
