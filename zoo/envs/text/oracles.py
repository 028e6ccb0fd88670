"""Oracles answer a text game's questions about a hidden secret: by rules over an attribute table, or by an
LLM behind an OpenAI-compatible HTTP endpoint.

Every oracle answers one of :data:`ANSWERS` (the reference games' format).
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Protocol

from zoo.errors import ZooError

YES, NO, INVALID = "Yes.", "No.", "Invalid Question."
ANSWERS = (YES, NO, INVALID)


class OracleError(ZooError, RuntimeError):
    """An oracle back-end that cannot be reached or answers nonsense (names the endpoint and the cause)."""


class Oracle(Protocol):
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


@dataclass
class HTTPOracle:
    """An LLM behind an OpenAI-compatible ``/v1/chat/completions`` endpoint answers the questions.

    ``prompt`` is formatted with ``secret`` and ``question``; the reply is mapped to :data:`ANSWERS` (a reply
    starting with yes / no, else invalid). Timeouts and connection errors are retried ``retries`` times with
    exponential back-off, then raise :class:`OracleError` naming the endpoint.
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

    def _post(self, payload: dict) -> dict:
        url = self.base_url.rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers, method="POST")
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return json.loads(response.read())
            except (urllib.error.URLError, TimeoutError, ConnectionError, json.JSONDecodeError) as exc:
                last = exc
                if attempt < self.retries:
                    time.sleep(self.backoff_s * 2 ** attempt)
        raise OracleError(f"the LLM oracle at {url} could not be reached after {self.retries + 1} tries: "
                          f"{type(last).__name__}: {last}. Is the server running (an OpenAI-compatible endpoint, "
                          f"e.g. vLLM's `vllm serve {self.model}`)?")

    def answer(self, secret: str, question: str) -> str:
        reply = self._post({"model": self.model, "temperature": 0.0, "max_tokens": 8, "messages": [
            {"role": "user", "content": self.prompt.format(secret=secret, question=question)}]})
        try:
            text = normalize(reply["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError) as exc:
            raise OracleError(f"the LLM oracle at {self.base_url} sent an unexpected reply: {reply!r}") from exc
        if text.startswith("yes"):
            return YES
        if text.startswith("no"):
            return NO
        return INVALID
