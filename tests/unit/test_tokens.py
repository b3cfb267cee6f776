"""streams/tokens.py: exact counts where the tokenizer is available offline, a calibrated
estimate otherwise, and the method that produced each number."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnout.schemas.models import ChatMessage
from turnout.streams import tokens
from turnout.streams.tokens import (
    CALIBRATION_FILE,
    ESTIMATE_VERSION,
    EXACT_MAX_BYTES,
    TOKENS_PER_MESSAGE,
    TOKENS_PER_NAME,
    TOKENS_REPLY_PRIMING,
    WEIGHTS_FILE,
    count_message_tokens,
    count_tokens,
    estimate_tokens,
    evaluate,
    exact_available,
    refit,
)

RECORDS = [json.loads(line) for line in CALIBRATION_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
ENCODINGS = ("o200k_base", "cl100k_base")

needs_exact = pytest.mark.skipif(
    not exact_available("o200k_base"), reason="bpe-openai (the offline exact tokenizer) is not installed"
)


def long_text(classes: tuple[str, ...], chars: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    pool = [r["text"] for r in RECORDS if r["class"] in classes]
    parts: list[str] = []
    while sum(len(p) + 2 for p in parts) < chars:
        parts.append(rng.choice(pool))
    return "\n\n".join(parts)


# --------------------------------------------------------------------------- calibration set


def test_calibration_set_is_varied_and_split() -> None:
    classes = {r["class"] for r in RECORDS}
    assert classes == {"latin_prose", "code", "data", "cjk", "other", "mixed"}
    languages = {r["lang"] for r in RECORDS}
    assert {"en", "fr", "de", "zh", "ja", "ru", "python", "javascript", "rust", "json"} <= languages
    assert len({r["id"] for r in RECORDS}) == len(RECORDS)
    for cls in classes:  # every class has texts to fit on and texts held out
        splits = {r["split"] for r in RECORDS if r["class"] == cls}
        assert splits == {"fit", "holdout"}, cls


# --------------------------------------------------------------------------- exact


@needs_exact
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_exact_counts_match_the_reference_tokenizer(encoding: str) -> None:
    # the stored counts were produced by tiktoken itself (0.14, same vocabulary files)
    for record in RECORDS:
        text = record["text"]
        assert len(text.encode()) <= EXACT_MAX_BYTES, record["id"]
        assert count_tokens(text, encoding) == (record["tokens"][encoding], f"exact:{encoding}"), record["id"]


@needs_exact
def test_known_counts() -> None:
    assert count_tokens("hello world", "o200k_base") == (2, "exact:o200k_base")
    assert count_tokens("tiktoken is great!", "cl100k_base") == (6, "exact:cl100k_base")
    assert count_tokens("", "o200k_base") == (0, "exact:o200k_base")
    # special-token text counts as ordinary text, as it does for a prompt
    assert count_tokens("<|endoftext|>", "o200k_base")[0] > 1


@needs_exact
def test_aliases_count_exactly() -> None:
    assert count_tokens("hello world", "o200k_harmony") == (2, "exact:o200k_base")
    assert count_tokens("hello world", "o200k") == (2, "exact:o200k_base")


@needs_exact
def test_lone_surrogates_do_not_break_exact_counting() -> None:
    n, method = count_tokens("bad \ud800 surrogate", "o200k_base")
    assert n > 0 and method == "exact:o200k_base"


@needs_exact
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("classes", [("latin_prose",), ("code",), ("cjk",), ("other",), ("data", "mixed")])
def test_long_texts_count_a_prefix_exactly_and_estimate_the_rest(encoding: str, classes: tuple[str, ...]) -> None:
    text = long_text(classes, 8_000)
    n, method = count_tokens(text, encoding)
    assert method == f"estimate:{encoding}-prefix+{ESTIMATE_VERSION}"
    exact = tokens._exact_counter(encoding)(text)
    assert abs(n - exact) / exact < 0.10, (n, exact)


@needs_exact
def test_the_exact_budget_is_in_utf8_bytes() -> None:
    ascii_text = "a " * (EXACT_MAX_BYTES // 2)
    assert count_tokens(ascii_text, "o200k_base")[1] == "exact:o200k_base"
    chinese = "天" * (EXACT_MAX_BYTES // 3 + 1)  # 3 bytes each: just over the budget
    assert count_tokens(chinese, "o200k_base")[1].startswith("estimate:")


# --------------------------------------------------------------------------- estimate


@pytest.mark.parametrize("tokenizer", [None, "claude", "llama3", "gemini", ""])
def test_unknown_tokenizers_are_estimated(tokenizer: str | None) -> None:
    n, method = count_tokens("The quick brown fox jumps over the lazy dog.", tokenizer)
    assert method == f"estimate:{ESTIMATE_VERSION}"
    assert 8 <= n <= 13


def test_estimates_work_without_the_exact_tokenizer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_exact_counter", lambda encoding: None)
    n, method = count_tokens("The quick brown fox jumps over the lazy dog.", "o200k_base")
    assert method == f"estimate:{ESTIMATE_VERSION}"
    assert 8 <= n <= 13
    assert count_message_tokens([{"role": "user", "content": "hi"}], "o200k_base")[1] == f"estimate:{ESTIMATE_VERSION}"


def test_estimate_of_nothing_is_zero_and_of_something_at_least_one() -> None:
    assert estimate_tokens("") == 0
    assert count_tokens("", None) == (0, f"estimate:{ESTIMATE_VERSION}")
    assert estimate_tokens(" ") >= 1
    assert estimate_tokens("a") >= 1


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_held_out_error_stays_within_the_reported_bounds(encoding: str) -> None:
    report = evaluate(encoding=encoding, split="holdout")
    assert report["n"] >= 20
    assert report["mape"] < {"o200k_base": 9.0, "cl100k_base": 12.0}[encoding], report
    assert report["max_ape"] < 40.0, report


@needs_exact
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_estimates_of_long_texts_are_within_a_few_percent(encoding: str) -> None:
    # per text the estimate is off by ~7-10 %; over a long text the errors average out
    count = tokens._exact_counter(encoding)
    for seed, classes in enumerate([("latin_prose",), ("code",), ("cjk",), ("other",), ("data", "mixed")]):
        text = long_text(classes, 20_000, seed)
        exact = count(text)
        assert abs(estimate_tokens(text, encoding) - exact) / exact < 0.15, (classes, encoding)


def test_texts_longer_than_the_feature_window_are_sampled() -> None:
    text = long_text(("latin_prose",), 60_000, 3)
    assert len(text) > tokens.FEATURE_MAX_CHARS
    ratio = estimate_tokens(text) / len(text)
    assert 0.15 < ratio < 0.35  # prose: about 4-5 characters a token


def test_the_estimator_distinguishes_scripts() -> None:
    english = "The committee reviewed the proposal and asked for revised estimates. " * 10
    chinese = "委员会审查了该提案并要求提交修订后的估算。" * 10
    # CJK costs far more tokens per character than English
    assert estimate_tokens(chinese) / len(chinese) > 2 * estimate_tokens(english) / len(english)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_any_text_gets_a_count_and_a_method(text: str) -> None:
    for tokenizer in (None, "o200k_base"):
        n, method = count_tokens(text, tokenizer)
        assert isinstance(n, int) and n >= 0
        assert method.startswith(("exact:", "estimate:"))
        assert (n == 0) == (text == "") or method.startswith("estimate:") or n > 0


@needs_exact
@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(RECORDS), min_size=1, max_size=6), st.sampled_from(["\n\n", " ", "\n"]))
def test_estimates_of_concatenated_texts_track_the_exact_count(parts: list[dict], joiner: str) -> None:
    text = joiner.join(p["text"] for p in parts)
    exact = tokens._exact_counter("o200k_base")(text)
    assert abs(estimate_tokens(text, "o200k_base") - exact) / exact < 0.40


# --------------------------------------------------------------------------- refit


def test_the_shipped_weights_are_the_fit_of_the_calibration_set() -> None:
    shipped = json.loads(WEIGHTS_FILE.read_text(encoding="utf-8"))
    fitted = refit()
    assert fitted["version"] == shipped["version"] == ESTIMATE_VERSION
    assert fitted["features"] == shipped["features"] == list(tokens.FEATURES)
    for encoding in ENCODINGS:
        assert fitted["weights"][encoding] == pytest.approx(shipped["weights"][encoding], abs=2e-4)
        assert all(w >= 0 for w in fitted["weights"][encoding])


def test_refit_writes_a_weights_file_the_estimator_reads(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    calibration = tmp_path / "calibration.jsonl"
    english = [r for r in RECORDS if r["lang"] == "en"]
    calibration.write_text("".join(json.dumps(r) + "\n" for r in english), encoding="utf-8")
    target = tmp_path / "weights.json"
    doc = refit(calibration, ["o200k_base"], split=None, write_to=target)
    assert json.loads(target.read_text(encoding="utf-8")) == doc
    assert doc["fitted_on"].startswith("calibration.jsonl split=all")
    monkeypatch.setattr(tokens, "WEIGHTS_FILE", target)
    tokens._weights.cache_clear()
    try:
        assert estimate_tokens(english[0]["text"], "o200k_base") > 0
    finally:
        tokens._weights.cache_clear()


def test_a_weights_file_of_another_version_is_refused(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "weights.json"
    target.write_text(json.dumps({"version": "calibrated-v0", "features": [], "weights": {}}), encoding="utf-8")
    monkeypatch.setattr(tokens, "WEIGHTS_FILE", target)
    tokens._weights.cache_clear()
    try:
        with pytest.raises(ValueError, match="calibrated-v1"):
            estimate_tokens("hello")
    finally:
        tokens._weights.cache_clear()


# --------------------------------------------------------------------------- messages


@needs_exact
def test_message_tokens_follow_openais_accounting() -> None:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?", "name": "alice"},
    ]
    count = tokens._exact_counter("o200k_base")
    expected = (
        TOKENS_REPLY_PRIMING
        + 2 * TOKENS_PER_MESSAGE
        + TOKENS_PER_NAME
        + sum(count(m["role"]) + count(m["content"]) for m in messages)
        + count("alice")
    )
    assert count_message_tokens(messages, "o200k_base") == (expected, "exact:o200k_base")


@needs_exact
def test_chat_messages_and_dicts_count_alike() -> None:
    models = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Hello there!")]
    dicts = [{"role": m.role, "content": m.content} for m in models]
    assert count_message_tokens(models, "o200k_base") == count_message_tokens(dicts, "o200k_base")


@needs_exact
def test_content_parts_count_their_text() -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "Describe"}, {"type": "image_url", "image_url": {"url": "x"}}]}]
    plain = [{"role": "user", "content": "Describe"}]
    assert count_message_tokens(parts, "o200k_base") == count_message_tokens(plain, "o200k_base")
    assert count_message_tokens([{"role": "assistant", "content": None}], "o200k_base")[0] == (
        TOKENS_REPLY_PRIMING + TOKENS_PER_MESSAGE + 1
    )


@needs_exact
def test_a_long_conversation_shares_one_exact_budget() -> None:
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": r["text"]} for i, r in enumerate(RECORDS[:30])]
    n, method = count_message_tokens(turns, "o200k_base")
    assert method == f"estimate:o200k_base-prefix+{ESTIMATE_VERSION}"
    count = tokens._exact_counter("o200k_base")
    exact = TOKENS_REPLY_PRIMING + sum(TOKENS_PER_MESSAGE + count(t["role"]) + count(t["content"]) for t in turns)
    assert abs(n - exact) / exact < 0.10


def test_message_tokens_of_an_unknown_tokenizer_are_estimated() -> None:
    n, method = count_message_tokens([{"role": "user", "content": "What is the capital of France?"}], None)
    assert method == f"estimate:{ESTIMATE_VERSION}"
    assert TOKENS_REPLY_PRIMING + TOKENS_PER_MESSAGE + 6 <= n <= TOKENS_REPLY_PRIMING + TOKENS_PER_MESSAGE + 12
