"""A batch file's lines become requests, in Turnout's format and OpenAI's, or errors
that name the line; ids come from the job and the line."""

from __future__ import annotations

import json

import pytest

from turnout.producers.batch_lines import BatchLine, JobContext, parse_line, read_lines
from turnout.producers.ids import line_request_id
from turnout.schemas.topics import Topics

JOB = JobContext("job-7", "acme", Topics("t"), frozenset({"small", "medium", "embed"}))


def parsed(obj: object, number: int = 1, job: JobContext = JOB) -> BatchLine:
    return parse_line(json.dumps(obj), number, job)


def openai(body: dict, url: str = "/v1/chat/completions", custom_id: str = "request-1") -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def test_a_turnout_prompt_line() -> None:
    line = parsed({"prompt": "Summarise this.", "system": "Be brief.", "metadata": {"team": "ml", "n": 3}, "stop": "\n"}, number=4)
    assert (line.format, line.custom_id, line.error) == ("turnout", "line-4", None)
    request = line.request
    assert request is not None and request.id == line.request_id == line_request_id("job-7", "line-4")
    assert [(m.role, m.content) for m in request.messages] == [("system", "Be brief."), ("user", "Summarise this.")]
    assert request.tenant == "acme" and request.model is None and request.stop == ["\n"]
    assert request.reply_topic == "t.batch.job-7"
    assert request.metadata == {"team": "ml", "n": "3", "batch_job": "job-7", "batch_line": "4"}


def test_a_turnout_messages_line_with_its_own_id_tenant_and_model() -> None:
    line = parsed(
        {"custom_id": "order-17", "tenant": "globex", "model": "medium", "response_schema": {"type": "object"}, "cache": False,
         "messages": [{"role": "user", "content": "Extract the total."}], "max_tokens": 50}  # fmt: skip
    )
    request = line.request
    assert line.custom_id == "order-17" and request is not None and request.id == line_request_id("job-7", "order-17")
    assert (request.tenant, request.model, request.cache, request.max_tokens) == ("globex", "medium", False, 50)
    assert json.loads(request.response_schema or "") == {"type": "object"}


def test_a_turnout_embedding_line() -> None:
    request = parsed({"input": ["one", "two"], "model": "auto"}).request
    assert request is not None and request.input == ["one", "two"] and request.model is None


def test_an_openai_chat_line() -> None:
    body = {
        "model": "auto",
        "messages": [
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]},
        ],
        "max_completion_tokens": 64,
        "temperature": 0.1,
        "top_p": 0.9,  # ignored
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object", "required": ["x"]}}},
        "tools": [{"type": "function", "function": {"name": "f"}}],
    }
    line = parsed(openai(body))
    request = line.request
    assert (line.format, line.custom_id, line.error) == ("openai", "request-1", None)
    assert request is not None and request.id == line_request_id("job-7", "request-1")
    assert [(m.role, m.content, m.images) for m in request.messages] == [
        ("system", "Answer in French.", []),
        ("user", "What is this?", ["https://x/cat.png"]),
    ]
    assert (request.max_tokens, request.temperature, request.model) == (64, 0.1, None)
    assert json.loads(request.response_schema or "") == {"type": "object", "required": ["x"]}
    assert json.loads(request.tools or "") == [{"type": "function", "function": {"name": "f"}}]


def test_an_openai_embeddings_line_pins_a_fleet_model() -> None:
    request = parsed(openai({"model": "embed", "input": "just one"}, url="/v1/embeddings")).request
    assert request is not None and request.input == ["just one"] and request.model == "embed"


@pytest.mark.parametrize(
    ("obj", "error"),
    [
        (openai({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}), "model 'gpt-4o' is not in the fleet (fleet has: embed, medium, small)"),
        (openai({"messages": [{"role": "user", "content": "x"}]}), "body.model is required"),
        (openai({"model": "auto", "messages": [{"role": "user", "content": "x"}]}, url="/v1/responses"), "url '/v1/responses'"),
        (openai({"model": "auto", "messages": [{"role": "user", "content": "x"}], "n": 2}), "body.n = 2"),
        (openai({"model": "auto", "messages": [{"role": "user", "content": "x"}], "stream": True}), "cannot be streamed"),
        (openai({"model": "auto", "messages": [{"role": "robot", "content": "x"}]}), "messages[0].role 'robot'"),
        ({"method": "POST", "url": "/v1/chat/completions", "body": {}}, "custom_id: a non-empty string is required"),
        ({"prompt": "x", "id": "mine"}, "unknown field(s) id (the request id is derived from the job and custom_id)"),
        ({"prompt": "x", "messages": [{"role": "user", "content": "y"}]}, "give prompt or messages, not both"),
        ({"prompt": 3}, "prompt: expected a string"),
        ({"messages": []}, "messages: expected a non-empty list"),
        ({"tenant": "acme"}, "a request needs messages (a chat request) or input"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ([1, 2], "expected a JSON object, got list"),
    ],
)
def test_a_line_that_is_not_a_request_says_why(obj: object, error: str) -> None:
    line = parsed(obj, number=9)
    assert line.request is None and line.error is not None
    assert error in line.error
    assert line.line == 9


def test_read_lines_numbers_lines_skips_blanks_and_refuses_a_reused_custom_id() -> None:
    text = [
        '{"prompt": "one"}\n',
        "\n",
        "{not json\n",
        '{"custom_id": "a", "prompt": "two"}\n',
        '{"custom_id": "a", "prompt": "three"}\n',
    ]
    lines = list(read_lines(text, JOB))
    assert [line.line for line in lines] == [1, 3, 4, 5]
    assert lines[0].request is not None and lines[1].error is not None and lines[1].error.startswith("not JSON")
    assert lines[2].request is not None
    assert lines[3].request is None and lines[3].error == "custom_id 'a' is already used on line 4"


def test_the_same_file_gives_the_same_ids_under_the_same_job_only() -> None:
    text = ['{"prompt": "one"}', '{"custom_id": "x", "prompt": "two"}']
    first, again = list(read_lines(text, JOB)), list(read_lines(text, JOB))
    other = list(read_lines(text, JobContext("job-8", "acme", Topics("t"))))
    assert [line.request_id for line in first] == [line.request_id for line in again]
    assert not {line.request_id for line in first} & {line.request_id for line in other}


def test_a_job_id_that_cannot_name_a_topic_is_refused() -> None:
    with pytest.raises(ValueError, match="batch job id 'my job'"):
        JobContext("my job", "acme", Topics("t"))


def test_a_files_default_job_id_is_its_name_made_topic_safe() -> None:
    from pathlib import Path

    from turnout.producers.batch_cli import default_job_id

    assert default_job_id(Path("/data/nightly prompts (v2).jsonl")) == "nightly-prompts--v2-"
    assert default_job_id(Path("prompts.jsonl")) == "prompts"
    JobContext(default_job_id(Path("/data/nightly prompts (v2).jsonl")), "acme", Topics("t"))  # accepted as a job id
