"""How sure a model was of its answer, read from the token log-probabilities it returned.

A cascade sends a request to a cheap model first and escalates when the answer is not
good enough. Two of the triggers are facts the worker sees (a cut-off answer, one that
fails its schema); the third, ``low_confidence``, needs a measure of doubt. The one
every serious provider exposes is the log-probability of each generated token, and the
usual single number drawn from it is the geometric mean of the token probabilities,
``exp(mean(logprob))``: 1 for an answer the model was certain of token by token, lower
as more tokens were close calls, and independent of the answer's length (a sum would
punish long answers). It is the length-normalised sequence likelihood cascades such as
FrugalGPT start from, and cheap: the provider computes it while decoding.

Who provides it: OpenAI's chat completions and every server compatible with them
(vLLM, llama.cpp's ``llama-server``, TGI, Ollama) return ``choices[].logprobs.content``
when the call sets ``logprobs: true``; Gemini returns ``candidates[].avgLogprobs`` when
``generationConfig.responseLogprobs`` is true. Anthropic's Messages API exposes no
log-probabilities, so its answers have no confidence (``None``) and never escalate on
this trigger; a plan that relies on it should not put an Anthropic model first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def geometric_mean_probability(logprobs: Iterable[float]) -> float | None:
    """``exp(mean(logprobs))``, or ``None`` when there are no tokens to judge by."""
    total = count = 0
    for logprob in logprobs:
        total += logprob
        count += 1
    return math.exp(total / count) if count else None


def from_openai_choice(choice: dict[str, Any]) -> float | None:
    """The confidence of an OpenAI-format choice: its ``logprobs.content`` tokens (or, for
    an answer given as a tool call, none: the wire format has no logprobs for tool
    arguments, so such an answer is not judged)."""
    logprobs = choice.get("logprobs")
    tokens = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(tokens, list):
        return None
    values = [t["logprob"] for t in tokens if isinstance(t, dict) and isinstance(t.get("logprob"), (int, float))]
    return _clamped(geometric_mean_probability(values))


def from_gemini_candidate(candidate: dict[str, Any]) -> float | None:
    """The confidence of a Gemini candidate: ``exp(avgLogprobs)``."""
    average = candidate.get("avgLogprobs")
    return _clamped(math.exp(average)) if isinstance(average, (int, float)) and not isinstance(average, bool) else None


def _clamped(probability: float | None) -> float | None:
    """Within [0, 1]: some servers round a certain token's logprob to a tiny positive number."""
    return None if probability is None else min(1.0, max(0.0, probability))
