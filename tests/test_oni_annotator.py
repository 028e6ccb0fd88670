"""ONI's annotators, prompts and the NetHack judge of ``zoo serve-judge``: prompt building and robust parsing
(echoes, few-shot echoes, case, missing and repeated answers), decode_message, the keyword judge on real
NetHack messages, and the background machinery against the real server process on 127.0.0.1 with injected
faults (500s, garbage, slow, hang, the server killed and restarted, the worker killed): a simulated learner's
calls never block, no label the server gave is lost or duplicated, and the counters add up."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
import torch

from zoo.agents.oni.annotator import (
    Annotations,
    KeywordAnnotator,
    OpenAIAnnotator,
    TransformersAnnotator,
)
from zoo.agents.oni.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from zoo.agents.oni.keywords import judge_message, keyword_label, keyword_preference
from zoo.agents.oni.prompts import (
    EXAMPLES,
    Task,
    classification_prompt,
    decode_message,
    decode_messages,
    parse_classification,
    parse_ranking,
    parse_request,
    ranking_parsed,
    ranking_prompt,
    render_completion,
    resolve_task,
)
from zoo.errors import ConfigError
from zoo.llm.client import LLMClient
from zoo.llm.judge_server import make_judge, make_server

pytest.importorskip("openai")

SCORE = ["You kill the jackal!", "You kill the newt!  Welcome to experience level 2.", "23 gold pieces.",
         "There is a staircase down here.", "f - 2 uncursed potions of healing.", "You find a hidden door.",
         "It's a wall.", "It's solid stone.", "Never mind.", "What do you want to eat? [fg or ?*]",
         "You are beginning to feel hungry.", "The jackal bites!", "You can't move diagonally out of an intact doorway.",
         "", "You see no objects here.", "That door is closed.", "You hear someone counting money.",
         "Really attack the watchman? [yn] (n)"]
HELPFUL_FOR_SCORE = {SCORE[i] for i in (0, 1, 2, 3, 4, 5, 16)}


# ----------------------------------------------------------------------------- prompts and parsing
def test_prompts_state_the_goal_and_carry_the_message_back_to_the_server():
    message = 'You hear someone say "No more woodchucks!"  Caf\u00e9.'
    for task in ("score", "oracle", "nethack/staircase-lvl4-extended"):
        prompt = classification_prompt(message, task)
        assert resolve_task(task).goal in prompt.user and "Example message:" in prompt.user
        assert prompt.user.rstrip().endswith(json.dumps(message, ensure_ascii=False))
        for text in (prompt.system + "\n" + prompt.user, render_completion(prompt), render_completion(prompt, "llama3")):
            request = parse_request(text)
            assert (request.kind, request.task, request.messages) == ("classify", resolve_task(task), (message,))
    pair = ranking_prompt("You kill the newt!", "It's a wall.", "oracle")
    assert parse_request(render_completion(pair)).messages == ("You kill the newt!", "It's a wall.")
    assert parse_request(render_completion(pair)).kind == "rank"
    assert "Example" not in classification_prompt("x", few_shot=False).user
    # a judged message that is a few-shot example is left out of the examples (a copy of it is no echo)
    assert classification_prompt("14 gold pieces.").user.count("14 gold pieces.") == 1
    with pytest.raises(ValueError, match="Goal"):
        parse_request("Message to judge: \"x\"")
    with pytest.raises(ConfigError, match="template"):
        render_completion(pair, "chatml")


@pytest.mark.parametrize("reply, label", [
    ("The hero found gold.\nAnswer: helpful", 1), ("answer: UNHELPFUL.", 0), ("**Answer:** Helpful", 1),
    ("Answer - not helpful", 0), ("ANSWER :  neutral!", 0), ("  Answer:\thelpful  \n\n", 1),
    ("Answer: helpful\nOn second thought the hero wasted a turn.\nAnswer: unhelpful", 0),  # the last one
    ("Answer: unhelpful. Wait, gold counts.\nFinal answer: helpful", 1),
    ("I think this is helpful.", None), ("The answer is helpful", None), ("", None), ("Answer: maybe", None),
    ("Answer: helpfulness", None),
])
def test_classification_replies_are_parsed_from_the_last_answer(reply, label):
    assert parse_classification(reply) == label


def test_an_echoed_prompt_or_echoed_examples_never_give_a_label():
    prompt = classification_prompt("You kill the newt!", "oracle")
    assert "Answer: helpful" in prompt.user and prompt.user.rstrip().endswith('"You kill the newt!"')
    echo = prompt.system + "\n\n" + prompt.user
    assert parse_classification(echo, prompt) is None and parse_classification(prompt.user) is None
    examples = "\n\n".join(p for p in prompt.user.split("\n\n") if p.startswith("Example message"))
    assert re.search(r"Answer: unhelpful\s*$", examples)  # a naive last-marker parse would say 0 here
    assert parse_classification(examples) is None and parse_classification("Sure.\n" + examples + "\nOk") is None
    assert parse_classification(echo + "\nThe newt is no step towards the Oracle.\nAnswer: unhelpful", prompt) == 0
    assert parse_classification(examples + "\nA kill makes the hero stronger.\nAnswer: helpful") == 1
    pair = ranking_prompt("You kill the newt!", "It's a wall.", "score")
    assert "Answer: 1" in pair.user and parse_ranking(pair.user, pair) == 0.5 and not ranking_parsed(pair.user, pair)
    assert parse_ranking(pair.user + "\nAnswer: 2", pair) == 0.0


@pytest.mark.parametrize("reply, p, parsed", [
    ("Answer: 1", 1.0, True), ("answer: 2.", 0.0, True), ("**Answer**: Tie", 0.5, True), ("Answer: none", 0.5, True),
    ("Answer: message 2", 0.0, True), ("Answer: (1)", 1.0, True), ("Answer: first", 1.0, True),
    ("Answer: 2\nHmm, no.\nAnswer: 1", 1.0, True), ("Message 1 is better.", 0.5, False), ("Answer: 12 gold", 0.5, False),
    ("", 0.5, False),
])
def test_ranking_replies_are_parsed_and_a_non_answer_is_a_tie(reply, p, parsed):
    assert parse_ranking(reply) == p and ranking_parsed(reply) is parsed


def test_decode_message_drops_nuls_reads_latin1_and_strips():
    field = np.zeros(256, dtype=np.uint8)
    text = b"  You see here a caf\xe9 sign.  "
    field[:len(text)] = list(text)
    assert decode_message(field) == "You see here a caf\u00e9 sign."
    assert decode_message(field.astype(np.int64)) == decode_message(bytes(field)) == "You see here a caf\u00e9 sign."
    assert decode_message(b"It's\x00 a wall.\x00\x00") == "It's a wall." and decode_message(np.zeros(256, np.uint8)) == ""
    batch = np.stack([field, np.zeros(256, np.uint8)])
    assert decode_messages(batch) == decode_messages(torch.from_numpy(batch)) == ["You see here a caf\u00e9 sign.", ""]
    with pytest.raises(ConfigError, match="decode_messages"):
        decode_message(batch)
    with pytest.raises(ConfigError, match="0..255"):
        decode_message(np.array([72, 300]))
    with pytest.raises(ConfigError, match="0..255"):
        decode_message(np.array([72.0, 10.0]))


def test_tasks_resolve_from_names_and_env_ids():
    assert resolve_task("nethack/oracle-extended") == Task("oracle")
    assert resolve_task("StairCase-Lvl3") == resolve_task("nethack/staircase-lvl3-extended") == Task("staircase", 3)
    assert resolve_task("staircase").depth == 2 and resolve_task("score").key == "score"
    assert "dungeon level 4" in resolve_task("staircase-lvl4").goal
    for bad in ("minecraft", "staircase-lvl0", 3):
        with pytest.raises(ConfigError, match="task"):
            resolve_task(bad)


# ----------------------------------------------------------------------------- the keyword judge
@pytest.mark.parametrize("message", SCORE)
def test_keyword_judge_labels_real_messages_for_the_score_task(message):
    assert keyword_label(message, "score") == (message in HELPFUL_FOR_SCORE)


@pytest.mark.parametrize("message, oracle, stairs", [
    ("You hear convulsive ravings.", 1, 0), ("You hear snoring snakes.", 1, 0), ("23 gold pieces.", 0, 0),
    ("There is a staircase down here.", 1, 1), ("You kill the jackal!", 0, 0), ("You find a hidden passage.", 1, 1),
    ("It's a wall.", 0, 0), ("You are beginning to feel weak.", 0, 0),
])
def test_keyword_judge_follows_the_task(message, oracle, stairs):
    assert (keyword_label(message, "oracle"), keyword_label(message, "staircase-lvl3")) == (oracle, stairs)


def test_few_shot_examples_agree_with_the_keyword_judge_and_preferences_follow_the_score():
    for name, examples in EXAMPLES.items():
        task = Task(name, 3 if name == "staircase" else None)
        assert {keyword_label(m, task) for m, _, label in examples if keyword_label(m, task) != label} == set()
    assert keyword_preference("You kill the jackal!", "It's a wall.") == 1.0
    assert keyword_preference("It's a wall.", "23 gold pieces.") == 0.0
    assert keyword_preference("That door is closed.", "") == 0.5  # equal scores: a tie
    verdict = judge_message("You kill the newt!  Welcome to experience level 2.")
    assert verdict.score == 4 and "answer" not in verdict.explanation().lower()


# ----------------------------------------------------------------------------- the judge server
class JudgeProcess:
    """``zoo serve-judge`` as a real process on a free (or the given) port of 127.0.0.1."""

    def __init__(self, *args: str):
        self.args, self.proc = args, None
        self.start(0)

    def start(self, port: int) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "zoo.cli", "serve-judge", "--port", str(port), *self.args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line, end = "", time.monotonic() + 60
        while time.monotonic() < end and self.proc.poll() is None and "listening on" not in line:
            if select.select([self.proc.stdout], [], [], 0.5)[0]:
                line = self.proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
        if match is None:
            self.proc.kill()
            raise RuntimeError(f"zoo serve-judge did not start: {line!r}")
        self.port, self.url = int(match.group(1)), f"http://127.0.0.1:{match.group(1)}/v1"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc.stdout.close()

    def fault(self, fault: str, count: int | None = None, **extra) -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/fault", method="POST",
                                         data=json.dumps({"fault": fault, "count": count, **extra}).encode())
        urllib.request.urlopen(request, timeout=5).close()


@pytest.fixture(scope="module")
def server():
    judge = JudgeProcess("--game", "nethack")
    yield judge
    judge.kill()


@pytest.fixture
def judge(server):
    server.fault("normal", drip_s=0.5)
    yield server
    server.fault("normal", drip_s=0.5)


def test_the_server_judges_nethack_prompts_like_the_keyword_judge_and_detects_them_in_auto_mode(judge):
    client = LLMClient(judge.url, "judge", timeout_s=5)
    for message in SCORE[:6] + ["It's a wall."]:
        prompt = classification_prompt(message, "score")
        reply = client.chat(prompt.messages())
        assert parse_classification(reply, prompt) == keyword_label(message) and "\n" in reply.strip()
    pair = ranking_prompt("It's a wall.", "23 gold pieces.", "score")
    assert parse_ranking(client.complete(render_completion(pair, "llama3")), pair) == 0.0
    judge.fault("echo", count=1)  # the reply repeats the prompt: no label, never a wrong one
    echoed = classification_prompt("You kill the newt!", "staircase-lvl3")
    reply = client.chat(echoed.messages())
    assert "Example message" in reply and parse_classification(reply, echoed) is None
    client.close()
    auto = make_server(game="auto")  # the same server code in this process: text games and NetHack side by side
    thread = threading.Thread(target=auto.serve_forever, daemon=True)
    thread.start()
    try:
        other = LLMClient(auto.url, "judge", timeout_s=5)
        assert parse_classification(other.chat(classification_prompt("23 gold pieces.").messages())) == 1
        assert other.complete("The hidden answer is 'dog'.\nQuestion: Is it an animal?") == "Yes."
        other.close()
    finally:
        auto.shutdown()
        auto.server_close()


# ----------------------------------------------------------------------------- the annotators
def openai_annotator(url: str, **kw) -> OpenAIAnnotator:
    kw = {"timeout_s": 2.0, "max_retries": 2, "backoff_s": 0.02, "max_backoff_s": 0.1, "idle_wait_s": 0.05,
          "breaker_cooldown_s": 0.2, "breaker_max_cooldown_s": 0.4, "batch_size": 8, **kw}
    return OpenAIAnnotator(url, "judge", **kw)


class Learner:
    """A simulated training loop: submits, polls and sleeps a few ms, timing every call it makes."""

    def __init__(self, ann):
        self.ann, self.labels, self.preferences, self.longest = ann, [], [], 0.0

    def _timed(self, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        self.longest = max(self.longest, time.perf_counter() - start)
        return out

    def step(self, messages=(), pairs=()) -> None:
        if messages:
            self._timed(self.ann.submit, list(messages))
        if pairs:
            self._timed(self.ann.submit_pairs, list(pairs))
        got = self._timed(self.ann.poll)
        assert isinstance(got, Annotations)
        self.labels += got.labels
        self.preferences += got.preferences
        time.sleep(0.005)

    def until(self, done, timeout_s: float = 20.0) -> None:
        end = time.monotonic() + timeout_s
        while not done() and time.monotonic() < end:
            self.step()
        assert done(), (self.ann.stats(), self.ann.last_error)


def test_labels_arrive_once_each_with_dedupe_and_counts(judge):
    pairs = [("You kill the jackal!", "It's a wall."), ("Never mind.", "23 gold pieces."), ("a", "a")]
    with openai_annotator(judge.url, batch_size=100) as ann:
        learner = Learner(ann)
        assert ann.submit(SCORE + SCORE[:3]) == len(SCORE) and ann.submit_pairs(pairs) == 2
        learner.until(lambda: len(learner.labels) == len(SCORE) and len(learner.preferences) == 2)
        assert ann.submit(SCORE) == 0 and ann.submit_pairs([("It's a wall.", "You kill the jackal!")]) == 0
        for _ in range(10):
            learner.step()
        assert sorted(learner.labels) == sorted((m, keyword_label(m)) for m in SCORE)
        assert sorted(learner.preferences) == [("Never mind.", "23 gold pieces.", 0.0),
                                               ("You kill the jackal!", "It's a wall.", 1.0)]
        stats = ann.stats()
        assert stats["requests"] == len(SCORE) + 2 == stats["llm_requests"]
        assert (stats["labels"], stats["preferences"], stats["failures"], stats["retries"]) == (len(SCORE), 2, 0, 0)
        assert stats["latency_p95_s"] >= stats["latency_mean_s"] / 10 > 0 and stats["labels_per_s"] > 0
        assert stats["queue"] == stats["in_flight"] == stats["breaker"] == 0 and stats["worker_alive"] == 1
    assert learner.longest < 0.1, learner.longest


def test_newest_requests_are_served_first_and_the_queue_is_bounded():
    with KeywordAnnotator("score", batch_size=3, idle_wait_s=0.05) as ann:
        learner = Learner(ann)
        messages = [f"{i} gold pieces." for i in range(9)]
        assert ann.submit(messages) == 9
        learner.until(lambda: len(learner.labels) == 9)
        assert [m for m, _ in learner.labels] == messages[::-1] and {y for _, y in learner.labels} == {1}
    with KeywordAnnotator("score", max_queue=4, idle_wait_s=30.0, background="thread") as ann:
        Learner(ann).until(lambda: ann.worker_pid is not None)
        time.sleep(0.3)  # the dispatcher found nothing and waits
        assert ann.submit([f"m{i}" for i in range(10)]) == 10
        stats = ann.stats()
        assert stats["evicted"] == 6 and stats["queue"] == 4
        assert ann.submit(["m0", "m9"]) == 1  # evicted m0 may come again; m9 is still queued


def test_transient_500s_and_hangs_are_retried_by_the_client(judge):
    for fault, count, timeout_s in (("500", 4, 5.0), ("hang", 2, 1.5)):
        judge.fault(fault, count=count)
        with openai_annotator(judge.url, max_retries=4, timeout_s=timeout_s) as ann:
            learner = Learner(ann)
            ann.submit(SCORE[:8])
            learner.until(lambda learner=learner: len(learner.labels) == 8)
            stats = ann.stats()
            assert stats["llm_retries"] == count and stats["failures"] == stats["retries"] == 0, (fault, stats)
        assert learner.longest < 0.1


def test_a_failing_server_opens_the_breaker_and_annotation_resumes_when_it_recovers(judge):
    judge.fault("500")
    with openai_annotator(judge.url, max_retries=1, breaker_threshold=3) as ann:
        learner = Learner(ann)
        ann.submit(SCORE[:6])
        learner.until(lambda: ann.stats()["breaker_trips"] >= 1)
        for _ in range(30):  # training goes on while the breaker is open
            learner.step()
        stats = ann.stats()
        assert stats["breaker"] in (OPEN, HALF_OPEN) and stats["errors/server"] >= 3 and not learner.labels
        judge.fault("normal")
        learner.until(lambda: len(learner.labels) == 6)
        stats = ann.stats()
        assert stats["breaker"] == CLOSED and stats["dropped"] == 0
        assert stats["failures"] + stats["unparsed"] == stats["retries"] + stats["dropped"]
        assert stats["requests"] == stats["labels"] + stats["failures"] + stats["unparsed"]
    assert learner.longest < 0.1


def test_garbage_and_unparseable_replies_are_retried_then_dropped(judge):
    judge.fault("garbage", count=3)  # not JSON: the client does not retry, the annotator does
    with openai_annotator(judge.url) as ann:
        learner = Learner(ann)
        ann.submit(SCORE[:6])
        learner.until(lambda: len(learner.labels) == 6)
        stats = ann.stats()
        assert (stats["failures"], stats["errors/response"], stats["retries"], stats["dropped"]) == (3, 3, 3, 0)
    judge.fault("invalid")  # "Not sure.": no label in it
    with openai_annotator(judge.url, max_attempts=2) as ann:
        learner = Learner(ann)
        ann.submit(SCORE[:4])
        ann.submit_pairs([("It's a wall.", "23 gold pieces.")])
        learner.until(lambda: ann.stats()["dropped"] == 4 and len(learner.preferences) == 1)
        stats = ann.stats()
        assert (stats["unparsed"], stats["retries"], stats["requests"]) == (9, 4, 9) and not learner.labels
        assert learner.preferences == [("It's a wall.", "23 gold pieces.", 0.5)]  # no answer: a tie
        assert stats["llm_invalid_replies"] == 9
        judge.fault("normal")
        assert ann.submit(SCORE[:4]) == 4  # dropped messages may be asked again
        learner.until(lambda: len(learner.labels) == 4)


def test_slow_replies_arrive_while_the_learner_keeps_going(judge):
    judge.fault("slow", drip_s=0.002)  # each reply drips for about a second
    with openai_annotator(judge.url, timeout_s=10.0) as ann:
        learner = Learner(ann)
        ann.submit(SCORE[:4])
        learner.until(lambda: len(learner.labels) == 4)
        assert ann.stats()["latency_mean_s"] > 0.3 and ann.stats()["failures"] == 0
    assert learner.longest < 0.1


def test_a_hung_batch_kills_the_worker_and_close_is_prompt(judge):
    judge.fault("hang")
    ann = openai_annotator(judge.url, timeout_s=5.0, batch_timeout_s=0.5, max_attempts=5)
    learner = Learner(ann)
    ann.submit(SCORE[:3])
    learner.until(lambda: ann.stats()["worker_timeouts"] >= 1 and ann.stats()["worker_alive"] == 1)
    assert ann.stats()["errors/batch_timeout"] >= 3 and "batch_timeout_s" in ann.last_error
    judge.fault("normal")
    learner.until(lambda: len(learner.labels) == 3)
    assert ann.stats()["worker_restarts"] >= 1
    judge.fault("hang")
    ann.submit(["You kill the newt!"])
    learner.until(lambda: ann.stats()["in_flight"] == 1)
    pid, start = ann.worker_pid, time.monotonic()
    ann.close()
    assert time.monotonic() - start < 3.0 and ann.closed
    ann.close()  # idempotent
    assert ann.submit(["It's a wall."]) == 0 and len(ann.poll()) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert learner.longest < 0.1


def test_server_killed_and_restarted_mid_run_loses_and_duplicates_nothing():
    server = JudgeProcess("--game", "nethack")
    monsters = ["jackal", "newt", "grid bug", "lichen", "sewer rat", "kobold", "gnome", "fox"]
    stream = [f"You kill the {m}!" for m in monsters] + [f"{n} gold pieces." for n in range(1, 25)] + SCORE
    try:
        ann = openai_annotator(server.url, batch_size=4, max_retries=1, breaker_threshold=2)
        learner = Learner(ann)
        chunks = [stream[k:k + 2] for k in range(0, len(stream), 2)]
        for chunk in chunks[:6]:
            learner.step(chunk)
        server.kill()
        for chunk in chunks[6:16]:  # training goes on while the server is down
            learner.step(chunk)
        learner.until(lambda: ann.stats()["breaker_trips"] >= 1 and ann.stats()["errors/connection"] >= 2)
        before = len(learner.labels)
        for _ in range(20):
            learner.step()
        assert len(learner.labels) == before  # paused, nothing lost meanwhile
        server.start(server.port)  # the same port again
        for chunk in chunks[16:]:
            learner.step(chunk)
        learner.until(lambda: len(learner.labels) == len(set(stream)), timeout_s=30)
        for _ in range(20):
            learner.step()
        assert len(learner.labels) == len({m for m, _ in learner.labels}) == len(set(stream))
        assert sorted(learner.labels) == sorted((m, keyword_label(m)) for m in set(stream))
        stats = ann.stats()
        assert stats["errors/connection"] >= 1 and stats["dropped"] == 0 and stats["labels"] == len(set(stream))
        assert stats["duplicates"] == stats["dispatcher_errors"] == 0
        assert stats["failures"] + stats["unparsed"] == stats["retries"]
        assert stats["requests"] == stats["labels"] + stats["failures"] + stats["unparsed"]
        ann.close()
        assert learner.longest < 0.1, learner.longest
    finally:
        server.kill()


def test_a_killed_worker_is_restarted_and_its_batch_is_not_lost(judge):
    judge.fault("slow", drip_s=0.01)  # the batch is in flight for seconds
    with openai_annotator(judge.url, timeout_s=30.0) as ann:
        learner = Learner(ann)
        ann.submit(SCORE[:4])
        learner.until(lambda: ann.stats()["in_flight"] == 4)
        first = ann.worker_pid
        os.kill(first, signal.SIGKILL)
        learner.until(lambda: ann.stats()["worker_deaths"] == 1)
        judge.fault("normal")
        learner.until(lambda: len(learner.labels) == 4)
        stats = ann.stats()
        assert ann.worker_pid != first and stats["worker_restarts"] == 1 and stats["errors/worker_died"] == 4
        assert stats["duplicates"] == 0
        assert sorted(learner.labels) == sorted((m, keyword_label(m)) for m in SCORE[:4])
    with KeywordAnnotator(idle_wait_s=0.05) as ann:  # killed while idle
        learner = Learner(ann)
        learner.until(lambda: ann.worker_pid is not None)
        os.kill(ann.worker_pid, signal.SIGKILL)
        learner.until(lambda: ann.stats()["worker_alive"] == 0 or ann.stats()["worker_restarts"] == 1, 5)
        learner.until(lambda: ann.stats()["worker_restarts"] == 1)
        ann.submit(["You kill the newt!"])
        learner.until(lambda: learner.labels == [("You kill the newt!", 1)])


class FlakyBackend:
    """The keyword judge, but its first batch raises (a bug in a back-end) and it says "maybe" to one message."""

    def __init__(self):
        from zoo.llm.nethack_backends import KeywordBackend

        self.inner, self.calls = KeywordBackend(), 0

    def run(self, requests):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("a bug in the back-end")
        return [("maybe", None, 0.0, "") if m == ("Never mind.",) else o
                for (_, m), o in zip(requests, self.inner.run(requests))]

    def metrics(self):
        return {"llm_calls": float(self.calls)}

    def close(self):
        pass


def test_a_backend_that_raises_or_answers_nonsense_fails_requests_not_the_annotator():
    from zoo.agents.oni.annotator import Annotator
    from zoo.llm.nethack_backends import BackendSpec

    with Annotator(BackendSpec(f"{__name__}:FlakyBackend"), idle_wait_s=0.05, max_attempts=3) as ann:
        learner = Learner(ann)
        ann.submit(SCORE[6:11])
        assert "Never mind." in SCORE[6:11]
        learner.until(lambda: len(learner.labels) == 4 and ann.stats()["dropped"] == 1)
        stats = ann.stats()
        assert "a bug in the back-end" in ann.last_error and stats["errors/backend_error"] == 5 + 2
        assert stats["worker_restarts"] == stats["dispatcher_errors"] == 0 and stats["llm_calls"] == 3
        assert sorted(learner.labels) == sorted((m, 0) for m in SCORE[6:11] if m != "Never mind.")


def test_the_sync_and_thread_backgrounds_and_the_breaker_alone():
    ann = KeywordAnnotator("oracle", background="sync")
    assert ann.submit(["You hear convulsive ravings.", "23 gold pieces."]) == 2
    assert ann.poll().labels == [("23 gold pieces.", 0), ("You hear convulsive ravings.", 1)]
    assert ann.submit_pairs([("It's a wall.", "There is a staircase down here.")]) == 1
    assert ann.poll().preferences == [("It's a wall.", "There is a staircase down here.", 0.0)]
    ann.close()
    with KeywordAnnotator("staircase-lvl3", background="thread", idle_wait_s=0.05) as ann:
        learner = Learner(ann)
        ann.submit(["There is a staircase down here.", "You kill the newt!"])
        learner.until(lambda: len(learner.labels) == 2)
        assert dict(learner.labels) == {"There is a staircase down here.": 1, "You kill the newt!": 0}
    now = [0.0]
    breaker = CircuitBreaker(threshold=2, cooldown_s=1.0, max_cooldown_s=3.0, clock=lambda: now[0])
    breaker.failure()
    assert breaker.allowance(100) == (100, False)
    breaker.failure()
    assert breaker.state == OPEN and breaker.allowance(100) == (0, False) and breaker.seconds_to_probe() == 1.0
    now[0] = 1.0
    assert breaker.allowance(100) == (1, True)
    breaker.failure()  # the probe failed: twice as long
    assert breaker.state == OPEN and breaker.seconds_to_probe() == 2.0
    now[0] = 3.0
    breaker.success()
    assert breaker.state == CLOSED and breaker.cooldown_s == 1.0 and breaker.trips == 1


def _tiny_model(directory) -> str:
    from zoo.llm.tiny import save_tiny, tiny_gpt2, word_tokenizer, words_of

    texts = [classification_prompt(m).user for m in SCORE[:3]] + [ranking_prompt("a", "b").user]
    tokenizer = word_tokenizer(words_of(texts + [classification_prompt("x").system, "Reasoning:"]))
    return str(save_tiny(directory, tokenizer, tiny_gpt2(tokenizer, n_layer=1, n_embd=32, seed=0)))


def test_a_tiny_local_model_says_garbage_which_is_retried_then_dropped(tmp_path):
    directory = _tiny_model(tmp_path / "tiny")
    with TransformersAnnotator(directory, max_new_tokens=6, temperature=0.0, max_attempts=2, idle_wait_s=0.05) as ann:
        learner = Learner(ann)
        ann.submit(SCORE[:3])
        ann.submit_pairs([("It's a wall.", "23 gold pieces.")])
        learner.until(lambda: ann.stats()["dropped"] == 3 and len(learner.preferences) == 1, timeout_s=40)
        stats = ann.stats()
        assert (stats["unparsed"], stats["llm_invalid_replies"], stats["labels"]) == (7, 7, 0)
        assert learner.preferences == [("It's a wall.", "23 gold pieces.", 0.5)]
    reply = make_judge(model_dir=directory, max_new_tokens=6).answer(render_completion(classification_prompt("x")))
    assert isinstance(reply, str) and parse_classification(reply) is None
    (tmp_path / "empty").mkdir()
    with TransformersAnnotator(str(tmp_path / "empty"), idle_wait_s=0.05) as ann:  # the worker cannot load it
        learner = Learner(ann)
        ann.submit(["It's a wall."])
        learner.until(lambda: "could not start" in ann.last_error, timeout_s=40)
        assert ann.stats()["worker_alive"] == 0 and len(ann.poll()) == 0
        start = time.monotonic()
    assert time.monotonic() - start < 3.0


def test_bad_settings_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="task"):
        KeywordAnnotator("chess")
    with pytest.raises(ConfigError, match="background"):
        KeywordAnnotator(background="gpu")
    with pytest.raises(ConfigError, match="batch_size"):
        KeywordAnnotator(batch_size=0)
    with pytest.raises(ConfigError, match="breaker_threshold"):
        KeywordAnnotator(breaker_threshold=0)
    with pytest.raises(ConfigError, match="local model directory"):
        TransformersAnnotator(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="endpoint"):
        OpenAIAnnotator("http://127.0.0.1:9/v1", "m", endpoint="embeddings")
    with pytest.raises(ConfigError, match="http"):
        OpenAIAnnotator("127.0.0.1:9/v1", "m")
    with pytest.raises(ConfigError, match="temperature"):
        OpenAIAnnotator("http://127.0.0.1:9/v1", "m", temperature=-1)
    with KeywordAnnotator(background="sync") as ann:
        with pytest.raises(ConfigError, match="single string"):
            ann.submit("It's a wall.")
        with pytest.raises(ConfigError, match="decode_message"):
            ann.submit([b"It's a wall."])
        with pytest.raises(ConfigError, match="pairs"):
            ann.submit_pairs([("a", "b", "c")])
    quiet = OpenAIAnnotator("http://127.0.0.1:9/v1", "m", api_key="s3cret", background="sync")
    assert "s3cret" not in repr(quiet)
    quiet.close()


def test_the_ray_actor_variant_labels_and_is_restarted_after_a_kill():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with KeywordAnnotator("score", background="ray", idle_wait_s=0.05, ray_options={"num_cpus": 0}) as ann:
            learner = Learner(ann)
            ann.submit(SCORE[:5])
            learner.until(lambda: len(learner.labels) == 5, timeout_s=60)
            os.kill(ann.worker_pid, signal.SIGKILL)
            ann.submit(["You kill the newt!"])
            learner.until(lambda: len(learner.labels) == 6, timeout_s=60)
            assert ann.stats()["worker_restarts"] == 1 and learner.labels[-1] == ("You kill the newt!", 1)
            assert sorted(learner.labels[:5]) == sorted((m, keyword_label(m)) for m in SCORE[:5])
        assert learner.longest < 0.1
    finally:
        ray.shutdown()
