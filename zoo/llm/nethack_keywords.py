"""The keyword judge: a deterministic, rule-based judge of NetHack messages (no model; re-exported by
``zoo.agents.oni.keywords``, kept free of torch so that ``zoo serve-judge`` loads it fast).

:func:`judge_message` is the one place its labels come from: ``zoo.agents.oni.KeywordAnnotator``
and the NetHack judge of ``zoo serve-judge`` both call it. Each rule is a regular expression over the
lower-cased message with a weight per task kind (score, oracle, staircase); a message's score is the sum of
the weights of the rules it matches, it is helpful when that score is positive, and of two messages the one
with the higher score is preferred (equal scores: a tie).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zoo.llm.nethack_prompts import HELPFUL, UNHELPFUL, Task, resolve_task

# (pattern, weight for score, oracle, staircase, what it means)
_RULES: tuple[tuple[str, float, float, float, str], ...] = (
    # progress
    (r"\byou (kill|destroy)\b|\b(is|are) (killed|destroyed)\b", 2, 0, 0, "a monster was killed"),
    (r"\bwelcome to experience level\b", 2, 1, 1, "the hero reached a new experience level"),
    (r"\byou feel more experienced\b", 1, 1, 1, "the hero gained experience"),
    (r"\bgold pieces?\b", 2, 0, 0, "gold was found"),
    (r"\bcounting money\b|\bfootsteps of a guard on patrol\b", 1, 0, 0, "there is gold nearby"),
    (r"\b(stair(case|s|way)?|ladder) down\b|\byou (climb|go) down\b|\bdown the stairs\b", 3, 3, 3,
     "the way down is here"),
    ((r"\boracle\b|\bdelphi\b|\bconvulsive ravings\b|\bsnoring snakes\b|\bstrange wind\b|\bno more woodchucks\b"
      r"|\bloud zot\b"), 1, 4, 0, "the Oracle is near"),
    (r"\byou find a hidden (passage|door)\b|\bthe door opens\b|\byou succeed in (picking|forcing) the lock\b",
     1, 1, 1, "more of the level opened up"),
    (r"^[a-z] - (?!.*\bgold pieces?\b)", 1, 0, 0, "the hero picked up an item"),
    (r"\byou feel (much )?better\b|\byou feel (strong|tough|agile|healthy|wise|smart)\b", 1, 1, 1,
     "the hero grew stronger or healthier"),
    # setbacks, failed actions, questions
    (r"^it'?s (a wall|solid stone)\b|\bthere is a (wall|boulder) in the way\b|\byou bump into\b", -1, -1, -1,
     "the hero walked into an obstacle"),
    (r"\byou (can'?t|cannot|don'?t have|have no)\b|\byou are (too|unable)\b", -1, -1, -1, "an action failed"),
    (r"\bnever ?mind\b", -1, -1, -1, "an action was cancelled"),
    (r"\bwhat do you want to\b|\bin what direction\b|\breally attack\b|\[yn|\(y/n\)|\bunknown command\b",
     -1, -1, -1, "the game is asking a question or rejected a command"),
    (r"\byou (are beginning to feel|feel) (hungry|weak)\b|\bweak from hunger\b|\bfaint(ing|ed)?\b", -2, -2, -2,
     "the hero is getting hungry"),
    (r"\b(hits|bites|stings|kicks|butts|claws|scratches|touches you)!|\byou are hit\b|\bhits you\b", -1, -1, -1,
     "the hero was hurt"),
    (r"\byou die\b|\bpossessions identified\b", -3, -3, -3, "the hero died"),
    (r"\byou see no objects here\b|\bthere is nothing here\b|\bnothing happens\b", -1, -1, -1,
     "nothing happened"),
)
_COMPILED = tuple((re.compile(pattern), dict(zip(("score", "oracle", "staircase"), weights)), reason)
                  for pattern, *weights, reason in _RULES)


@dataclass(frozen=True)
class Judgement:
    """What the keyword judge makes of one message: its ``score``, ``label`` (1 helpful, 0 not) and the
    ``reasons`` (with the sign of each rule's weight) that led there."""

    message: str
    score: float
    label: int
    reasons: tuple[tuple[str, float], ...]

    def explanation(self) -> str:
        """Reasoning-like text for a reply (no answer marker in it)."""
        quoted = f'"{self.message}"' if self.message else "The empty message"
        if not self.reasons:
            return f"{quoted} reports nothing that bears on the goal."
        parts = "; ".join(f"{reason} ({'+' if w > 0 else ''}{w:g})" if w else f"{reason} (no bearing here)"
                          for reason, w in self.reasons)
        verdict = "it moves the hero towards the goal" if self.label else "it does not move the hero towards the goal"
        return f"{quoted}: {parts}. Overall {verdict}."


def judge_message(message: str, task: str | Task = "score") -> Judgement:
    """The keyword judge's verdict on ``message`` for ``task`` (the one rule set, shared with the server)."""
    kind = resolve_task(task).name
    text = " ".join(str(message).split())
    lowered = text.lower()
    score, reasons = 0.0, []
    for pattern, weights, reason in _COMPILED:
        if pattern.search(lowered):
            score += weights[kind]
            reasons.append((reason, float(weights[kind])))
    return Judgement(text, score, HELPFUL if score > 0 else UNHELPFUL, tuple(reasons))


def keyword_label(message: str, task: str | Task = "score") -> int:
    """1 if the keyword judge finds ``message`` helpful for ``task``, else 0."""
    return judge_message(message, task).label


def keyword_preference(first: str, second: str, task: str | Task = "score") -> float:
    """P(first is better) by the keyword score: 1.0, 0.0, or 0.5 for equal scores."""
    a, b = judge_message(first, task).score, judge_message(second, task).score
    return 1.0 if a > b else 0.0 if a < b else 0.5
