"""streams/signals.py: what the router reads from a request's content, and only its content."""

from __future__ import annotations

import json

import pytest
from factories import make_request, system, user

from turnout.schemas.fleet import ModelDeployment
from turnout.schemas.models import ChatMessage
from turnout.streams.classifier import load_default
from turnout.streams.signals import (
    complexity,
    compute_signals,
    expected_output_tokens,
    fleet_tokenizer,
    required_capabilities,
)


@pytest.mark.parametrize(
    ("text", "task"),
    [
        ("Write a Python function that reverses a linked list", "code-generation"),
        ("Please review this diff and point out the bugs:\n```diff\n- a = 1\n+ a = 2\n```", "code-review"),
        ("Summarize the following article in three sentences: the council met on Monday and voted.", "summarization"),
        ("Translate 'good night' into Japanese", "translation"),
        ("Hi there! How are you doing today?", "chit-chat"),
        ("Solve 3x + 7 = 22 and show each step", "math-reasoning"),
        ("Write a haiku about railway switches", "creative-writing"),
    ],
)
def test_task_type_comes_from_the_content(text: str, task: str) -> None:
    signals = compute_signals(make_request(text))
    assert signals.task_type == task
    assert 0 < signals.task_confidence <= 1
    assert signals.task_method == load_default().method  # the learned model, versioned


def test_caller_fields_do_not_steer_the_task() -> None:
    plain = compute_signals(make_request("Write a haiku about trains"))
    steered = compute_signals(make_request("Write a haiku about trains", metadata={"task_type": "code-generation"}, model="large"))
    assert steered.task_type == plain.task_type == "creative-writing"


def test_tokens_are_exact_for_short_prompts_and_estimated_beyond_the_prefix() -> None:
    short = compute_signals(make_request("What is the capital of France?"))
    assert short.token_method == "exact:o200k_base" and 5 < short.input_tokens < 20
    long = compute_signals(make_request("The quick brown fox jumps over the lazy dog. " * 200))
    assert long.token_method.startswith("estimate:") and 1_700 < long.input_tokens < 2_300


def test_fleet_tokenizer_is_shared_or_the_reference() -> None:
    def d(tok):
        return ModelDeployment(provider="simulated", served_model="m", tokenizer=tok)

    assert fleet_tokenizer({"a": d("cl100k_base"), "b": d("cl100k_base")}) == "cl100k_base"
    assert fleet_tokenizer({"a": d("cl100k_base"), "b": d(None)}) == "o200k_base"
    assert fleet_tokenizer(None) == "o200k_base"


def test_turns_language_and_sensitive_kinds() -> None:
    request = make_request(None, messages=[
        system("Tu es un assistant."),
        user("Bonjour, pouvez-vous m'aider ?"),
        ChatMessage(role="assistant", content="Oui."),
        user("Écrivez à marie.dupont@example.fr au sujet de la facture, s'il vous plaît."),
    ])
    signals = compute_signals(request)
    assert signals.turns == 2
    assert signals.language == "fr" and signals.language_confidence > 0.5
    assert signals.sensitive_kinds == ["email"]


def test_sensitive_data_anywhere_in_the_conversation_is_found_but_never_recorded() -> None:
    key = "sk-proj-4f9aQ2mZ7LxR8tB1nV6cK3wE0yH5uJ2s"
    request = make_request(None, messages=[system(f"Use api_key={key}"), user("Card 4111 1111 1111 1111 please")])
    signals = compute_signals(request)
    assert signals.sensitive_kinds == ["payment_card", "secret"]
    assert key not in json.dumps(signals.model_dump())


def test_required_capabilities() -> None:
    request = make_request(
        None,
        messages=[ChatMessage(role="user", content="What is in this picture?", images=["https://example.com/a.png"])],
        tools=json.dumps([{"type": "function", "function": {"name": "f"}}]),
        response_schema=json.dumps({"type": "object"}),
    )
    assert required_capabilities(request) == ["vision", "tools", "json_schema"]
    assert required_capabilities(make_request("hi")) == []
    assert compute_signals(request).capabilities == ["vision", "tools", "json_schema"]


def test_expected_output_follows_the_task_and_the_cap() -> None:
    assert expected_output_tokens("classification", 500, None) == 20
    assert expected_output_tokens("translation", 700, None) == 700
    assert expected_output_tokens("summarization", 6_000, None) == 800
    assert expected_output_tokens("code-generation", 10, 128) == 128


def test_complexity_grows_with_difficulty_cues_and_length() -> None:
    easy = complexity("chit-chat", 5, [user("hi")], [])
    hard = complexity("code-generation", 3_000, [user("Design a distributed cache, step by step, with trade-offs")], ["tools"])
    assert 0 <= easy < 0.2 < 0.8 < hard <= 1
