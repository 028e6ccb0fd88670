"""Multi-turn question games as environments whose observations and actions are strings.

:class:`QuestionGame` is one episode's rules (the reference's format: the observation is ``"Questions:\\n"``
plus one line per turn, ``"<question> <answer>"``; reward -1 per turn and 0 on the turn whose question names
the secret, which ends the episode; at most ``max_turns`` turns). :class:`TextVecEnv` steps ``num_envs`` games
with lists of strings and auto-resets like every ``VecEnv``; :class:`TextGameEnv` is the single-env gymnasium
form (``Text`` spaces) that gymnasium's env checker accepts.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from zoo.envs.text.oracles import ANSWERS, INVALID, AttributeOracle, Oracle, ask_all
from zoo.envs.vec import BatchedEnv
from zoo.errors import ConfigError

HEADER = "Questions:\n"
#: characters of observations and questions (printable ASCII)
CHARSET = frozenset(string.printable)
MAX_QUESTION_CHARS = 256


def clean_question(utterance: str) -> str:
    """A policy's utterance as one question: up to its first newline, stripped, at most 256 characters."""
    line = utterance.split("\n", 1)[0].strip()
    return "".join(c for c in line if c in CHARSET and c not in "\n\r\x0b\x0c")[:MAX_QUESTION_CHARS]


@dataclass
class QuestionGame:
    """Rules of one game: the secrets to draw from, the rule table that knows their names (a question that
    names the secret wins, whoever answers it), the oracle that answers (the rule table unless another is
    given, e.g. an LLM), the turn budget."""

    name: str
    secrets: tuple[str, ...]
    rules: AttributeOracle
    oracle: Oracle | None = None
    max_turns: int = 20
    #: one plain question per attribute the rules know (the weak policy's and the tiny tokenizer's material)
    questions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.oracle is None:
            self.oracle = self.rules

    def guess(self, secret: str) -> str:
        """The question that guesses ``secret`` (``"Is it a dog?"``, ``"Is it Paris?"``)."""
        return f"Is it {secret.title()}?" if self.name == "guess-my-city" else f"Is it {article(secret)} {secret}?"

    def vocabulary(self) -> list[str]:
        """Every text this game can show or expect: the header, answers, questions, guesses, names, phrases
        (what a word-level tokenizer for it must cover)."""
        names = [n for s in self.secrets for n in self.rules.names_of(s)]
        phrases = [p for ps in self.rules.triggers.values() for p in ps]
        return [HEADER, *ANSWERS, *self.questions, *(self.guess(s) for s in self.secrets), *names, *phrases]

    def max_observation_chars(self) -> int:
        return len(HEADER) + self.max_turns * (MAX_QUESTION_CHARS + 20)


def article(noun: str) -> str:
    """``a`` or ``an`` before ``noun`` (by its first letter; good enough for the games' word lists)."""
    return "an" if noun[:1].lower() in "aeiou" else "a"


class Episode:
    """One running game: the hidden secret and the history so far."""

    def __init__(self, game: QuestionGame, secret: str):
        self.game, self.secret, self.lines, self.done = game, secret, [], False

    def observation(self) -> str:
        return HEADER + "".join(line + "\n" for line in self.lines)

    def question(self, utterance: str) -> str:
        """The question ``utterance`` asks (changes nothing)."""
        if self.done:
            raise RuntimeError("the episode is over; reset first")
        return clean_question(utterance)

    def step(self, utterance: str) -> tuple[str, float, bool]:
        """Ask one question; returns (observation, reward, done)."""
        question = self.question(utterance)
        # an empty utterance asks nothing (and costs an LLM oracle no call)
        return self.record(question, self.game.oracle.answer(self.secret, question) if question else INVALID)

    def record(self, question: str, answer: str) -> tuple[str, float, bool]:
        """Play ``question`` answered ``answer``; returns (observation, reward, done)."""
        self.lines.append(f"{question} {answer}")
        won = self.game.rules.guessed(question) == self.secret
        self.done = won or len(self.lines) >= self.game.max_turns
        return self.observation(), 0.0 if won else -1.0, self.done


class TextVecEnv(BatchedEnv):
    """``num_envs`` question games stepped together: ``reset() -> list[str]``,
    ``step(list[str]) -> (list[str], reward, terminated, truncated, info)`` with reward / terminated /
    truncated as ``(num_envs,)`` tensors on ``device`` and ``info["final_obs"]`` (strings) and
    ``info["success"]`` (1.0 where the secret was guessed). Finished games reset automatically.
    It implements the :class:`~zoo.envs.BatchedEnv` protocol, like every numeric ``VecEnv`` (it steps
    synchronously: ``step_async`` keeps the utterances, ``step_wait`` steps).
    """

    host_simulated = True
    info_keys = ("success",)

    def __init__(self, game: QuestionGame, num_envs: int = 1, device="cpu", seed: int | None = None):
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        super().__init__(num_envs, device, spaces.Text(game.max_observation_chars(), charset=CHARSET),
                         spaces.Text(MAX_QUESTION_CHARS, min_length=0, charset=CHARSET))
        self.game = game
        self.env_id = f"text/{game.name}"
        self._rng = np.random.default_rng(seed)
        self.episodes: list[Episode] = []

    def _new_episode(self) -> Episode:
        return Episode(self.game, self.game.secrets[int(self._rng.integers(len(self.game.secrets)))])

    def reset(self, seed: int | None = None, options: dict | None = None) -> list[str]:
        self._check_no_step_in_flight("reset()")
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.episodes = [self._new_episode() for _ in range(self.num_envs)]
        return [e.observation() for e in self.episodes]

    def step(self, actions: list[str]) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        if not self.episodes:
            raise RuntimeError(f"{self.env_id}: call reset() before step()")
        self._check_no_step_in_flight("step()")
        if isinstance(actions, str) or len(actions) != self.num_envs or not all(isinstance(a, str) for a in actions):
            raise TypeError(f"{self.env_id}: actions must be a list of {self.num_envs} strings")
        # every question is answered before any game moves on: an oracle that fails (an LLM server down)
        # raises with every game as it was, and the same step can be retried
        questions = [episode.question(utterance) for episode, utterance in zip(self.episodes, actions)]
        asked = [i for i, q in enumerate(questions) if q]  # an empty utterance asks nothing
        answers = [INVALID] * self.num_envs
        for i, answer in zip(asked, ask_all(self.game.oracle, [(self.episodes[i].secret, questions[i])
                                                                for i in asked])):
            answers[i] = answer
        obs, final, rewards, dones, success = [], [], [], [], []
        for i in range(self.num_envs):
            o, r, d = self.episodes[i].record(questions[i], answers[i])
            final.append(o)
            rewards.append(r)
            dones.append(d)
            success.append(float(d and r == 0.0))
            if d:
                self.episodes[i] = self._new_episode()
                o = self.episodes[i].observation()
            obs.append(o)
        as_tensor = lambda x, dt: torch.tensor(x, dtype=dt, device=self.device)  # noqa: E731
        return (obs, as_tensor(rewards, torch.float32), as_tensor(dones, torch.bool),
                torch.zeros(self.num_envs, dtype=torch.bool, device=self.device),
                {"final_obs": final, "success": as_tensor(success, torch.float32)})

    def oracle_metrics(self) -> dict[str, float]:
        """The oracle's counters for a logger (an LLM oracle's ``llm/requests``, ``llm/retries``,
        ``llm/failures``, ``llm/invalid_replies``, latency); empty for the rule table."""
        metrics = getattr(self.game.oracle, "metrics", None)
        return dict(metrics()) if callable(metrics) else {}

    def sample_actions(self) -> list[str]:
        """Random strings (mostly invalid questions), one per env."""
        return list(self.action_space.sample())

    def __repr__(self) -> str:
        return f"TextVecEnv({self.env_id!r}, num_envs={self.num_envs}, device={self.device}, strings in and out)"


class TextGameEnv(gym.Env):
    """The single-env gymnasium form of a question game (strings in, strings out)."""

    metadata = {"render_modes": []}

    def __init__(self, game: QuestionGame):
        self.game = game
        self.observation_space = spaces.Text(game.max_observation_chars(), charset=CHARSET)
        self.action_space = spaces.Text(MAX_QUESTION_CHARS, min_length=0, charset=CHARSET)
        self.episode: Episode | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.episode = Episode(self.game, self.game.secrets[int(self.np_random.integers(len(self.game.secrets)))])
        return self.episode.observation(), {}

    def step(self, action: str):
        if self.episode is None:
            raise RuntimeError("call reset() before step()")
        obs, reward, done = self.episode.step(str(action))
        return obs, reward, done, False, {"success": float(done and reward == 0.0)}


#: game name -> factory
GAMES: dict[str, Callable[[], QuestionGame]] = {}


def _twenty_questions_subset() -> QuestionGame:
    from zoo.envs.text.twenty_questions import SUBSET, SUBSET_QUESTIONS, subset_oracle

    return QuestionGame("twenty-questions-subset", tuple(SUBSET), rules=subset_oracle(),
                        questions=SUBSET_QUESTIONS)


def _twenty_questions() -> QuestionGame:
    from zoo.envs.text.twenty_questions import QUESTIONS, WORDS, full_oracle

    rules = full_oracle()
    return QuestionGame("twenty-questions", tuple(WORDS), rules=rules, questions=_not_guesses(QUESTIONS, rules))


def _not_guesses(questions: tuple[str, ...], rules: AttributeOracle) -> tuple[str, ...]:
    """The attribute questions that do not name a secret (in the full game "Does it have keys?" guesses
    "key"): the weak player's questions must ask, not guess."""
    return tuple(q for q in questions if rules.guessed(q) is None)


def _guess_my_city() -> QuestionGame:
    from zoo.envs.text.guess_my_city import CITIES, city_oracle, city_questions

    rules = city_oracle()
    return QuestionGame("guess-my-city", tuple(CITIES), rules=rules, questions=_not_guesses(city_questions(), rules))


GAMES["twenty-questions"] = _twenty_questions
GAMES["twenty-questions-subset"] = _twenty_questions_subset
GAMES["guess-my-city"] = _guess_my_city


def make_game(task: str, oracle: Oracle | None = None, max_turns: int | None = None,
              secrets: list[str] | tuple[str, ...] | None = None) -> QuestionGame:
    """The game ``task``, optionally answered by another ``oracle`` (e.g. an :class:`HTTPOracle`), with another
    turn budget, or with the hidden secret drawn from ``secrets`` only (a smaller game; the rules still know
    every name, so guessing a word outside it is a wrong guess)."""
    if task not in GAMES:
        raise ConfigError(f"unknown text game {task!r}; known: {', '.join(sorted(GAMES))}")
    game = GAMES[task]()
    if oracle is not None:
        if not callable(getattr(oracle, "answer", None)):
            raise ConfigError(f"{task}: oracle must be an Oracle (an object with answer(secret, question), e.g. "
                              f"HTTPOracle(...)), got {oracle!r}")
        game.oracle = oracle
    if max_turns is not None:
        if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1:
            raise ConfigError(f"{task}: max_turns must be a positive integer, got {max_turns!r}")
        game.max_turns = max_turns
    if secrets is not None:
        if isinstance(secrets, str) or not all(isinstance(s, str) for s in secrets):
            raise ConfigError(f"{task}: secrets must be a list of words (e.g. secrets=['dog', 'cat']), got "
                              f"{secrets!r}")
        unknown = [s for s in secrets if s not in game.secrets]
        if unknown or not secrets:
            raise ConfigError(f"{task}: secrets must be a non-empty subset of the game's; unknown: {unknown}")
        game.secrets = tuple(secrets)
    return game
