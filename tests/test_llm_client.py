"""The shared LLM client and HTTPOracle against the project's own server, ``zoo serve-judge``, started as a real
process on a free port of 127.0.0.1: a game played through it, each injected fault's own error or retry within
the deadline, concurrent batches, strict reply parsing, counters, and all-or-nothing steps across a server
killed and restarted mid-run."""

from __future__ import annotations

import copy
import json
import pickle
import re
import select
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

import zoo
from zoo.cli import main
from zoo.envs.text import INVALID, NO, YES, HTTPOracle, OracleError
from zoo.envs.text.oracles import parse_answer
from zoo.envs.text.twenty_questions import subset_oracle
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
)
from zoo.llm.client import LLMClient

pytest.importorskip("openai")


class Judge:
    """A ``zoo serve-judge`` process (``python -m zoo.cli serve-judge``) and its URL."""

    def __init__(self, *args: str, port: int = 0):
        self.args = args
        self.start(port)

    def start(self, port: int) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "zoo.cli", "serve-judge", "--port", str(port),
                                      *self.args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ready, end = "", time.monotonic() + 60
        while time.monotonic() < end and self.proc.poll() is None:
            if select.select([self.proc.stdout], [], [], 0.5)[0]:
                ready = self.proc.stdout.readline()
                if "listening on" in ready:
                    break
        match = re.search(r"http://127\.0\.0\.1:(\d+)/v1", ready)
        if match is None:
            self.proc.kill()
            raise RuntimeError(f"zoo serve-judge did not start: {ready!r} {self.proc.stdout.read()!r}")
        self.port = int(match.group(1))
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc.stdout.close()

    def fault(self, fault: str, count: int | None = None, **extra) -> dict:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/fault", method="POST",
                                         data=json.dumps({"fault": fault, "count": count, **extra}).encode())
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())


@pytest.fixture(scope="module")
def judge():
    server = Judge()
    yield server
    server.kill()


@pytest.fixture
def served(judge):
    judge.fault("normal", drip_s=0.5)
    yield judge
    judge.fault("normal", drip_s=0.5)


def oracle_for(judge: Judge, **kw) -> HTTPOracle:
    kw = {"timeout_s": 5.0, "retries": 2, "backoff_s": 0.05, **kw}
    return HTTPOracle(judge.url, model="judge", **kw)


def test_a_game_played_through_the_judge_answers_like_the_rules(served):
    oracle, rules = oracle_for(served), subset_oracle()
    env = zoo.make_env("text/twenty-questions-subset", num_envs=3, seed=0, oracle=oracle)
    env.reset()
    secrets = [e.secret for e in env.episodes]
    questions = ["Is it an animal?", "Can you eat it?", "Is it a vehicle?", "Is it blue?"]
    for question in questions:
        obs, reward, terminated, *_ = env.step([question, question, ""])  # the empty one asks nothing
        assert reward.tolist() == [-1.0, -1.0, -1.0]
    for i in (0, 1):
        assert obs[i] == "Questions:\n" + "".join(f"{q} {rules.answer(secrets[i], q)}\n" for q in questions)
    assert obs[2] == "Questions:\n" + " Invalid Question.\n" * 4
    _, reward, terminated, _, info = env.step([f"Is it a {secrets[0]}?", "", ""])
    assert float(reward[0]) == 0.0 and bool(terminated[0]) and float(info["success"][0]) == 1.0
    metrics = env.oracle_metrics()
    assert metrics["llm/requests"] == 9 and metrics["llm/failures"] == 0 and metrics["llm/retries"] == 0
    assert metrics["llm/latency_max_s"] > 0 and metrics["llm/invalid_replies"] == 0


def test_completions_endpoint_and_the_plain_client(served):
    oracle = oracle_for(served, endpoint="completions")
    assert oracle.answer("dog", "Is it an animal?") == YES and oracle.answer("dog", "Is it a vehicle?") == NO
    client = LLMClient(served.url, "judge", timeout_s=5)
    prompt = "The hidden answer is 'paris'.\nQuestion: Is it in Europe?"
    assert client.complete(prompt) == YES
    assert client.chat([{"role": "user", "content": prompt}]) == YES
    assert client.chat_batch([]) == []
    client.close()
    assert client.complete(prompt) == YES  # a closed client opens new connections


@pytest.mark.parametrize("fault, error, tries", [
    ("500", LLMServerError, 3), ("429", LLMRateLimitError, 3),  # retried, then their own error
    ("401", LLMAuthError, 1), ("garbage", LLMResponseError, 1),  # never retried
    ("slow", LLMTimeoutError, 3), ("hang", LLMTimeoutError, 3),  # the limit is the whole reply's
])
def test_each_fault_gets_its_own_error_within_the_deadline(served, fault, error, tries):
    served.fault(fault)
    # a short deadline where the fault is about time; elsewhere one a loaded machine never misses (a try cut
    # off by its deadline would be retried and miscount the attempts)
    timeout_s = 0.8 if fault in ("slow", "hang") else 5.0
    oracle = oracle_for(served, timeout_s=timeout_s)
    start = time.monotonic()
    with pytest.raises(error, match=re.escape(f"{served.url}/chat/completions")) as caught:
        oracle.answer("dog", "Is it an animal?")
    elapsed = time.monotonic() - start
    assert isinstance(caught.value, OracleError) and caught.value.attempts == tries
    assert elapsed < tries * timeout_s + 5.0, elapsed  # a slow drip (one byte each 0.5 s) is cut off too (slack: a busy CI)
    stats = oracle.stats
    assert (stats.requests, stats.attempts, stats.retries, stats.failures) == (1, tries, tries - 1, 1)
    assert sum(stats.errors.values()) == 1
    others = {LLMServerError, LLMRateLimitError, LLMAuthError, LLMResponseError, LLMTimeoutError} - {error}
    assert not isinstance(caught.value, tuple(others))


def test_a_transient_failure_is_retried_and_succeeds(served):
    served.fault("500", count=2)
    oracle = oracle_for(served)
    assert oracle.answer("dog", "Is it an animal?") == YES
    assert (oracle.stats.retries, oracle.stats.failures) == (2, 0)
    assert oracle.metrics()["llm/attempts"] == 3


def test_the_request_deadline_caps_retries(served):
    served.fault("hang")
    oracle = oracle_for(served, timeout_s=30.0, retries=10, deadline_s=1.0)
    start = time.monotonic()
    with pytest.raises(LLMTimeoutError, match="1 s a request"):
        oracle.answer("dog", "Is it an animal?")
    assert time.monotonic() - start < 5.0  # not the 10 x 30 s the retries would take without the deadline


def test_a_bad_request_is_not_retried(served):
    client = LLMClient(served.url, "judge", timeout_s=5, retries=3, backoff_s=0.05)
    with pytest.raises(LLMBadRequestError, match="HTTP 400.*not retried.*model name 'judge'") as caught:
        client.chat([{"role": "user", "content": "hello, no game here"}])
    assert caught.value.attempts == 1 and client.stats.retries == 0


def test_an_unparseable_reply_is_invalid_and_counted_never_no(served):
    served.fault("invalid")  # the server says "Not sure."
    oracle = oracle_for(served)
    assert oracle.answer("dog", "Is it an animal?") == INVALID
    assert oracle.stats.invalid_replies == 1 and oracle.metrics()["llm/invalid_replies"] == 1


@pytest.mark.parametrize("reply, answer", [
    ("Yes.", YES), ("yes", YES), ("  NO!", NO), ("No.", NO), ("Yes, it is.", YES), ("Invalid Question.", INVALID),
    ('"No."', NO), ("Not sure.", None), ("No idea", None), ("Nope", None), ("Yes it is", None), ("", None),
    ("Maybe. Yes.", None), ("Nothing", None),
])
def test_replies_are_parsed_strictly(reply, answer):
    assert parse_answer(reply) == answer


def test_a_batch_is_requested_concurrently(served):
    served.fault("slow", drip_s=0.004)  # each reply takes about a second to drip
    oracle = oracle_for(served, timeout_s=20.0)
    start = time.monotonic()
    assert oracle.answer("dog", "Is it an animal?") == YES
    one = time.monotonic() - start
    served.fault("slow", drip_s=0.004)
    start = time.monotonic()
    answers = oracle.answer_batch([("dog", "Is it an animal?"), ("truck", "Is it a vehicle?")] * 4)
    assert answers == [YES, YES] * 4
    assert time.monotonic() - start < 5 * one, (one, time.monotonic() - start)  # one after another: 8x


def _state(env):
    return ([(e.secret, list(e.lines), e.done) for e in env.episodes], env._rng.bit_generator.state)


def test_a_failed_step_changes_nothing_and_can_be_retried(served):
    oracle = oracle_for(served, retries=0)
    env = zoo.make_env("text/twenty-questions-subset", num_envs=4, seed=3, oracle=oracle)
    reference = zoo.make_env("text/twenty-questions-subset", num_envs=4, seed=3)
    env.reset(), reference.reset()
    first = ["Is it an animal?", "Is it food?", "", "Is it a dog?"]
    env.step(first), reference.step(first)
    before = _state(env)
    second = ["Can you eat it?", "Is it a vehicle?", "Is it clothing?", "Is it a cat?"]
    served.fault("500", count=1)  # one request of the batch fails, the others succeed
    with pytest.raises(LLMServerError):
        env.step(second)
    assert _state(env) == before
    served.fault("hang")
    with pytest.raises(LLMTimeoutError):
        oracle_for(served, retries=0, timeout_s=0.5).answer_batch([("dog", q) for q in second])
    served.fault("normal")
    got, expected = env.step(second), reference.step(second)
    assert got[0] == expected[0] and got[1].tolist() == expected[1].tolist()
    assert got[4]["final_obs"] == expected[4]["final_obs"] and _state(env) == _state(reference)


def test_a_server_killed_mid_run_fails_the_step_cleanly_and_the_retry_succeeds_after_restart():
    server = Judge("--api-key", "s3cret")
    try:
        with pytest.raises(LLMAuthError, match="refused the credentials"):
            HTTPOracle(server.url, model="judge", api_key="wrong", retries=2).answer("dog", "Is it an animal?")
        oracle = HTTPOracle(server.url, model="judge", api_key="s3cret", timeout_s=2.0, retries=2, backoff_s=0.1)
        env = zoo.make_env("text/twenty-questions-subset", num_envs=3, seed=5, oracle=oracle)
        reference = zoo.make_env("text/twenty-questions-subset", num_envs=3, seed=5)
        env.reset(), reference.reset()
        plays = [["Is it an animal?"] * 3, ["Can you eat it?", "", "Is it a vehicle?"], ["Is it a dog?"] * 3,
                 ["Is it clothing?", "Is it a tool?", "Is it alive?"]]
        for actions in plays[:2]:
            env.step(actions), reference.step(actions)
        server.kill()
        before = _state(env)
        start = time.monotonic()
        with pytest.raises(LLMConnectionError, match=r"could not be reached after 3 tries.*Is it running"):
            env.step(plays[2])
        assert time.monotonic() - start < 10.0 and _state(env) == before
        server.start(server.port)  # the same port again
        for actions in plays[2:]:
            got, expected = env.step(actions), reference.step(actions)
            assert got[0] == expected[0] and got[1].tolist() == expected[1].tolist()
        assert _state(env) == _state(reference)
        stats = oracle.stats
        # the step's requests that had failed for good when the batch gave up (the rest were cancelled)
        assert 1 <= stats.failures <= 3 and stats.errors == {"connection": stats.failures} and stats.retries >= 2
    finally:
        if server.proc.poll() is None:
            server.kill()


def test_oracles_copy_and_pickle(served):
    oracle = oracle_for(served)
    assert oracle.answer("dog", "Is it an animal?") == YES
    for twin in (copy.deepcopy(oracle), pickle.loads(pickle.dumps(oracle))):
        assert twin.client is not oracle.client and twin.stats.requests == 1
        assert twin.answer("dog", "Is it a vehicle?") == NO and oracle.stats.requests == 1


def test_client_settings_are_validated():
    for kw in ({"timeout_s": 0}, {"timeout_s": float("nan")}, {"retries": -1}, {"retries": 1.5},
               {"concurrency": 0}, {"deadline_s": float("inf")}, {"backoff_s": -1}):
        with pytest.raises(ConfigError):
            LLMClient("http://127.0.0.1:9/v1", "m", **kw)
    with pytest.raises(ConfigError, match="http"):
        LLMClient("127.0.0.1:9/v1", "m")
    with pytest.raises(ConfigError, match="endpoint"):
        HTTPOracle("http://127.0.0.1:9/v1", model="m", endpoint="embeddings")
    with pytest.raises(ConfigError, match="secret"):
        HTTPOracle("http://127.0.0.1:9/v1", model="m", prompt="Question: {question}")
    assert issubclass(LLMConnectionError, LLMError) and OracleError is LLMError


def test_serve_judge_rejects_bad_options(capsys):
    assert main(["serve-judge", "--port", "70000"]) == 2
    assert "--port must be in 0..65535" in capsys.readouterr().err


def test_the_judge_answers_with_a_local_model_and_the_client_parses_it_strictly(tmp_path):
    from zoo.agents import FilteredBC

    directory = FilteredBC("text/twenty-questions-subset", seed=0, device="cpu", sft_steps=0).save_pretrained(
        tmp_path / "judge-model")
    server = Judge("--model", str(directory))
    try:
        oracle = oracle_for(server)
        first = [oracle.answer("dog", "Is it an animal?") for _ in range(2)]
        assert first[0] == first[1] and first[0] in ("Yes.", "No.", "Invalid Question.")  # greedy: the same
        client = LLMClient(server.url, model="judge", timeout_s=20.0)
        text = client.complete("The hidden answer is 'dog'.\nQuestion: Is it an animal?\n")
        assert isinstance(text, str)  # whatever the untrained tiny model says, served as a completion
        client.close()
    finally:
        server.kill()
    with pytest.raises(Exception):
        Judge("--model", str(tmp_path / "missing"))  # a directory only: nothing is downloaded
