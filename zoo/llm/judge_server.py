"""``zoo serve-judge``: the project's own OpenAI-compatible server on 127.0.0.1 (standard library only).

It answers ``POST /v1/chat/completions`` and ``POST /v1/completions`` with a judge:

* the text games' rule oracle: the prompt must hold the secret as ``hidden answer is '<secret>'`` and the
  question as a last line ``Question: <question>`` (the format :class:`~zoo.envs.text.HTTPOracle` sends);
* the NetHack judge (``--game nethack``): ONI's classification and ranking prompts
  (:mod:`zoo.llm.nethack_prompts`) answered by the keyword judge (:mod:`zoo.llm.nethack_keywords`), a few
  sentences of reasoning and then the ``Answer: ...`` line the annotators parse;
* ``--game auto`` (the default): whichever of the two the prompt is for;
* ``--model DIR``: a local ``transformers`` causal LM answering every prompt (one line for the games'
  questions, up to ``--max-new-tokens`` tokens for NetHack prompts).

Any other prompt is an HTTP 400. ``GET /v1/models`` lists the one model, ``GET /health`` says it is up.

Fault switches, to test clients against a misbehaving server: ``normal``; ``500`` (an internal server error);
``429`` (rate limited); ``401`` (credentials refused); ``garbage`` (HTTP 200 with a body that is not JSON);
``invalid`` (a well-formed reply whose text is ``Not sure.``); ``echo`` (a well-formed reply that repeats the
prompt, as a base model may); ``slow`` (the reply dripped one byte every ``drip_s`` seconds); ``hang`` (the
request is read and never answered). Chosen at start (``--fault``, and ``--fault-count N`` for only the next
N requests) and changed at run time with ``POST /fault`` and a JSON body ``{"fault": "500", "count": 2}``
(optionally ``"drip_s"``; ``GET /fault`` reads it). ``--api-key`` makes the server require that key.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("normal", "500", "429", "401", "garbage", "invalid", "echo", "slow", "hang")
GAME_CHOICES = ("auto", "twenty-questions", "twenty-questions-subset", "guess-my-city", "nethack")

_SECRET = re.compile(r"hidden (?:answer|word|city|secret) is ['\"]([^'\"]+)['\"]", re.IGNORECASE)
_QUESTION = re.compile(r"(?:^|\n)\s*Question:[ \t]*([^\n]*)\s*$", re.IGNORECASE)


class RuleJudge:
    """Answers a prompt (secret and question inside) with a game's rule oracle; ``game="auto"``: the first of
    the games whose rules know the secret."""

    def __init__(self, game: str = "auto"):
        from zoo.envs.text.games import GAMES

        if game not in GAME_CHOICES or game == "nethack":
            raise ValueError(f"unknown text game {game!r}; one of {', '.join(GAME_CHOICES[:-1])}")
        names = ("twenty-questions-subset", "twenty-questions", "guess-my-city") if game == "auto" else (game,)
        self.rules = [GAMES[name]().rules for name in names]

    def answer(self, prompt: str) -> str:
        secret, question = _SECRET.search(prompt), _QUESTION.search(prompt)
        if secret is None or question is None:
            raise ValueError("the prompt holds no \"hidden answer is '<secret>'\" and last line "
                             "\"Question: <question>\" (the format zoo's HTTPOracle sends)")
        for rules in self.rules:
            if secret.group(1) in rules.secrets:
                return rules.answer(secret.group(1), question.group(1).strip())
        raise ValueError(f"no game served here knows the secret {secret.group(1)!r}")


class NetHackJudge:
    """Answers ONI's NetHack prompts with the keyword judge (the same rules as ``KeywordAnnotator``): a few
    sentences of reasoning, then the ``Answer: ...`` line."""

    def __init__(self):
        from zoo.llm import nethack_keywords, nethack_prompts

        self.prompts, self.keywords = nethack_prompts, nethack_keywords

    def handles(self, prompt: str) -> bool:
        return self.prompts.looks_like_request(prompt)

    def answer(self, prompt: str) -> str:
        request = self.prompts.parse_request(prompt)  # ValueError: an HTTP 400
        judge = self.keywords.judge_message
        if request.kind == "classify":
            verdict = judge(request.messages[0], request.task)
            return self.prompts.format_classification_reply(verdict.explanation(), verdict.label)
        first, second = (judge(m, request.task) for m in request.messages)
        p = self.keywords.keyword_preference(*request.messages, request.task)
        outcome = {1.0: "The first shows more progress.", 0.0: "The second shows more progress.",
                   0.5: "Neither shows more progress than the other."}[p]
        return self.prompts.format_ranking_reply(
            f"First: {first.explanation()} Second: {second.explanation()} {outcome}", p)


class AutoJudge:
    """The NetHack judge for ONI's prompts, the text games' rule oracle for the others."""

    def __init__(self):
        self.nethack, self.rules = NetHackJudge(), RuleJudge("auto")

    def answer(self, prompt: str) -> str:
        return (self.nethack if self.nethack.handles(prompt) else self.rules).answer(prompt)


class ModelJudge:
    """Answers a prompt with a local ``transformers`` causal LM (a directory, never a hub id: nothing is
    downloaded): greedy decoding of up to ``max_new_tokens`` tokens, cut at the first newline (a text game's
    one-line answer); ONI's NetHack prompts get up to ``nethack_max_new_tokens`` tokens, uncut (their answer
    line comes last). Its replies are whatever the model says; the clients parse them strictly."""

    def __init__(self, directory: str, max_new_tokens: int = 8, nethack_max_new_tokens: int = 64):
        import threading
        from pathlib import Path

        from zoo.errors import ConfigError
        from zoo.llm.models import load_actor, load_tokenizer
        from zoo.llm.nethack_prompts import looks_like_request

        if not Path(directory).expanduser().is_dir():
            raise ConfigError(f"--model must be a local model directory (nothing is downloaded), got {directory!r}")
        self.tokenizer = load_tokenizer(str(Path(directory).expanduser()))
        self.model = load_actor(str(Path(directory).expanduser()), self.tokenizer).eval()
        self.max_new_tokens, self.nethack_max_new_tokens = max_new_tokens, nethack_max_new_tokens
        self.is_nethack = looks_like_request
        self._lock = threading.Lock()  # one generation at a time (the server answers on threads)

    def answer(self, prompt: str) -> str:
        import torch

        nethack = self.is_nethack(prompt)
        with self._lock, torch.no_grad():
            batch = self.tokenizer([prompt], return_tensors="pt")
            out = self.model.generate(**batch, do_sample=False, pad_token_id=self.tokenizer.pad_token_id,
                                      max_new_tokens=self.nethack_max_new_tokens if nethack else self.max_new_tokens)
        text = self.tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        return text.strip() if nethack else text.strip().split("\n", 1)[0]


class FaultSwitch:
    """The current fault (thread-safe), optionally for only the next ``count`` requests."""

    def __init__(self, fault: str = "normal", count: int | None = None):
        self._lock = threading.Lock()
        self.set(fault, count)

    def set(self, fault: str, count: int | None = None) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise ValueError(f"count must be a positive integer or null, got {count!r}")
        with self._lock:
            self.fault, self.count = fault, count

    def take(self) -> str:
        """The fault for the request now arriving (using up one of ``count``)."""
        with self._lock:
            fault = self.fault
            if self.count is not None:
                self.count -= 1
                if self.count <= 0:
                    self.fault, self.count = "normal", None
            return fault

    def state(self) -> dict:
        with self._lock:
            return {"fault": self.fault, "count": self.count}


class JudgeServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], judge, faults: FaultSwitch, model: str = "judge",
                 api_key: str | None = None, drip_s: float = 0.5):
        self.judge, self.faults, self.model, self.api_key, self.drip_s = judge, faults, model, api_key, drip_s
        self.stopping = threading.Event()
        self.requests = 0
        super().__init__(address, _Handler)

    def shutdown(self) -> None:
        self.stopping.set()
        super().shutdown()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: JudgeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, payload, content_type: str = "application/json", headers: dict | None = None):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, kind: str, headers: dict | None = None) -> None:
        self._send(status, {"error": {"message": message, "type": kind, "code": status}}, headers=headers)

    def _body(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            self._error(400, "the request body is not JSON", "invalid_request_error")
            return None
        if not isinstance(data, dict):
            self._error(400, "the request body must be a JSON object", "invalid_request_error")
            return None
        return data

    def do_GET(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        if path == "/health":
            self._send(200, {"ok": True, **self.server.faults.state()})
        elif path == "/fault":
            self._send(200, self.server.faults.state())
        elif path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": self.server.model, "object": "model",
                                                         "owned_by": "zoo"}]})
        else:
            self._error(404, f"no such path {path!r}", "not_found")

    def do_POST(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        body = self._body()
        if body is None:
            return
        if path == "/fault":
            drip = body.get("drip_s", self.server.drip_s)
            try:
                if isinstance(drip, bool) or not isinstance(drip, (int, float)) or not 0 < drip < 60:
                    raise ValueError(f"drip_s must be a number in (0, 60), got {drip!r}")
                self.server.faults.set(body.get("fault", "normal"), body.get("count"))
            except ValueError as exc:
                return self._error(400, str(exc), "invalid_request_error")
            self.server.drip_s = float(drip)
            return self._send(200, {**self.server.faults.state(), "drip_s": self.server.drip_s})
        if path not in ("/v1/chat/completions", "/v1/completions"):
            return self._error(404, f"no such path {path!r}", "not_found")
        self.server.requests += 1
        fault = self.server.faults.take()
        if fault == "hang":  # read, never answer (until the server stops)
            self.server.stopping.wait(3600)
            self.close_connection = True
            return
        if fault == "500":
            return self._error(500, "injected fault: internal server error", "server_error")
        if fault == "429":
            return self._error(429, "injected fault: rate limited", "rate_limit_error", {"Retry-After": "0"})
        if fault == "401" or (self.server.api_key and
                              self.headers.get("Authorization", "") != f"Bearer {self.server.api_key}"):
            return self._error(401, "injected fault: invalid API key" if fault == "401" else "invalid API key",
                               "authentication_error")
        if fault == "garbage":
            return self._send(200, b"<html><body>502 Bad Gateway (injected garbage)</body></html>", "text/html")
        chat = path == "/v1/chat/completions"
        try:
            if chat:
                messages = body["messages"]
                prompt = "\n".join(str(m.get("content", "")) for m in messages)
            else:
                prompt = body["prompt"]
                prompt = prompt[0] if isinstance(prompt, list) and len(prompt) == 1 else prompt
                if not isinstance(prompt, str):
                    raise TypeError("send one prompt (a string) per request")
            if fault in ("invalid", "echo"):
                text = "Not sure." if fault == "invalid" else prompt
            else:
                text = self.server.judge.answer(prompt)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            return self._error(400, f"bad request: {exc}", "invalid_request_error")
        created, model = int(time.time()), body.get("model", self.server.model)
        if chat:
            payload = {"id": f"judge-{self.server.requests}", "object": "chat.completion", "created": created,
                       "model": model, "choices": [{"index": 0, "finish_reason": "stop",
                                                    "message": {"role": "assistant", "content": text}}]}
        else:
            payload = {"id": f"judge-{self.server.requests}", "object": "text_completion", "created": created,
                       "model": model, "choices": [{"index": 0, "text": text, "finish_reason": "stop"}]}
        if fault != "slow":
            return self._send(200, payload)
        data = json.dumps(payload).encode()  # headers at once, then the body one byte at a time
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            for i in range(len(data)):
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
                if self.server.stopping.wait(self.server.drip_s):
                    break
        except OSError:  # the client gave up
            self.close_connection = True


def make_judge(game: str = "auto", model_dir: str | None = None, max_new_tokens: int | None = None):
    """The judge for ``game`` (a text game's rule oracle, ``nethack``, or ``auto``: both), or the local model in
    ``model_dir``."""
    if model_dir:
        return ModelJudge(model_dir) if max_new_tokens is None else ModelJudge(model_dir, max_new_tokens,
                                                                                 max_new_tokens)
    if game == "nethack":
        return NetHackJudge()
    return AutoJudge() if game == "auto" else RuleJudge(game)


def make_server(host: str = "127.0.0.1", port: int = 0, game: str = "auto", fault: str = "normal",
                fault_count: int | None = None, model: str = "judge", api_key: str | None = None,
                drip_s: float = 0.5, model_dir: str | None = None, max_new_tokens: int | None = None) -> JudgeServer:
    """A judge server bound to ``host:port`` (``port=0``: a free port; see ``server.url``), not yet serving
    (call ``serve_forever()``, e.g. on a thread); answered by the judge of ``game`` (see :func:`make_judge`), or
    by the local model in ``model_dir``."""
    judge = make_judge(game, model_dir, max_new_tokens)
    return JudgeServer((host, port), judge, FaultSwitch(fault, fault_count), model, api_key, drip_s)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free one, printed at start)")
    p.add_argument("--game", choices=GAME_CHOICES, default="auto", help="who answers: a text game's rule oracle, "
                   "nethack (ONI's keyword judge) or auto (whichever the prompt is for)")
    p.add_argument("--fault", choices=FAULTS, default="normal", help="misbehave from the start (see POST /fault)")
    p.add_argument("--fault-count", type=int, default=None, help="with --fault: only for the next N requests")
    p.add_argument("--drip-s", type=float, default=0.5, help="seconds between bytes under the 'slow' fault")
    p.add_argument("--model-name", default="judge", help="the model id it reports")
    p.add_argument("--model", default=None, metavar="DIR", help="answer with this local transformers causal LM "
                   "(a directory, e.g. from a language agent's save_pretrained) instead of the rule oracle")
    p.add_argument("--max-new-tokens", type=int, default=None, help="with --model: tokens a reply (default 8 for "
                   "the games' questions, 64 for NetHack prompts)")
    p.add_argument("--api-key", default=None, help="require this key (Authorization: Bearer KEY)")
    return p


def serve(args: argparse.Namespace, out=None) -> int:
    """Runs a judge server until interrupted; prints its URL (``listening on http://HOST:PORT/v1``) first."""
    out = out or sys.stdout
    from zoo.errors import ConfigError

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, got {args.port}")
    if not args.drip_s > 0 or (args.fault_count is not None and args.fault_count < 1):
        raise ConfigError(f"--drip-s must be > 0 and --fault-count >= 1, got {args.drip_s}, {args.fault_count}")
    max_new_tokens = getattr(args, "max_new_tokens", None)
    if max_new_tokens is not None and max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
    server = make_server(args.host, args.port, args.game, args.fault, args.fault_count, args.model_name,
                         args.api_key, args.drip_s, model_dir=args.model, max_new_tokens=max_new_tokens)
    who = f"model {args.model}" if args.model else f"game {args.game}"
    print(f"zoo serve-judge: listening on {server.url} ({who}, fault {args.fault}; "
          "POST /fault to change it)", file=out, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.stopping.set()
        server.server_close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return serve(add_arguments(argparse.ArgumentParser(prog="zoo serve-judge")).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
