"""Enrichment: what the router can tell about a request from its content alone.

Pure functions of the request. The task classifier here is a transparent keyword
scorer, the seam that a learned classifier replaces; it never looks at a field the
caller set, only at the messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from turnout.schemas.models import ChatMessage, InferenceRequest, Signals

# Characters per token for English prose and code under BPE tokenizers such as
# cl100k: about four. Recorded as the method so that analysts know it is an estimate.
CHARS_PER_TOKEN = 4.0
TOKEN_METHOD = "estimate:chars/4"
TASK_METHOD = "keywords-v1"
PER_MESSAGE_OVERHEAD_TOKENS = 4  # role and separators, as in OpenAI's chat accounting


@dataclass(frozen=True)
class TaskRule:
    task_type: str
    patterns: tuple[re.Pattern[str], ...]


def _rule(task_type: str, *patterns: str) -> TaskRule:
    return TaskRule(task_type, tuple(re.compile(p, re.IGNORECASE) for p in patterns))


TASK_RULES: tuple[TaskRule, ...] = (
    _rule(
        "code-generation",
        r"\b(write|implement|create|generate|build)\b.{0,40}\b(function|class|script|program|code|method|api|query)\b",
        r"```",
        r"\b(python|javascript|typescript|rust|golang|java|c\+\+|sql|bash)\b",
        r"\bdef \w+\(|\bfunction \w+\(|\bclass \w+[:({]",
    ),
    _rule(
        "code-review",
        r"\b(review|refactor|lint)\b.{0,30}\b(code|function|class|diff|pull request|pr|patch|commit)\b",
        r"\b(code review|find (the )?bugs?|code smells?)\b",
        r"\bwhat'?s wrong with (this|my) code\b",
    ),
    _rule("summarization", r"\b(summari[sz]e|summary|tl;?dr|condense|key points|in (a few|three|two) sentences)\b"),
    _rule("translation", r"\btranslate\b", r"\b(in|into|to) (french|german|spanish|italian|japanese|chinese|portuguese)\b"),
    _rule("extraction", r"\bextract\b", r"\b(pull out|list all) (the )?(names|dates|entities|emails|fields)\b"),
    _rule("classification", r"\b(classify|categori[sz]e|label|sentiment)\b"),
    _rule("math-reasoning", r"\b(solve|prove|calculate|compute|equation|integral|derivative)\b", r"\d+\s*[-+*/^]\s*\d+"),
    _rule("creative-writing", r"\b(poem|story|haiku|lyrics|limerick|fiction)\b"),
    _rule("chit-chat", r"^\s*(hi|hello|hey|thanks|thank you|good (morning|evening)|how are you)\b"),
)
FALLBACK_TASK = "question-answering"


def estimate_tokens(messages: list[ChatMessage]) -> int:
    text_tokens = sum(len(m.content) for m in messages) / CHARS_PER_TOKEN
    return int(round(text_tokens)) + PER_MESSAGE_OVERHEAD_TOKENS * len(messages)


def classify_task(messages: list[ChatMessage]) -> tuple[str, float]:
    """Task type and a confidence in [0, 1] from the last user turn (plus the system
    prompt, which often states the task)."""
    text = _task_text(messages)
    scores = {rule.task_type: sum(1 for p in rule.patterns if p.search(text)) for rule in TASK_RULES}
    best = max(scores, key=lambda task: scores[task])
    if scores[best] == 0:
        return FALLBACK_TASK, 0.3
    total = sum(scores.values())
    return best, round(scores[best] / total, 3)


def _task_text(messages: list[ChatMessage]) -> str:
    """The last user turn first (patterns anchored at ``^`` see the user's own words),
    then the system prompts."""
    users = [m.content for m in messages if m.role == "user"]
    systems = [m.content for m in messages if m.role == "system"]
    return "\n".join(users[-1:] + systems)


def compute_signals(request: InferenceRequest, fleet: object = None) -> Signals:
    task_type, confidence = classify_task(request.messages)
    return Signals(
        task_type=task_type,
        task_confidence=confidence,
        task_method=TASK_METHOD,
        input_tokens=estimate_tokens(request.messages),
        token_method=TOKEN_METHOD,
        turns=sum(1 for m in request.messages if m.role == "user"),
    )
