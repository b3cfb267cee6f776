"""The answer's confidence: the geometric mean of its token probabilities, from OpenAI's
``logprobs`` and Gemini's ``avgLogprobs``; ``None`` where the provider gives nothing."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from turnout.consumers.confidence import from_gemini_candidate, from_openai_choice, geometric_mean_probability


def openai_choice(logprobs: list[float] | None) -> dict:
    content = None if logprobs is None else [{"token": "t", "logprob": lp, "bytes": [116], "top_logprobs": []} for lp in logprobs]
    return {"index": 0, "message": {"role": "assistant", "content": "t" * len(logprobs or [])}, "logprobs": None if content is None else {"content": content, "refusal": None}}


def test_the_geometric_mean_of_the_token_probabilities():
    assert geometric_mean_probability([math.log(0.5), math.log(0.5)]) == pytest.approx(0.5)
    assert geometric_mean_probability([math.log(0.9), math.log(0.1)]) == pytest.approx(0.3)  # sqrt(0.09)
    assert geometric_mean_probability([]) is None


def test_an_openai_choice_with_logprobs_has_a_confidence():
    assert from_openai_choice(openai_choice([-0.1, -0.2, -0.3])) == pytest.approx(math.exp(-0.2))


@pytest.mark.parametrize(
    "choice",
    [openai_choice(None), openai_choice([]), {"index": 0, "message": {}}, {"logprobs": {"content": None}}, {"logprobs": "junk"}],
    ids=["logprobs-null", "no-tokens", "no-field", "content-null", "not-an-object"],
)
def test_an_openai_choice_without_token_logprobs_has_none(choice):
    assert from_openai_choice(choice) is None


def test_a_slightly_positive_logprob_from_a_server_is_clamped_to_certainty():
    assert from_openai_choice(openai_choice([1e-7, 2e-7])) == 1.0


def test_gemini_average_logprob():
    assert from_gemini_candidate({"avgLogprobs": math.log(0.25)}) == pytest.approx(0.25)
    assert from_gemini_candidate({"content": {}}) is None
    assert from_gemini_candidate({"avgLogprobs": True}) is None


@given(st.lists(st.floats(min_value=-50, max_value=0), min_size=1, max_size=50))
def test_confidence_lies_between_the_least_and_most_likely_token(logprobs):
    confidence = from_openai_choice(openai_choice(logprobs))
    assert math.exp(min(logprobs)) - 1e-12 <= confidence <= math.exp(max(logprobs)) + 1e-12
