"""Text games: the rule-based oracle, the batched string env, and the LLM oracle's HTTP back-end."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from gymnasium.utils.env_checker import check_env

import zoo
from zoo.envs import list_envs, make_single_env
from zoo.envs.text import INVALID, NO, YES, HTTPOracle, OracleError, make_game
from zoo.envs.text.twenty_questions import SUBSET, subset_oracle

# (secret, question, answer): categories, attributes, guesses with aliases / plurals / odd spelling, invalid ones
TABLE = [
    ("dog", "Is it an animal?", YES), ("dog", "is it a LIVING thing", YES), ("banana", "Is it alive?", NO),
    ("banana", "Can you eat it?", YES), ("banana", "Is it a fruit?", YES), ("truck", "Is it edible?", NO),
    ("truck", "Does it have wheels?", YES), ("truck", "Is it a vehicle?", YES), ("pants", "Can you wear it?", YES),
    ("computer", "Is it an electronic device?", YES), ("piano", "Is it a musical instrument?", YES),
    ("piano", "Does it have keys?", YES), ("computer", "Does it have keys?", YES), ("pen", "Does it have keys?", NO),
    ("chair", "Can you sit on it?", YES), ("chair", "Is it made of wood?", YES), ("scissors", "Is it sharp?", YES),
    ("scissors", "Is it made of metal?", YES), ("pen", "Can you write with it?", YES),
    ("football", "Is it used in a sport?", YES), ("football", "Is it bigger than a car?", NO),
    ("truck", "Is it big?", YES), ("pen", "Does it fit in a pocket?", YES),
    # guesses: the word, a plural, an alias, punctuation and case
    ("dog", "Is it a dog?", YES), ("dog", "Is it a cat?", NO), ("dog", "is it a DOG!!", YES),
    ("dog", "Are they dogs?", YES), ("pants", "Is it trousers?", YES), ("pen", "Is it a pencil?", NO), ("pen", "Is it blue?", NO),
    ("pen", "Is it a piano?", NO), ("football", "Is it a soccer ball?", YES),
    # nothing the oracle knows
    ("chair", "What is the meaning of life?", INVALID), ("chair", "", INVALID), ("chair", "Why?", INVALID),
    ("chair", "Is it possible that it could be something we use every single day?", INVALID),
]


@pytest.mark.parametrize("secret,question,answer", TABLE)
def test_twenty_questions_oracle_answers(secret, question, answer):
    assert subset_oracle().answer(secret, question) == answer


def test_the_subset_is_the_papers_and_every_word_is_reachable():
    assert set(SUBSET) == {"football", "dog", "banana", "truck", "pants", "computer", "piano", "chair", "pen",
                           "scissors"}
    oracle = subset_oracle()
    signatures = {w: tuple(oracle.answer(w, f"Is it {a}?") for a in ("an animal", "food", "a vehicle", "clothing",
                                                                         "electronic", "an instrument", "furniture",
                                                                         "a tool", "sharp", "a sport"))
                  for w in SUBSET}
    assert len(set(signatures.values())) == len(SUBSET)  # attribute questions alone tell the words apart


def test_text_env_rewards_guesses_turn_limit_and_auto_reset():
    assert "text/twenty-questions-subset" in list_envs()
    env = zoo.make_env("text/twenty-questions-subset", num_envs=2, seed=0)
    obs = env.reset()
    assert obs == ["Questions:\n", "Questions:\n"]
    secrets = [e.secret for e in env.episodes]
    obs, reward, terminated, truncated, info = env.step(["Is it an animal?\nignored", f"Is it a {secrets[1]}?"])
    assert reward.tolist() == [-1.0, 0.0] and terminated.tolist() == [False, True] and not truncated.any()
    assert info["success"].tolist() == [0.0, 1.0]
    assert info["final_obs"][1] == f"Questions:\nIs it a {secrets[1]}? Yes.\n" and obs[1] == "Questions:\n"
    assert obs[0].startswith("Questions:\nIs it an animal? ") and "ignored" not in obs[0]
    total = -1.0
    for turn in range(19):  # the 20-turn budget
        obs, reward, terminated, _, info = env.step(["Is it blue?", "Is it blue?"])
        total += float(reward[0])
        if terminated[0]:
            break
    assert turn == 18 and total == -20.0 and info["final_obs"][0].count("\n") == 21
    with pytest.raises(TypeError, match="list of 2 strings"):
        env.step("Is it a dog?")


def test_single_text_env_passes_the_gymnasium_checker():
    env = make_single_env("text/twenty-questions-subset", seed=0)
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=3)
    assert obs == "Questions:\n" and env.observation_space.contains(obs)


class _FakeLLM(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][0]["content"]
        reply = "Yes, it is." if "'dog'" in prompt and "animal" in prompt else "no"
        payload = json.dumps({"choices": [{"message": {"content": reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_http_oracle_answers_through_an_openai_compatible_server():
    server = HTTPServer(("127.0.0.1", 0), _FakeLLM)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        oracle = HTTPOracle(f"http://127.0.0.1:{server.server_port}/v1", model="tiny")
        assert oracle.answer("dog", "Is it an animal?") == YES
        assert oracle.answer("dog", "Is it a vehicle?") == NO
        env = zoo.make_env("text/twenty-questions-subset", num_envs=1, seed=0, oracle=oracle)
        env.reset()
        _, reward, *_ = env.step(["Is it a vehicle?"])
        assert float(reward[0]) == -1.0
        # naming the secret wins whatever the LLM replies (the game's rule table knows the names)
        _, reward, terminated, _, info = env.step([f"Is it a {env.episodes[0].secret}?"])
        assert float(reward[0]) == 0.0 and bool(terminated[0]) and float(info["success"][0]) == 1.0
    finally:
        server.shutdown()


def test_unreachable_oracle_is_a_clear_error():
    oracle = HTTPOracle("http://127.0.0.1:9/v1", model="mistral-7b", retries=1, backoff_s=0.0, timeout_s=2.0)
    with pytest.raises(OracleError, match=r"127\.0\.0\.1:9/v1/chat/completions could not be reached after 2 tries"):
        oracle.answer("dog", "Is it an animal?")
    game = make_game("twenty-questions-subset", oracle=oracle)
    assert game.oracle is oracle


CITY_TABLE = [
    ("paris", "Is it in Europe?", YES), ("paris", "Is it a capital city?", YES), ("paris", "Is it on the coast?", NO),
    ("paris", "Is it Paris?", YES), ("paris", "Is it Lyon?", NO), ("sao paulo", "Is it São Paulo?", YES),
    ("istanbul", "Is it in Asia?", YES), ("istanbul", "Is it in Europe?", YES), ("toronto", "Is it in Canada?", YES),
    ("toronto", "Is it in the United States?", NO), ("new york", "Is it in North America?", YES),
    ("new york", "Is it NYC?", YES), ("london", "Is it in England?", YES), ("cairo", "Can you see the pyramids?", YES),
    ("beijing", "Do people speak Mandarin?", YES), ("lima", "Is it in the southern hemisphere?", YES),
    ("lima", "Is it in the northern hemisphere?", NO), ("chicago", "Does it get snow in winter?", YES),
    ("sydney", "Did it host the Olympics?", YES), ("vienna", "Is it in Georgia?", NO),
    ("delhi", "Is it New Delhi?", YES), ("mumbai", "Does it have more than ten million people?", YES),
    ("vancouver", "Is it a big city?", YES), ("dubai", "Is it a desert city?", YES),
    ("rio de janeiro", "Is it Rio?", YES), ("rome", "What do people eat there?", INVALID),
]


@pytest.mark.parametrize("secret,question,answer", CITY_TABLE)
def test_guess_my_city_oracle_answers(secret, question, answer):
    from zoo.envs.text.guess_my_city import city_oracle

    assert city_oracle().answer(secret, question) == answer


def test_guess_my_city_game_never_says_the_name():
    from zoo.envs.text.guess_my_city import CITIES, city_oracle

    oracle = city_oracle()
    assert len({oracle.secrets[c] for c in CITIES}) == len(CITIES)  # no two cities answer every question alike
    env = zoo.make_env("text/guess-my-city", num_envs=3, seed=1)
    env.reset()
    obs, reward, terminated, _, info = env.step(["Is it in Europe?", "Is it a capital?", f"Is it {env.episodes[2].secret}?"])
    assert reward.tolist() == [-1.0, -1.0, 0.0] and info["success"].tolist() == [0.0, 0.0, 1.0]
    for o in obs[:2]:
        assert o.splitlines()[-1].endswith(("Yes.", "No.")) and not any(c in o.lower() for c in CITIES)
