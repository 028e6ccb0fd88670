"""ONI's prompts and reply parsing (classification, ranking, few-shot examples, goals per task) and
:func:`decode_message`. They live in :mod:`zoo.llm.nethack_prompts`, which imports neither torch nor the
agents, so that ``zoo serve-judge`` can read these prompts without loading the zoo; this is their home on the
agent's side."""

from zoo.llm.nethack_prompts import (
    EXAMPLES,
    HELPFUL,
    MESSAGE_BYTES,
    SYSTEM_PROMPT,
    TASKS,
    TEMPLATES,
    UNHELPFUL,
    Prompt,
    Request,
    Task,
    classification_prompt,
    decode_message,
    decode_messages,
    examples_for,
    format_classification_reply,
    format_ranking_reply,
    looks_like_request,
    parse_classification,
    parse_ranking,
    parse_request,
    ranking_parsed,
    ranking_prompt,
    render_completion,
    resolve_task,
    task_from_goal,
)

__all__ = ["EXAMPLES", "HELPFUL", "MESSAGE_BYTES", "SYSTEM_PROMPT", "TASKS", "TEMPLATES", "UNHELPFUL", "Prompt",
           "Request", "Task", "classification_prompt", "decode_message", "decode_messages", "examples_for",
           "format_classification_reply", "format_ranking_reply", "looks_like_request", "parse_classification",
           "parse_ranking", "parse_request", "ranking_parsed", "ranking_prompt", "render_completion",
           "resolve_task", "task_from_goal"]
