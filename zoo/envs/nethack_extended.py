"""ONI's NetHack tasks (Zheng et al., 2024) on nle 1.3: Score, Oracle and Staircase-N with the 28-action extended set.

The extended set is NLE's 23 task actions plus CAST, QUAFF, PRAY, PICKUP and PAY, with the reference's macros
(facebookresearch/oni, ``NetHack*ExtendedActions-v1``): CAST picks spell ``a``; when the game says "You feel more
confident in your ... skills", the next free moment runs ``#enhance`` and picks the first skill; at an eat or drink
item prompt the ``y`` key (the NW move) picks the first inventory letter offered and any other key dismisses the
prompt. Staircase-N succeeds when the hero descends the stairs onto level N, Oracle when the Oracle stands in the
hero's 3x3 neighbourhood; success pays +50 and ends the episode (the game is quit, as NLE's tasks do). Score pays
NLE's score delta with its -0.01 penalty for steps that do not advance the game clock.

The success rules are pure functions of (blstats, message, glyphs), so that they can be checked by hand. This
module imports ``nle``; :mod:`zoo.envs.nethack` builds these envs for the ``nethack/*-extended`` ids.
"""

from __future__ import annotations

import enum
import functools
import re

import numpy as np
from nle import nethack
from nle.env.base import ASCII_ESC, ASCII_SPACE, SKIP_EXCEPTIONS
from nle.env.tasks import TASK_ACTIONS, NetHackScore

from zoo.errors import ConfigError

_C = nethack.Command
#: NLE's 23 task actions, then CAST, QUAFF, PRAY, PICKUP, PAY (indices 23..27).
EXTENDED_ACTIONS = (*TASK_ACTIONS, _C.CAST, _C.QUAFF, _C.PRAY, _C.PICKUP, _C.PAY)
#: yes/no questions left to the agent (NLE's, plus the drink prompt that QUAFF and fountains raise).
EXTENDED_SKIP_EXCEPTIONS = (*SKIP_EXCEPTIONS, b"drink")
SUCCESS_REWARD = 50.0
GOALS = ("score", "oracle", "staircase")

#: blstats entries used here (nle >= 0.9 layout, 27 entries; checked against ``nle.nethack.NLE_BL_*`` in the tests).
BL_X, BL_Y, BL_DEPTH, BL_DLEVEL = 0, 1, 12, 24

DESCEND_MESSAGE = b"You descend the stairs"
CONFIDENT_MESSAGE = b"You feel more confident in"
KILL_MESSAGE = b"you kill "
_ITEM_PROMPTS = (b"What do you want to eat", b"What do you want to drink")
_OFFERED_LETTERS = re.compile(rb"\[([a-zA-Z]+)")
_KEY_Y = ord("y")
_FIRST_ENTRY = ord("a")


def message_bytes(message) -> bytes:
    """NLE's 256-byte message array as bytes, up to the first NUL."""
    return np.asarray(message, dtype=np.uint8).tobytes().split(b"\0", 1)[0]


def prompt_key(message: bytes, key: int) -> int:
    """The key to send for ``key`` given the message on screen: at an eat or drink item prompt, ``y`` picks the
    first inventory letter the prompt offers and any other key sends a space (dismissing the prompt); anywhere
    else ``key`` itself."""
    if any(p in message for p in _ITEM_PROMPTS):
        offered = _OFFERED_LETTERS.search(message)
        return offered.group(1)[0] if offered is not None and key == _KEY_Y else ASCII_SPACE
    return key


def staircase_success(blstats: np.ndarray, message: bytes, level: int, *, stat: int = BL_DLEVEL) -> bool:
    """Staircase-N: the hero has just gone down the stairs (the message says so) onto level ``level``.

    ``stat`` is the blstats entry read as the level: the reference reads index 24, NLE's dungeon level number
    (``NLE_BL_DLEVEL``, the same index in nle 0.9 and 1.3); ``BL_DEPTH`` (12) reads the absolute depth
    instead, which differs from it inside a branch such as the Gnomish Mines.
    """
    return DESCEND_MESSAGE in message and int(blstats[stat]) == level


def oracle_success(blstats: np.ndarray, glyphs: np.ndarray, oracle_glyph: int) -> bool:
    """Oracle: the Oracle's glyph is in the 3x3 neighbourhood of the hero at (blstats x, y) on the glyph map."""
    x, y = int(blstats[BL_X]), int(blstats[BL_Y])
    neighbours = glyphs[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2]
    return bool(np.any(neighbours == oracle_glyph))


@functools.cache
def oracle_glyph() -> int:
    """The glyph of the (peaceful, non-pet) Oracle monster."""
    for glyph in range(nethack.GLYPH_MON_OFF, nethack.GLYPH_PET_OFF):
        if nethack.permonst(nethack.glyph_to_mon(glyph)).mname == "Oracle":
            return glyph
    raise RuntimeError("this nle build has no Oracle monster")  # pragma: no cover


class NetHackExtended(NetHackScore):
    """One of ONI's tasks (``goal`` "score", "oracle" or "staircase" with its ``level``) with the extended actions.

    Step returns gymnasium's 5-tuple; ``info["success"]`` is True at the step that succeeds. Running out of
    ``max_episode_steps`` (NLE's 5000 by default, as the reference) is a truncation, not a termination.
    ``staircase_stat="depth"`` reads the absolute depth instead of the reference's dungeon level number.
    """

    class StepStatus(enum.IntEnum):
        ABORTED = -1
        RUNNING = 0
        DEATH = 1
        TASK_SUCCESSFUL = 2

    def __init__(self, goal: str = "score", level: int | None = None, *, staircase_stat: str = "dlevel", **kwargs):
        if goal not in GOALS:
            raise ConfigError(f"goal must be one of {GOALS}, got {goal!r}")
        if goal == "staircase" and (not isinstance(level, int) or level < 2):
            raise ConfigError(f"the staircase goal needs a target level >= 2 (level=3 or 4 in ONI), got {level!r}")
        if staircase_stat not in ("dlevel", "depth"):
            raise ConfigError(f"staircase_stat must be 'dlevel' (the reference's) or 'depth', got {staircase_stat!r}")
        if "actions" in kwargs:
            raise ConfigError("the extended tasks fix their 28 actions; use nethack/<task> ids for other action sets")
        self.goal, self.level = goal, level
        self._level_stat = BL_DLEVEL if staircase_stat == "dlevel" else BL_DEPTH
        self._oracle = oracle_glyph() if goal == "oracle" else None
        self._enhance, self._kills = False, 0
        super().__init__(actions=EXTENDED_ACTIONS, **kwargs)

    def reset(self, seed=None, options=None):
        self._enhance, self._kills = False, 0
        return super().reset(seed=seed, options=options)

    def _is_episode_end(self, observation):
        if self.goal == "staircase":
            message = message_bytes(observation[self._message_index])
            done = staircase_success(observation[self._blstats_index], message, self.level, stat=self._level_stat)
        elif self.goal == "oracle":
            done = oracle_success(observation[self._blstats_index], observation[self._glyph_index], self._oracle)
        else:
            done = False
        return self.StepStatus.TASK_SUCCESSFUL if done else self.StepStatus.RUNNING

    def _reward_fn(self, last_observation, action, observation, end_status):
        if self.goal == "score":  # score delta plus NLE's frozen-clock penalty
            return super()._reward_fn(last_observation, action, observation, end_status)
        return SUCCESS_REWARD if end_status == self.StepStatus.TASK_SUCCESSFUL else 0.0

    def step(self, action: int):
        last_observation = tuple(a.copy() for a in self.last_observation)
        last_message = message_bytes(last_observation[self._message_index])
        if KILL_MESSAGE in last_message.lower():
            self._kills += 1
        key = prompt_key(last_message, int(self.actions[action]))
        observation, done = self.nethack.step(key)
        if observation[self._program_state_index][0] == 1 or not self._allow_all_modes:
            observation, done = self._perform_known_steps(observation, done, exceptions=True, key=key)
        self._steps += 1
        self.last_observation = observation
        end_status = self._get_end_status(observation, done)
        reward = float(self._reward_fn(last_observation, key, observation, end_status))
        result = self._get_observation(observation)
        info = {"end_status": end_status, "success": end_status == self.StepStatus.TASK_SUCCESSFUL,
                "kills": self._kills, "depth": int(observation[self._blstats_index][BL_DEPTH])}
        if end_status and not done:
            # NLE reuses its arrays: keep the state the episode ended in, not the quit screen, as the last observation
            result = {k: v.copy() for k, v in result.items()}
            self._quit_game(observation, done)
            done = True
        truncated = end_status == self.StepStatus.ABORTED
        info["is_ascended"] = self.nethack.how_done() == nethack.ASCENDED
        return result, reward, bool(done) and not truncated, truncated, info

    def _perform_known_steps(self, observation, done, exceptions=True, key=None):
        """NLE's automatic answers (dismiss --More--, decline text input and most questions) plus the macros."""
        index = self._message_index
        while not done:
            message = message_bytes(observation[index])
            if key == _C.CAST and exceptions:  # the spell menu is open: cast the first spell
                observation, done = self.nethack.step(_FIRST_ENTRY)
                key = None
                message = message_bytes(observation[index])
                if done:
                    break
            if CONFIDENT_MESSAGE in message:
                self._enhance = True
            internal = observation[self._internal_index]
            if internal[3]:  # xwaitforspace: --More--
                previous = observation[index].copy()
                observation, done = self.nethack.step(ASCII_SPACE)
                key = ASCII_SPACE
                if DESCEND_MESSAGE + b"." in message:  # keep the message the staircase rule reads
                    observation = (*observation[:index], previous, *observation[index + 1:])
                continue
            if internal[2]:  # getline: no text input
                observation, done = self.nethack.step(ASCII_ESC)
                key = ASCII_ESC
                continue
            if internal[1]:  # a yes/no or item question
                if exceptions and (self._allow_all_yn_questions or any(e in message for e in EXTENDED_SKIP_EXCEPTIONS)):
                    break
                observation, done = self.nethack.step(ASCII_ESC)
                key = ASCII_ESC
            if self._enhance and exceptions and not done:  # advance the first skill that can be
                observation, done = self.nethack.step(_C.ENHANCE)
                if not done:
                    observation, done = self.nethack.step(_FIRST_ENTRY)
                self._enhance = False
            break
        return observation, done
