"""streams/language.py: the language of a prompt, offline, from a bounded sample."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnout.schemas.models import ChatMessage
from turnout.streams import language
from turnout.streams.language import (
    MIN_CONFIDENCE,
    SAMPLE_BYTES,
    UNDETERMINED,
    detect_language,
    detect_messages_language,
)
from turnout.streams.tokens import CALIBRATION_FILE

RECORDS = [json.loads(line) for line in CALIBRATION_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
PROSE = [r for r in RECORDS if r["class"] in ("latin_prose", "cjk", "other")]


@pytest.mark.parametrize("record", PROSE, ids=[r["id"] for r in PROSE])
def test_every_calibration_prose_text_is_recognised(record: dict) -> None:
    code, confidence = detect_language(record["text"])
    assert code == record["lang"]
    assert confidence >= 0.5


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("What is the capital of France?", "en"),
        ("Write a Python function that reverses a linked list", "en"),
        ("Wie spät ist es?", "de"),
        ("¿Dónde está la biblioteca?", "es"),
        ("Pouvez-vous m'aider à rédiger une lettre ?", "fr"),
        ("Dzień dobry, jak się masz?", "pl"),
        ("Привет, как дела? Что нового?", "ru"),
        ("Привіт, як справи?", "uk"),
        ("こんにちは、元気ですか？", "ja"),
        ("你好，今天天气怎么样？", "zh"),
        ("안녕하세요, 잘 지내세요?", "ko"),
        ("สวัสดีครับ", "th"),
        ("שלום, מה שלומך?", "he"),
        ("Γειά σου, τι κάνεις;", "el"),
        ("नमस्ते, आप कैसे हैं?", "hi"),
        ("مرحبا، كيف حالك اليوم؟", "ar"),
    ],
)
def test_short_prompts(text: str, code: str) -> None:
    assert detect_language(text)[0] == code


@pytest.mark.parametrize("text", ["", "   \n\t", "1234 5678", "?!", "```\nx = 1\n```", "https://example.com/a/b", "`ls -la`"])
def test_nothing_to_go_on_is_undetermined(text: str) -> None:
    assert detect_language(text) == (UNDETERMINED, 0.0)


def test_too_little_text_is_undetermined_rather_than_a_wild_guess() -> None:
    for text in ["ok", "hello", "hi there"]:
        code, confidence = detect_language(text)
        assert code == UNDETERMINED or confidence >= MIN_CONFIDENCE


def test_codes_are_iso_639_1_or_und() -> None:
    labels = language.LABELS
    assert all(len(code) == 2 and code.isalpha() and code.islower() for code in labels)
    assert {"en", "fr", "de", "zh", "ja", "ru", "ar", "hi"} <= labels
    assert "la" not in labels and "sa" not in labels and "eo" not in labels  # classical and constructed: left out


def test_a_left_out_label_gives_way_to_the_next_living_language() -> None:
    assert detect_language("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor")[0] != "la"


def test_lone_surrogates_do_not_break_the_detector() -> None:
    assert detect_language("Guten Morgen, wie geht es dir heute? \ud800")[0] == "de"


def test_regional_varieties_fold_into_their_macrolanguage() -> None:
    assert language._FOLD["yue"] == "zh" and language._FOLD["arz"] == "ar"


def test_code_blocks_and_urls_are_not_the_users_language() -> None:
    german_question = "Warum ist dieser Code so langsam, und wie kann ich ihn schneller machen?"
    code = "```python\n" + "for item in items:\n    result.append(transform(item))\n" * 200 + "```\n"
    assert detect_language(code + german_question)[0] == "de"
    assert detect_language(f"Schau dir https://example.com/the/english/path?query=value an. {german_question}")[0] == "de"
    assert detect_language(f"Die Funktion `get_user_by_email()` wirft einen Fehler. {german_question}")[0] == "de"


def test_only_a_bounded_sample_is_read() -> None:
    english = "The committee reviewed the proposal and asked for revised estimates. " * 10
    french = "Le comité a examiné la proposition et demandé des estimations révisées. " * 1000
    assert len(language._sample(english + french).encode()) <= SAMPLE_BYTES
    assert detect_language(english + french)[0] == "en"  # the start decides
    assert detect_language(french + english)[0] == "fr"


def test_the_sample_cuts_multibyte_text_on_a_character_boundary() -> None:
    sample = language._sample("漢字" * 1000)
    assert len(sample.encode()) <= SAMPLE_BYTES
    assert set(sample) == {"漢", "字"}


def test_an_unclosed_fence_hides_the_rest() -> None:
    assert language._sample("Bitte prüfen:\n```\ncode code code") == "Bitte prüfen:"


# --------------------------------------------------------------------------- messages


def test_the_last_user_turn_decides() -> None:
    messages = [
        ChatMessage(role="system", content="You are a helpful assistant. Answer concisely."),
        ChatMessage(role="user", content="Translate this into French: good morning"),
        ChatMessage(role="assistant", content="Bonjour"),
        ChatMessage(role="user", content="Und jetzt bitte auf Deutsch, mit einer kurzen Erklärung."),
    ]
    assert detect_messages_language(messages)[0] == "de"


def test_the_system_prompt_when_the_user_said_too_little() -> None:
    messages = [
        {"role": "system", "content": "Tu es un assistant qui répond toujours en français, poliment et brièvement."},
        {"role": "user", "content": "ok"},
    ]
    assert detect_messages_language(messages)[0] == "fr"
    assert detect_messages_language([{"role": "user", "content": "1234"}]) == (UNDETERMINED, 0.0)
    assert detect_messages_language([]) == (UNDETERMINED, 0.0)


def test_non_text_content_is_skipped() -> None:
    messages = [{"role": "user", "content": "Quel temps fait-il à Paris aujourd'hui ?"}, {"role": "user", "content": None}]
    assert detect_messages_language(messages)[0] == "fr"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=2000))
def test_any_text_gets_a_code_and_a_confidence(text: str) -> None:
    code, confidence = detect_language(text)
    assert 0.0 <= confidence <= 1.0
    assert code == UNDETERMINED or (len(code) == 2 and code.islower())
    assert (code == UNDETERMINED) == (confidence == 0.0)
