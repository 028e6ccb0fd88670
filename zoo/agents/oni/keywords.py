"""ONI's keyword judge (a deterministic rule-based judge of NetHack messages): the one label function that
:class:`~zoo.agents.oni.annotator.KeywordAnnotator` and the NetHack judge of ``zoo serve-judge`` share. It
lives in :mod:`zoo.llm.nethack_keywords` (no torch, no agents), so that the server loads it fast."""

from zoo.llm.nethack_keywords import (
    Judgement,
    judge_message,
    keyword_label,
    keyword_preference,
)

__all__ = ["Judgement", "judge_message", "keyword_label", "keyword_preference"]
