"""Logged dialogues of question games: a weak scripted policy that generates them (the behaviour-cloning warm
start and the offline datasets of the language agents), and their JSON-lines file format."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from zoo.envs.text.games import Episode, QuestionGame
from zoo.errors import ConfigError


@dataclass(frozen=True)
class Turn:
    """One utterance transition: the history before it, the question asked, the reward, the history after;
    ``token_ids``: the actor's sampled tokens of the question when it was recorded (empty otherwise; they
    belong to one tokenizer, so dialogue files do not keep them)."""

    observation: str
    action: str
    reward: float
    next_observation: str
    done: bool
    token_ids: tuple[int, ...] = ()


def dialogue_return(turns: list[Turn]) -> float:
    return float(sum(t.reward for t in turns))


class WeakQuestioner:
    """A scripted player that ignores the answers: each turn it guesses a secret it has not guessed yet with
    probability ``guess_prob`` (drawn uniformly), otherwise asks one of the game's attribute questions at
    random. Its dialogues look right but play badly, like the paper's weak SFT data."""

    def __init__(self, game: QuestionGame, guess_prob: float = 0.3, seed: int = 0):
        if not 0.0 <= guess_prob <= 1.0:
            raise ConfigError(f"guess_prob must lie in [0, 1], got {guess_prob}")
        if not game.questions:
            raise ConfigError(f"{game.name}: the game lists no attribute questions to ask")
        self.game, self.guess_prob, self.rng = game, guess_prob, np.random.default_rng(seed)

    def question(self, guessed: set[str]) -> str:
        left = [s for s in self.game.secrets if s not in guessed]
        if left and self.rng.random() < self.guess_prob:
            secret = left[int(self.rng.integers(len(left)))]
            guessed.add(secret)
            return self.game.guess(secret)
        return self.game.questions[int(self.rng.integers(len(self.game.questions)))]

    def play(self) -> list[Turn]:
        episode = Episode(self.game, self.game.secrets[int(self.rng.integers(len(self.game.secrets)))])
        turns, guessed, obs, done = [], set(), episode.observation(), False
        while not done:
            action = self.question(guessed)
            next_obs, reward, done = episode.step(action)
            turns.append(Turn(obs, action, reward, next_obs, done))
            obs = next_obs
        return turns


def weak_dialogues(game: QuestionGame, episodes: int, guess_prob: float = 0.3, seed: int = 0) -> list[list[Turn]]:
    """``episodes`` dialogues of :class:`WeakQuestioner` on ``game``."""
    player = WeakQuestioner(game, guess_prob, seed)
    return [player.play() for _ in range(episodes)]


def save_dialogues(path: str | os.PathLike, dialogues: list[list[Turn]]) -> Path:
    """One JSON object per line: ``{"turns": [{observation, action, reward, next_observation, done}, ...]}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for turns in dialogues:
            f.write(json.dumps({"turns": [{k: v for k, v in asdict(t).items() if k != "token_ids"}
                                          for t in turns]}) + "\n")
    return path


def load_dialogues(path: str | os.PathLike) -> list[list[Turn]]:
    """Read :func:`save_dialogues`' file (plain JSON, nothing executed); a malformed line names its number."""
    dialogues = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                turns = [Turn(str(t["observation"]), str(t["action"]), float(t["reward"]),
                              str(t["next_observation"]), bool(t["done"])) for t in json.loads(line)["turns"]]
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{path}:{number}: not a dialogue line ({type(exc).__name__}: {exc})") from exc
            dialogues.append(turns)
    return dialogues
