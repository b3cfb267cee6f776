"""Result lines: OpenAI Batch output for OpenAI input, the response record for
Turnout's, an error at the place of every line without an answer; the manifest keeps
what results need."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from turnout.gateway.errors import from_turnout
from turnout.producers.batch_job import load_manifest, write_manifest
from turnout.producers.batch_lines import BatchLine, JobContext, parse_line
from turnout.producers.batch_output import result_line
from turnout.producers.openai_format import completion_body
from turnout.schemas.models import ErrorInfo, InferenceResponse, RoutingMeta, Usage
from turnout.schemas.topics import Topics

JOB = JobContext("job-7", "acme", Topics("t"))
CHAT = '{"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "auto", "messages": [{"role": "user", "content": "Hi"}]}}'


def line(text: str, number: int = 1) -> BatchLine:
    return parse_line(text, number, JOB)


def ok(request_id: str, **fields) -> InferenceResponse:
    return InferenceResponse(
        id=request_id, tenant="acme", status="ok", model="small", provider="simulated", content="Hello!", finish_reason="stop",
        usage=Usage(input_tokens=9, output_tokens=3), cost_usd=0.25, created_at=datetime(2026, 1, 2, tzinfo=timezone.utc),
        routing=RoutingMeta(route="default", selected_model="small", fallback_path=["small"]), **fields,
    )  # fmt: skip


def failed(request_id: str, code: str) -> InferenceResponse:
    return InferenceResponse(id=request_id, tenant="acme", status="error", error=ErrorInfo(code=code, message=f"{code} happened"))


def test_an_answered_openai_line_is_a_chat_completion() -> None:
    source = line(CHAT)
    out = result_line(source, ok(source.request_id))
    assert out["id"] == f"batch_req_{source.request_id}" and out["custom_id"] == "request-1" and out["error"] is None
    assert out["response"]["status_code"] == 200 and out["response"]["request_id"] == source.request_id
    body = out["response"]["body"]
    assert body["object"] == "chat.completion" and body["model"] == "small" and body["created"] == 1767312000
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello!", "refusal": None}, "finish_reason": "stop", "logprobs": None}]
    assert body["usage"] == {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
    assert body["turnout"]["route"] == "default" and body["turnout"]["cost_usd"] == 0.25
    assert {k: v for k, v in body.items() if k != "turnout"} == completion_body(ok(source.request_id)), "the gateway's chat.completion"
    json.dumps(out)  # writable as it is


def test_a_failed_openai_line_has_the_errors_http_status_and_an_openai_error_body() -> None:
    source = line(CHAT)
    out = result_line(source, failed(source.request_id, "deadline_exceeded"))
    assert out["error"] is None
    assert out["response"]["status_code"] == 504
    assert out["response"]["body"] == {"error": {"message": "deadline_exceeded happened", "type": "timeout_error", "param": None, "code": "deadline_exceeded"}}
    refused = result_line(source, failed(source.request_id, "policy_refused"))["response"]
    assert refused["status_code"] == 403 and refused["body"]["error"]["type"] == "permission_error"


@pytest.mark.parametrize(
    "code",
    ["invalid_request", "no_capable_model", "unknown_model", "policy_refused", "budget_exceeded", "rate_limited", "no_route",
     "deadline_exceeded", "all_backends_failed", "invalid_output", "response_too_large", "something_new"],
)  # fmt: skip
def test_a_failed_line_has_the_status_and_body_the_gateway_answers_the_same_error_with(code: str) -> None:
    source = line(CHAT)
    response = result_line(source, failed(source.request_id, code))["response"]
    gateway = from_turnout(ErrorInfo(code=code, message=f"{code} happened"))
    assert (response["status_code"], response["body"]) == (gateway.status, gateway.body())


def test_an_embedding_answer_is_an_embeddings_list() -> None:
    source = line('{"custom_id": "e", "url": "/v1/embeddings", "body": {"model": "auto", "input": ["a", "b"]}}')
    body = result_line(source, ok(source.request_id, embeddings=[[0.5, 0.25], [1.0, 0.0]]))["response"]["body"]
    assert body["object"] == "list" and [d["embedding"] for d in body["data"]] == [[0.5, 0.25], [1.0, 0.0]]
    assert [d["index"] for d in body["data"]] == [0, 1] and body["usage"] == {"prompt_tokens": 9, "total_tokens": 9}


def test_lines_without_an_answer_carry_an_error_and_no_response() -> None:
    pending = line(CHAT, number=3)
    assert result_line(pending, None) == {
        "id": f"batch_req_{pending.request_id}",
        "custom_id": "request-1",
        "response": None,
        "error": {"code": "no_response", "message": f"line 3: no response yet for request {pending.request_id}"},
    }
    broken = line('{"custom_id": "x", "url": "/v1/chat/completions", "body": {"messages": []}}', number=5)
    assert result_line(broken, None)["error"] == {"code": "invalid_line", "message": 'line 5: body.model is required ("auto" lets the router choose)'}


def test_a_turnout_line_is_answered_with_the_response_record() -> None:
    source = line('{"prompt": "Hi"}', number=2)
    answered = result_line(source, ok(source.request_id))
    assert (answered["line"], answered["custom_id"], answered["id"], answered["error"]) == (2, "line-2", source.request_id, None)
    assert InferenceResponse.model_validate(answered["response"]) == ok(source.request_id)
    failure = result_line(source, failed(source.request_id, "all_backends_failed"))
    assert failure["error"] == {"code": "all_backends_failed", "message": "all_backends_failed happened"}
    assert failure["response"]["status"] == "error"
    assert result_line(source, None)["error"]["code"] == "no_response"


def test_the_manifest_keeps_every_line_with_its_id_format_and_error(tmp_path: Path) -> None:
    lines = [line('{"prompt": "Hi"}', 1), line(CHAT, 2), line("[]", 4)]
    path = tmp_path / "state" / "job-7.manifest.jsonl"
    write_manifest(path, lines)
    loaded = load_manifest(path)
    assert [(x.line, x.custom_id, x.request_id, x.format, x.error) for x in loaded] == [
        (x.line, x.custom_id, x.request_id, x.format, x.error) for x in lines
    ]
    assert all(x.request is None for x in loaded), "the manifest holds ids, not the requests"
