"""ONI's prompts to an LLM judge of NetHack messages, and the parsing of its replies (re-exported by
``zoo.agents.oni.prompts``; kept here, free of torch and the agents, so that ``zoo serve-judge`` loads it fast).

Two kinds of request, both about NetHack's one-line ``message`` (see :func:`decode_message`):

* classification: is this message helpful for the task's goal, or unhelpful / neutral? The reply must end
  in a line ``Answer: helpful`` or ``Answer: unhelpful``; :func:`parse_classification` gives 1, 0 or
  ``None`` (no answer found: the request failed, the annotator retries it);
* ranking: which of two messages shows more progress towards the goal? The reply ends in ``Answer: 1``,
  ``Answer: 2`` or ``Answer: tie``; :func:`parse_ranking` gives ``p`` = P(first is better) in {1, 0, 0.5},
  and a tie when nothing parses (as the reference does).

Parsing takes the *last* answer marker, tolerates case, punctuation, markdown and whitespace, and first cuts
out every paragraph of the prompt that the reply repeats (a model that echoes the prompt or its few-shot
examples repeats their ``Answer:`` lines; the reference, which searches a label token anywhere, would take
those for an answer). The messages sit in the prompt as JSON strings on lines of their own, which is also how
``zoo serve-judge`` finds them (:func:`parse_request`).

Tasks (:func:`resolve_task`): ``score``, ``oracle``, ``staircase-lvl<N>`` (also as env ids such as
``nethack/oracle-extended``), each with its goal text and few-shot examples.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from zoo.errors import ConfigError

HELPFUL, UNHELPFUL = 1, 0
MESSAGE_BYTES = 256  # NetHack's message field


# ----------------------------------------------------------------------------- messages
def decode_message(message) -> str:
    """NetHack's ``message`` field (bytes, a numpy array or a torch tensor of byte values) as text: latin-1,
    NUL bytes dropped, surrounding whitespace stripped."""
    if hasattr(message, "detach"):  # a torch tensor, on any device
        message = message.detach().cpu().numpy()
    if isinstance(message, (bytes, bytearray, memoryview)):
        raw = bytes(message)
    else:
        array = np.asarray(message)
        if array.ndim != 1:
            raise ConfigError(f"decode_message takes one message (1-D, e.g. shape (256,)), got shape {array.shape}; "
                              "use decode_messages for a batch")
        if array.size and (array.dtype.kind not in "iub" or array.min() < 0 or array.max() > 255):
            raise ConfigError(f"a message must hold byte values 0..255 (an integer array), got dtype {array.dtype}"
                              f" with values in [{array.min()}, {array.max()}]")
        raw = array.astype(np.uint8).tobytes()
    return raw.replace(b"\x00", b"").decode("latin-1").strip()


def decode_messages(batch) -> list[str]:
    """The messages of a batch of message fields (shape ``(N, 256)``; numpy or a CPU/GPU torch tensor)."""
    if hasattr(batch, "detach"):
        batch = batch.detach().cpu().numpy()
    array = np.asarray(batch)
    if array.ndim != 2:
        raise ConfigError(f"decode_messages takes a batch of shape (N, {MESSAGE_BYTES}), got shape {array.shape}")
    return [decode_message(row) for row in array]


def _quote(message: str) -> str:
    return json.dumps(str(message), ensure_ascii=False)  # one line, quotes and control characters escaped


# ----------------------------------------------------------------------------- tasks and goals
@dataclass(frozen=True)
class Task:
    """A NetHack task the judge knows: ``name`` (score, oracle, staircase) and, for staircase, ``depth``."""

    name: str
    depth: int | None = None

    @property
    def key(self) -> str:
        return f"staircase-lvl{self.depth}" if self.name == "staircase" else self.name

    @property
    def goal(self) -> str:
        if self.name == "score":
            return ("Maximise the score: kill monsters, collect gold and go down the stairs to deeper dungeon "
                    "levels.")
        if self.name == "oracle":
            return ("Find the Oracle: explore and go down the stairs until you stand next to the Oracle, who "
                    "lives a few levels below the start (dungeon levels 5 to 9).")
        return f"Descend the stairs to dungeon level {self.depth}."


_GOAL_STAIRS = re.compile(r"Descend the stairs to dungeon level (\d+)\.")
TASKS = ("score", "oracle", "staircase-lvl3", "staircase-lvl4")


def resolve_task(task: str | Task) -> Task:
    """The :class:`Task` named ``task``: ``score``, ``oracle``, ``staircase-lvl<N>`` (``staircase``: level 2,
    as nle's Staircase task), also with a ``nethack/`` prefix and an ``-extended`` suffix (the env ids)."""
    if isinstance(task, Task):
        return task
    if not isinstance(task, str):
        raise ConfigError(f"task must be a task name such as 'score' or 'oracle', got {type(task).__name__}")
    name = task.strip().lower().removeprefix("nethack/").removesuffix("-extended")
    if name in ("score", "oracle"):
        return Task(name)
    if name == "staircase":
        return Task("staircase", 2)
    match = re.fullmatch(r"staircase-?(?:lvl)?(\d+)", name)
    if match and 2 <= int(match.group(1)) <= 50:
        return Task("staircase", int(match.group(1)))
    raise ConfigError(f"unknown ONI task {task!r}; one of {', '.join(TASKS)} (or staircase-lvl<N>, N in 2..50), "
                      "optionally as an env id such as 'nethack/oracle-extended'")


def task_from_goal(goal: str) -> Task | None:
    """The task whose goal text is ``goal`` (how the judge server knows what a prompt asks about)."""
    goal = " ".join(goal.split())
    for name in ("score", "oracle"):
        if goal == Task(name).goal:
            return Task(name)
    match = _GOAL_STAIRS.fullmatch(goal)
    return Task("staircase", int(match.group(1))) if match else None


# ----------------------------------------------------------------------------- few-shot examples
#: (message, reasoning, label) per task kind; their labels agree with the keyword judge (a test checks it)
EXAMPLES: dict[str, tuple[tuple[str, str, int], ...]] = {
    "score": (
        ("You kill the jackal!  Welcome to experience level 2.",
         "A monster died and the hero reached a new experience level; both add to the score.", HELPFUL),
        ("14 gold pieces.", "The hero picked up gold, which counts towards the score.", HELPFUL),
        ("That door is closed.", "A plain observation: nothing was gained.", UNHELPFUL),
        ("You are beginning to feel hungry.", "Hunger is a growing danger, not progress.", UNHELPFUL),
    ),
    "oracle": (
        ("There is a staircase down here.",
         "Going down is how the hero gets closer to the level where the Oracle lives.", HELPFUL),
        ("You hear convulsive ravings.", "This sound is heard on the Oracle's level: the Oracle is near.", HELPFUL),
        ("12 gold pieces.", "Gold does not bring the hero any closer to the Oracle.", UNHELPFUL),
        ("It's a wall.", "The hero walked into a wall and wasted a turn.", UNHELPFUL),
    ),
    "staircase": (
        ("There is a staircase down here.", "The hero stands on the way down, which is what this goal asks for.",
         HELPFUL),
        ("You find a hidden passage.", "A hidden passage opens more of the level in which to look for the stairs.",
         HELPFUL),
        ("You kill the newt!", "Fighting does not take the hero any deeper.", UNHELPFUL),
        ("You can't move diagonally out of an intact doorway.", "A failed move wastes a turn.", UNHELPFUL),
    ),
}

_LABEL_WORD = {HELPFUL: "helpful", UNHELPFUL: "unhelpful"}
_RANK_WORD = {1.0: "1", 0.0: "2", 0.5: "tie"}


def examples_for(task: str | Task) -> tuple[tuple[str, str, int], ...]:
    return EXAMPLES[resolve_task(task).name]


def _classification_example(message: str, reasoning: str, label: int) -> str:
    return f"Example message: {_quote(message)}\nReasoning: {reasoning}\nAnswer: {_LABEL_WORD[label]}"


def _ranking_examples(task: Task, skip: Sequence[str]) -> list[str]:
    """Pairs from the classification examples: helpful vs unhelpful (1), unhelpful vs helpful (2), two
    unhelpful ones (tie)."""
    good = [e for e in EXAMPLES[task.name] if e[2] == HELPFUL and e[0] not in skip]
    bad = [e for e in EXAMPLES[task.name] if e[2] == UNHELPFUL and e[0] not in skip]
    pairs = []
    if good and bad:
        pairs.append((good[0], bad[0], 1.0))
    if len(good) > 1 and len(bad) > 1:
        pairs.append((bad[1], good[1], 0.0))
    if len(bad) > 1:
        pairs.append((bad[0], bad[1], 0.5))
    blocks = []
    for a, b, p in pairs:
        verdict = {1.0: "The first shows more progress.", 0.0: "The second shows more progress.",
                   0.5: "Neither shows progress over the other."}[p]
        blocks.append(f"Example pair: 1) {_quote(a[0])} 2) {_quote(b[0])}\n"
                      f"Reasoning: First: {a[1]} Second: {b[1]} {verdict}\nAnswer: {_RANK_WORD[p]}")
    return blocks


# ----------------------------------------------------------------------------- prompts
SYSTEM_PROMPT = (
    "You judge play in NetHack, the turn-based dungeon game in which a hero explores ever deeper dungeon levels, "
    "fights monsters, gathers gold and items and tries to stay alive. You read single messages from the game's "
    "top line and weigh what they report against the goal you are given. You reason briefly and honestly.")

_CLASSIFY_INSTRUCTIONS = (
    "Decide whether the message below reports progress towards this goal. It is helpful only when it shows real "
    "progress towards the goal; it is unhelpful when it is neutral, empty, a failed or cancelled action, a "
    "question from the game, a warning or bad news. Think in one or two sentences, then end your reply with a "
    "line holding the word Answer, a colon and your label (helpful or unhelpful), with nothing after it.")

_RANK_INSTRUCTIONS = (
    "Two messages from two moments of play follow. Decide which of them shows more progress towards this goal, "
    "or whether neither shows more than the other. Think in one or two sentences, then end your reply with a "
    "line holding the word Answer, a colon and your verdict (1, 2 or tie), with nothing after it.")


@dataclass(frozen=True)
class Prompt:
    """One request as chat messages (``system``, ``user``); :meth:`messages` for a chat endpoint,
    :func:`render_completion` for a completions endpoint."""

    system: str
    user: str

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]


def classification_prompt(message: str, task: str | Task = "score", few_shot: bool = True) -> Prompt:
    """The prompt asking whether ``message`` is helpful for ``task``'s goal (few-shot examples whose message
    is the one judged are left out, so that a reply copying one is never mistaken for an echo)."""
    task = resolve_task(task)
    parts = [f"Goal: {task.goal}", _CLASSIFY_INSTRUCTIONS]
    if few_shot:
        parts += ["Examples:"] + [_classification_example(*e) for e in EXAMPLES[task.name] if e[0] != message]
    parts.append(f"Message to judge: {_quote(message)}")
    return Prompt(SYSTEM_PROMPT, "\n\n".join(parts))


def ranking_prompt(first: str, second: str, task: str | Task = "score", few_shot: bool = True) -> Prompt:
    """The prompt asking which of two messages shows more progress towards ``task``'s goal."""
    task = resolve_task(task)
    parts = [f"Goal: {task.goal}", _RANK_INSTRUCTIONS]
    if few_shot:
        parts += ["Examples:"] + _ranking_examples(task, skip=(first, second))
    parts.append(f"First message: {_quote(first)}\nSecond message: {_quote(second)}")
    return Prompt(SYSTEM_PROMPT, "\n\n".join(parts))


TEMPLATES = ("plain", "llama3")


def render_completion(prompt: Prompt, template: str = "plain") -> str:
    """``prompt`` as one text for a completions endpoint: ``plain`` (system, user, then ``Reasoning:`` for the
    model to continue) or ``llama3`` (Llama 3's published chat format, as the reference sends to vLLM)."""
    if template == "plain":
        return f"{prompt.system}\n\n{prompt.user}\n\nReasoning:"
    if template == "llama3":
        return ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                f"{prompt.system}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
                f"{prompt.user}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    raise ConfigError(f"unknown completion template {template!r}; one of {', '.join(TEMPLATES)}")


# ----------------------------------------------------------------------------- parsing replies
_DECOR = r"[\s*_`'\"]*"
_MARKER = r"\banswer\b" + _DECOR + r"(?:is\b)?" + _DECOR + r"[:=\-\u2013\u2014]+" + r"[\s*_`'\"(\[]*"
_CLASS_MARK = re.compile(_MARKER + r"(not[\s_-]*helpful|unhelpful|helpful|neutral)\b", re.IGNORECASE)
_RANK_MARK = re.compile(_MARKER + r"(?:message\s*|option\s*|#\s*)?"
                        r"([12]\b(?!\.\d)|first|second|tie|none|neither|equal|same|both)", re.IGNORECASE)
_ALL_EXAMPLE_PARAGRAPHS = tuple(
    [_classification_example(*e) for examples in EXAMPLES.values() for e in examples]
    + [block for name in EXAMPLES for block in _ranking_examples(Task(name, 3 if name == "staircase" else None), ())])


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _without_echo(reply: str, prompt: Prompt | str | None) -> str:
    """``reply`` (whitespace collapsed) without the prompt's paragraphs it repeats (all few-shot examples when
    no prompt is given)."""
    if prompt is None:
        paragraphs = _ALL_EXAMPLE_PARAGRAPHS
    else:
        texts = [prompt.system, prompt.user] if isinstance(prompt, Prompt) else [prompt]
        paragraphs = tuple(p for text in texts for p in re.split(r"\n\s*\n", text))
    text = _normalise(reply)
    for paragraph in sorted({_normalise(p) for p in paragraphs if p.strip()}, key=len, reverse=True):
        text = text.replace(paragraph, " ")
    return text


def parse_classification(reply: str, prompt: Prompt | str | None = None) -> int | None:
    """1 (helpful), 0 (unhelpful or neutral) from the last answer marker of ``reply``, after cutting out what
    it echoes of ``prompt``; ``None`` if there is none (a failed request, to be retried)."""
    matches = _CLASS_MARK.findall(_without_echo(str(reply), prompt))
    if not matches:
        return None
    return HELPFUL if matches[-1].lower() == "helpful" else UNHELPFUL


def parse_ranking(reply: str, prompt: Prompt | str | None = None) -> float:
    """P(first message is better): 1.0 (answer 1), 0.0 (answer 2) or 0.5 (a tie, or no answer marker)."""
    matches = _RANK_MARK.findall(_without_echo(str(reply), prompt))
    if not matches:
        return 0.5
    verdict = matches[-1].lower()
    return 1.0 if verdict in ("1", "first") else 0.0 if verdict in ("2", "second") else 0.5


def ranking_parsed(reply: str, prompt: Prompt | str | None = None) -> bool:
    """Whether ``reply`` holds a ranking answer at all (a tie from :func:`parse_ranking` may be a non-answer)."""
    return bool(_RANK_MARK.search(_without_echo(str(reply), prompt)))


def format_classification_reply(reasoning: str, label: int) -> str:
    """A reply in the format the parser expects (used by ``zoo serve-judge``)."""
    return f"{reasoning.strip()}\nAnswer: {_LABEL_WORD[int(label)]}"


def format_ranking_reply(reasoning: str, p: float) -> str:
    return f"{reasoning.strip()}\nAnswer: {_RANK_WORD[float(p)]}"


# ----------------------------------------------------------------------------- the server's side
@dataclass(frozen=True)
class Request:
    """What a prompt asks (read back by the judge server): ``kind`` (classify or rank), the task, the
    message(s)."""

    kind: str
    task: Task
    messages: tuple[str, ...]


_GOAL_LINE = re.compile(r"^Goal:[ \t]*(.+?)[ \t]*$", re.MULTILINE)
_END = r"[ \t]*(?:<\|.*)?$"  # the line ends there, or a chat template's special tokens follow
_JUDGE_LINE = re.compile(r"^Message to judge:[ \t]*(\".*\")" + _END, re.MULTILINE)
_PAIR_LINES = re.compile(r"^First message:[ \t]*(\".*\")[ \t]*\r?\nSecond message:[ \t]*(\".*\")" + _END,
                         re.MULTILINE)


def looks_like_request(prompt: str) -> bool:
    """Whether ``prompt`` is one of these prompts (cheap: for a server deciding which judge answers)."""
    return bool(_GOAL_LINE.search(prompt)) and bool(_JUDGE_LINE.search(prompt) or _PAIR_LINES.search(prompt))


def parse_request(prompt: str) -> Request:
    """The :class:`Request` in a prompt built here (as a chat's joined messages or a rendered completion);
    the last goal and message lines count. Raises ``ValueError`` naming what is missing."""
    goals = _GOAL_LINE.findall(prompt)
    if not goals:
        raise ValueError("the prompt has no 'Goal: ...' line (the format of zoo.llm.nethack_prompts)")
    task = task_from_goal(goals[-1])
    if task is None:
        raise ValueError(f"the goal {goals[-1]!r} is not one of the ONI tasks' goals")
    judged = list(_JUDGE_LINE.finditer(prompt))
    pairs = list(_PAIR_LINES.finditer(prompt))
    try:
        if judged and (not pairs or judged[-1].start() > pairs[-1].start()):
            return Request("classify", task, (json.loads(judged[-1].group(1)),))
        if pairs:
            return Request("rank", task, (json.loads(pairs[-1].group(1)), json.loads(pairs[-1].group(2))))
    except ValueError as exc:
        raise ValueError(f"a message in the prompt is not a JSON string: {exc}") from None
    raise ValueError("the prompt has no 'Message to judge: \"...\"' line and no 'First message:' / "
                     "'Second message:' lines (the format of zoo.llm.nethack_prompts)")
