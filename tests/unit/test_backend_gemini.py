"""GeminiBackend over httpx.MockTransport: what it sends, how it reads Gemini's answers and
errors. Response fixtures are validated with google-genai's ``GenerateContentResponse``
(in ``backend_fixtures``) and every part of a request body with the SDK's ``Content``,
``GenerationConfig`` and ``Tool`` (all of which forbid unknown fields), so neither side can
drift from the real API; test_backend_factory checks that the SDK types do reject a drifted body."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest
from google.genai import types as genai
from pydantic import SecretStr

from backend_fixtures import SECRET, Script, complete_once, fail_once, gemini_request_checked, gemini_response, google_error, make_request, reply
from turnout.consumers.gemini_backend import GeminiBackend
from turnout.schemas.models import ChatMessage

URL = "https://generativelanguage.googleapis.com/v1beta"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": WEATHER}}]
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


def gemini(script: Script, *, api_key: str | None = SECRET, served_model: str = "gemini-2.5-flash") -> GeminiBackend:
    return GeminiBackend(URL, served_model, api_key=SecretStr(api_key) if api_key else None, transport=script.transport())


async def sent(request=None, **backend_kwargs: Any) -> tuple[httpx.Request, dict[str, Any]]:
    script = Script(reply(gemini_response()))
    await complete_once(gemini(script, **backend_kwargs), request)
    return script.requests[0], gemini_request_checked(script.bodies[0])


async def answer(body: dict[str, Any], request=None):
    return await complete_once(gemini(Script(reply(body))), request)


# -- the request ---------------------------------------------------------------------------
async def test_posts_generate_content_with_the_key_in_a_header_never_the_url():
    request, _ = await sent()
    assert (request.method, str(request.url)) == ("POST", f"{URL}/models/gemini-2.5-flash:generateContent")
    assert request.headers["x-goog-api-key"] == SECRET
    assert request.headers["content-type"] == "application/json"
    assert "key=" not in str(request.url) and SECRET not in str(request.url)


async def test_a_models_prefix_in_the_served_name_is_not_doubled():
    request, _ = await sent(served_model="models/gemini-2.5-pro")
    assert request.url.path == "/v1beta/models/gemini-2.5-pro:generateContent"


async def test_system_instruction_model_role_merging_and_generation_config():
    request = make_request(
        messages=[
            ChatMessage(role="system", content="be brief"),
            ChatMessage(role="user", content="first"),
            ChatMessage(role="user", content="second"),
            ChatMessage(role="assistant", content="ok"),
            ChatMessage(role="system", content="answer in French"),
            ChatMessage(role="user", content="and so?"),
        ],
        max_tokens=64,
        stop=["END"],
        temperature=0.0,
    )
    _, body = await sent(request)
    assert body == {
        "systemInstruction": {"parts": [{"text": "be brief\n\nanswer in French"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "first"}, {"text": "second"}]},
            {"role": "model", "parts": [{"text": "ok"}]},
            {"role": "user", "parts": [{"text": "and so?"}]},
        ],
        "generationConfig": {"maxOutputTokens": 64, "stopSequences": ["END"], "temperature": 0.0},
    }


async def test_unset_options_stay_out():
    _, body = await sent(make_request(messages=[ChatMessage(role="user", content="hi")]))
    assert body == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


async def test_images_become_inline_data_and_file_data_before_the_text():
    images = [f"data:image/png;base64,{PNG}", "https://example.com/cat.jpg?size=large", "https://example.com/render"]
    _, body = await sent(make_request(messages=[ChatMessage(role="user", content="what is this?", images=images)]))
    assert body["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {"fileData": {"fileUri": "https://example.com/cat.jpg?size=large", "mimeType": "image/jpeg"}},
        {"fileData": {"fileUri": "https://example.com/render"}},  # no extension: Gemini works the type out
        {"text": "what is this?"},
    ]


async def test_a_non_base64_data_url_is_refused_before_any_call():
    script = Script(reply(gemini_response()))
    request = make_request(messages=[ChatMessage(role="user", content="?", images=["data:image/svg+xml,<svg/>"])])
    error = await fail_once(gemini(script), request)
    assert (error.code, error.retryable, script.calls) == ("invalid_request", False, 0)


async def test_tools_become_function_declarations_with_their_json_schema():
    _, body = await sent(make_request(tools=json.dumps(TOOLS)))
    assert body["tools"] == [
        {"functionDeclarations": [{"name": "get_weather", "description": "Weather in a city", "parametersJsonSchema": WEATHER}]}
    ]


async def test_response_schema_asks_for_json_with_that_schema():
    _, body = await sent(make_request(response_schema=json.dumps(SCHEMA), max_tokens=10))
    assert body["generationConfig"] == {"maxOutputTokens": 10, "responseMimeType": "application/json", "responseJsonSchema": SCHEMA}


async def test_logprobs_are_asked_for_only_when_wanted_and_read_as_confidence():
    script = Script(reply(gemini_response(avg_logprobs=math.log(0.4))))
    backend = gemini(script)
    try:
        judged = await backend.complete(make_request(max_tokens=10), logprobs=True)
        plain = await backend.complete(make_request(max_tokens=10))
    finally:
        await backend.aclose()
    asked, not_asked = (gemini_request_checked(b)["generationConfig"] for b in script.bodies)
    assert asked == {"maxOutputTokens": 10, "responseLogprobs": True} and not_asked == {"maxOutputTokens": 10}
    assert judged.confidence == pytest.approx(0.4)
    assert plain.confidence == pytest.approx(0.4)  # read whenever the provider sends it


# -- reading the answer ---------------------------------------------------------------------
async def test_text_parts_are_joined_thoughts_left_out_and_thinking_billed_as_output():
    parts = [{"text": "planning…", "thought": True}, {"text": "Bonjour, "}, {"text": "le monde"}]
    completion = await answer(gemini_response(parts, prompt_tokens=20, candidates_tokens=5, thoughts_tokens=100))
    assert completion.content == "Bonjour, le monde"
    assert completion.finish_reason == "stop"
    assert (completion.input_tokens, completion.output_tokens) == (20, 105)


@pytest.mark.parametrize(
    "reason, finish_reason",
    [
        ("STOP", "stop"),
        (None, "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "malformed_function_call"),
        ("OTHER", "other"),
    ],
)
async def test_finish_reason_maps_to_openai_names(reason, finish_reason):
    completion = await answer(gemini_response(finish_reason=reason))
    assert completion.finish_reason == finish_reason


async def test_a_function_call_answer_says_tool_calls():
    parts = [{"text": "Checking."}, {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]
    completion = await answer(gemini_response(parts), make_request(tools=json.dumps(TOOLS)))
    assert (completion.content, completion.finish_reason) == ("Checking.", "tool_calls")


async def test_a_schema_answer_is_the_json_text():
    completion = await answer(gemini_response([{"text": '{"answer": "Paris"}'}]), make_request(response_schema=json.dumps(SCHEMA)))
    assert json.loads(completion.content) == {"answer": "Paris"}


async def test_a_blocked_prompt_is_an_empty_content_filter_answer():
    body = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}, "modelVersion": "gemini-2.5-flash"}
    genai.GenerateContentResponse.model_validate(body)
    completion = await answer(body)
    assert (completion.content, completion.finish_reason, completion.input_tokens, completion.output_tokens) == ("", "content_filter", 7, 0)


async def test_missing_candidate_token_count_is_zero():
    completion = await answer(gemini_response(parts=[], finish_reason="MAX_TOKENS", candidates_tokens=None))
    assert (completion.content, completion.output_tokens) == ("", 0)


# -- Google's errors ------------------------------------------------------------------------
async def test_429_reads_the_wait_from_retry_info_in_the_body():
    details = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "generate_content_free_tier_requests"}]},
        {"@type": RETRY_INFO, "retryDelay": "17s"},
    ]
    body = google_error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota", details)
    error = await fail_once(gemini(Script(reply(body, 429))))
    assert (error.code, error.retryable, error.status, error.retry_after_s) == ("rate_limited", True, 429, 17.0)
    assert "RESOURCE_EXHAUSTED: You exceeded your current quota" in error.message


async def test_429_prefers_a_retry_after_header_and_copes_without_any_hint():
    body = google_error(429, "RESOURCE_EXHAUSTED", "quota", [{"@type": RETRY_INFO, "retryDelay": "17s"}])
    assert (await fail_once(gemini(Script(reply(body, 429, {"retry-after": "2"}))))).retry_after_s == 2.0
    bare = await fail_once(gemini(Script(reply(google_error(429, "RESOURCE_EXHAUSTED", "quota"), 429))))
    assert bare.code == "rate_limited" and bare.retry_after_s is None


@pytest.mark.parametrize("code, status", [(500, "INTERNAL"), (503, "UNAVAILABLE"), (504, "DEADLINE_EXCEEDED")])
async def test_5xx_are_retryable(code, status):
    error = await fail_once(gemini(Script(reply(google_error(code, status, "The model is overloaded. Please try again later."), code))))
    assert (error.code, error.retryable, error.status) == ("backend_error", True, code)
    assert f"{status}: The model is overloaded" in error.message


@pytest.mark.parametrize(
    "code, status, message",
    [(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."), (403, "PERMISSION_DENIED", "denied"), (404, "NOT_FOUND", "models/x is not found")],
)
async def test_4xx_are_rejected_for_good(code, status, message):
    error = await fail_once(gemini(Script(reply(google_error(code, status, message), code))))
    assert (error.code, error.retryable, error.status) == ("backend_rejected", False, code)
    assert f"{status}: {message}" in error.message


async def test_an_error_wrapped_in_a_list_is_still_read():
    error = await fail_once(gemini(Script(reply([google_error(400, "FAILED_PRECONDITION", "User location is not supported")], 400))))
    assert "FAILED_PRECONDITION: User location is not supported" in error.message


async def test_an_echoed_key_is_scrubbed_from_the_error():
    echo = lambda request: reply(google_error(400, "INVALID_ARGUMENT", f"API key {request.headers['x-goog-api-key']} not valid"), 400)  # noqa: E731
    error = await fail_once(gemini(Script(echo)))
    assert SECRET not in str(error) and "API key *** not valid" in error.message
