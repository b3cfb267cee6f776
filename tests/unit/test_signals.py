"""streams/signals.py: what the router reads from a request's content, and only its content."""

from __future__ import annotations

import pytest
from factories import make_request, system, user

from turnout.schemas.models import ChatMessage
from turnout.streams.signals import (
    FALLBACK_TASK,
    PER_MESSAGE_OVERHEAD_TOKENS,
    TASK_METHOD,
    TOKEN_METHOD,
    classify_task,
    compute_signals,
    estimate_tokens,
)


@pytest.mark.parametrize(
    ("text", "task"),
    [
        ("Write a Python function that reverses a linked list", "code-generation"),
        ("```\nprint('x')\n```", "code-generation"),
        ("def parse(line): return line.split()", "code-generation"),
        ("Please review this diff and refactor it", "code-review"),
        ("What's wrong with my code?", "code-review"),
        ("Summarize the following article in three sentences.", "summarization"),
        ("tl;dr please", "summarization"),
        ("Translate 'good night' into Japanese", "translation"),
        ("Extract every date from this contract", "extraction"),
        ("Classify the sentiment of this tweet", "classification"),
        ("Solve the equation 3x + 5 = 20", "math-reasoning"),
        ("What is 17 * 23?", "math-reasoning"),
        ("Compose a haiku about autumn", "creative-writing"),
        ("Hello! how are you today?", "chit-chat"),
        ("thanks a lot", "chit-chat"),
    ],
)
def test_classifies_from_the_last_user_message(text: str, task: str) -> None:
    assert classify_task([user(text)])[0] == task


def test_unrecognised_content_falls_back_with_low_confidence() -> None:
    assert classify_task([user("What is the capital of France?")]) == (FALLBACK_TASK, 0.3)
    assert FALLBACK_TASK == "question-answering"


def test_confidence_is_the_winning_share_of_all_matches() -> None:
    # code-generation matches two patterns (write…function, python), summarization one
    task, confidence = classify_task([user("Write a Python function and summarize what it does")])
    assert task == "code-generation"
    assert confidence == pytest.approx(2 / 3, abs=1e-3)
    assert classify_task([user("Translate this into French")]) == ("translation", 1.0)


def test_only_the_last_user_turn_counts() -> None:
    messages = [
        user("Translate this into German: Guten Tag"),
        ChatMessage(role="assistant", content="Write a Python function"),
        user("What is the capital of France?"),
    ]
    assert classify_task(messages)[0] == FALLBACK_TASK


def test_assistant_and_tool_turns_are_ignored() -> None:
    messages = [
        user("What is the capital of France?"),
        ChatMessage(role="assistant", content="Summarize summarize tl;dr key points"),
        ChatMessage(role="tool", content="translate into french", name="t"),
    ]
    assert classify_task(messages)[0] == FALLBACK_TASK


def test_system_prompt_states_the_task() -> None:
    messages = [system("You summarize documents for busy executives."), user("Q3 revenue grew by a lot.")]
    assert classify_task(messages)[0] == "summarization"


def test_greeting_after_a_system_prompt_is_chit_chat() -> None:
    messages = [system("You are a helpful assistant."), user("hello, how are you?")]
    assert classify_task(messages)[0] == "chit-chat"


def test_classification_ignores_caller_fields() -> None:
    """Only the messages count: no metadata, pinned model or tenant name can steer the task type."""
    plain = make_request("What is the capital of France?")
    steered = make_request(
        "What is the capital of France?",
        tenant="code-generation",
        model="large",
        metadata={"task_type": "code-generation", "task": "summarization"},
        response_schema='{"description": "summarize"}',
        tools='[{"type": "function", "function": {"name": "write_python_code"}}]',
        reply_topic="translate.into.french",
    )
    assert compute_signals(steered) == compute_signals(plain)
    assert compute_signals(steered).task_type == FALLBACK_TASK


def test_estimate_tokens_is_chars_over_four_plus_overhead() -> None:
    assert estimate_tokens([user("x" * 400)]) == 100 + PER_MESSAGE_OVERHEAD_TOKENS
    assert estimate_tokens([system("a" * 40), user("b" * 80)]) == 30 + 2 * PER_MESSAGE_OVERHEAD_TOKENS
    assert estimate_tokens([user("")]) == PER_MESSAGE_OVERHEAD_TOKENS


def test_estimate_tokens_counts_every_role_and_grows_with_content() -> None:
    short = estimate_tokens([user("hello")])
    longer = estimate_tokens([user("hello " * 1000)])
    assert longer > short
    with_history = estimate_tokens([user("a" * 100), ChatMessage(role="assistant", content="b" * 100), user("c" * 100)])
    assert with_history == 75 + 3 * PER_MESSAGE_OVERHEAD_TOKENS


def test_compute_signals() -> None:
    request = make_request(
        None,
        messages=[
            system("You are a coding assistant."),
            user("hi"),
            ChatMessage(role="assistant", content="hello"),
            user("Write a Python function that adds two numbers" + " " * 11),
        ],
    )
    signals = compute_signals(request)
    assert signals.task_type == "code-generation"
    assert 0 < signals.task_confidence <= 1
    assert signals.task_method == TASK_METHOD == "keywords-v1"
    assert signals.token_method == TOKEN_METHOD == "estimate:chars/4"
    assert signals.input_tokens == estimate_tokens(request.messages)
    assert signals.turns == 2  # user turns only


def test_compute_signals_is_deterministic() -> None:
    request = make_request("Summarize this please")
    assert compute_signals(request) == compute_signals(request.model_copy())
