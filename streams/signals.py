"""Enrichment: what the router reads from a request's content, in one pass.

Every signal comes from the request itself, never from a field the caller set to steer
routing: tokens (exact for OpenAI encodings up to a prefix, a calibrated estimate
beyond), turns, language, the task type from a classifier trained on labelled examples
(``classifier.py``), a complexity score, the expected size of the answer, the
capabilities the request needs, and the kinds of sensitive data it holds (kinds only,
never values).

An embedding request (``input`` set) is read over its texts instead of a conversation:
its task type is ``embedding`` with confidence 1.0 (the request says what it is, so the
chat classifier is not asked), its tokens are those of the texts (no per-message
overhead), it has no turns and no answer to expect, and it needs the ``embeddings``
capability. Language and sensitive data are read from the texts as from a prompt, so
tenant policies apply to what is sent for embedding too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from turnout.schemas.fleet import EMBEDDINGS, ModelDeployment
from turnout.schemas.models import ChatMessage, InferenceRequest, Signals

from .classifier import load_default
from .language import detect_language, detect_messages_language
from .sensitive import find_sensitive
from .tokens import REFERENCE_ENCODING, count_message_tokens, count_texts_tokens

EMBEDDING_TASK = "embedding"
EMBEDDING_METHOD = "input-field"  # the task type comes from the request's shape, not a classifier

# Typical answer sizes per task, in tokens; a request's max_tokens caps them.
EXPECTED_OUTPUT = {
    "chit-chat": 60,
    "classification": 20,
    "extraction": 200,
    "question-answering": 300,
    "summarization": 250,
    "code-review": 500,
    "code-generation": 600,
    "math-reasoning": 500,
    "creative-writing": 500,
}
# How hard a task is before its particulars are read, 0 to 1.
TASK_DIFFICULTY = {
    "chit-chat": 0.05,
    "classification": 0.1,
    "extraction": 0.25,
    "translation": 0.3,
    "summarization": 0.3,
    "question-answering": 0.35,
    "creative-writing": 0.4,
    "code-review": 0.55,
    "code-generation": 0.6,
    "math-reasoning": 0.65,
}
# Phrases that mark a harder request; plain substrings of the lower-cased text, because
# one case-insensitive regex alternation over 3 KB cost ~90 µs where these cost ~5.
_HARD_CUES = (
    "step by step", "step-by-step", "prove ", "derive ", "explain why", "trade-off", "tradeoff",
    "architecture", "optimis", "optimiz", "edge case", "design ", "concurren", "distributed", "complexity", "rigorous",
)
_CUE_WINDOW = 2_000  # characters of the last user turn read for difficulty cues


def fleet_tokenizer(fleet: Mapping[str, ModelDeployment] | None) -> str:
    """Count with the fleet's encoding when all deployments share one, else o200k.
    Remembered for the last fleet seen: a router asks with the same fleet every time."""
    if fleet is not None and _last_fleet[0] is fleet:
        return _last_fleet[1]
    names = {d.tokenizer for d in (fleet or {}).values()}
    name = names.pop() if len(names) == 1 and None not in names else REFERENCE_ENCODING
    if fleet is not None:
        _last_fleet[:] = [fleet, name]
    return name


_last_fleet: list = [None, REFERENCE_ENCODING]


def required_capabilities(request: InferenceRequest) -> list[str]:
    if request.input is not None:
        return [EMBEDDINGS]
    needed = []
    if any(m.images for m in request.messages):
        needed.append("vision")
    if request.tools:
        needed.append("tools")
    if request.response_schema:
        needed.append("json_schema")
    return needed


def expected_output_tokens(task_type: str, input_tokens: int, max_tokens: int | None) -> int:
    if task_type == "translation":
        guess = input_tokens
    elif task_type == "summarization":
        guess = max(100, min(input_tokens // 6, 800))
    else:
        guess = EXPECTED_OUTPUT.get(task_type, 300)
    return min(guess, max_tokens) if max_tokens else guess


def complexity(task_type: str, input_tokens: int, messages: list[ChatMessage], capabilities: Iterable[str]) -> float:
    last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
    window = last_user[:_CUE_WINDOW].lower()
    cues = sum(1 for cue in _HARD_CUES if cue in window)
    score = TASK_DIFFICULTY.get(task_type, 0.35)
    score += min(0.2, math.log10(1 + input_tokens) / 25)
    score += min(0.2, 0.1 * cues)
    score += 0.05 * sum(1 for c in capabilities if c in ("tools", "json_schema"))
    return round(min(1.0, score), 3)


def sensitive_kinds(texts: Iterable[str]) -> list[str]:
    found: set[str] = set()
    for text in texts:
        found |= find_sensitive(text)
    return sorted(found)


def compute_signals(request: InferenceRequest, fleet: Mapping[str, ModelDeployment] | None = None) -> Signals:
    if request.input is not None:
        return embedding_signals(request.input, fleet)
    model = load_default()
    task_type, confidence = model.predict_messages(request.messages)
    input_tokens, token_method = count_message_tokens(request.messages, fleet_tokenizer(fleet))
    language, language_confidence = detect_messages_language(request.messages)
    capabilities = required_capabilities(request)
    return Signals(
        task_type=task_type,
        task_confidence=round(confidence, 3),
        task_method=model.method,
        input_tokens=input_tokens,
        token_method=token_method,
        turns=sum(1 for m in request.messages if m.role == "user"),
        language=language,
        language_confidence=round(language_confidence, 3),
        expected_output_tokens=expected_output_tokens(task_type, input_tokens, request.max_tokens),
        complexity=complexity(task_type, input_tokens, request.messages, capabilities),
        capabilities=capabilities,
        sensitive_kinds=sensitive_kinds(m.content for m in request.messages),
    )


def embedding_signals(texts: list[str], fleet: Mapping[str, ModelDeployment] | None = None) -> Signals:
    """The signals of an embedding request, read over its texts (see the module doc)."""
    input_tokens, token_method = count_texts_tokens(texts, fleet_tokenizer(fleet))
    language, language_confidence = detect_language("\n".join(texts))
    return Signals(
        task_type=EMBEDDING_TASK,
        task_confidence=1.0,
        task_method=EMBEDDING_METHOD,
        input_tokens=input_tokens,
        token_method=token_method,
        turns=0,
        language=language,
        language_confidence=round(language_confidence, 3),
        expected_output_tokens=0,
        complexity=0.0,
        capabilities=[EMBEDDINGS],
        sensitive_kinds=sensitive_kinds(texts),
    )


def warm_up() -> None:
    """Load the models before the first request pays for it."""
    from . import language, tokens

    load_default()
    tokens.warm_up()
    language.warm_up()
