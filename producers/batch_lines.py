"""A batch job's input: one request per JSONL line, in Turnout's format or OpenAI's.

**Turnout's line format** (one JSON object; only a prompt, the messages or the input is
required)::

    {"prompt": "Summarise ...", "system": "Be brief."}
    {"messages": [{"role": "user", "content": "Hi"}], "model": "small", "metadata": {"team": "ml"}}
    {"input": ["text one", "text two"]}                      # an embedding request
    {"custom_id": "order-17", "tenant": "acme", "prompt": "...", "max_tokens": 200,
     "temperature": 0.2, "stop": ["\\n\\n"], "response_schema": {"type": "object"}, "cache": false}

``model`` pins a fleet model (omit it, or ``"auto"``, to let the router choose);
``tenant`` defaults to the job's; ``custom_id`` to ``line-<n>``.

**OpenAI's Batch API line format**::

    {"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "auto", "messages": [...], "max_tokens": 1000}}

``url`` is ``/v1/chat/completions`` or ``/v1/embeddings``. ``body.model`` is ``"auto"``
or a fleet model; ``response_format`` (``json_schema``, ``json_object``), ``tools``,
``stop``, ``temperature``, ``max_tokens``/``max_completion_tokens`` and ``metadata``
are carried over; other sampling options are ignored; ``n`` > 1 and ``stream`` are
refused. Message content may be text or OpenAI's parts (``text``, ``image_url``).

Each line's request id is derived from the job and the line's ``custom_id``
(``ids.line_request_id``), so submitting the same file again under the same job
publishes the same ids. A line that cannot become a request is kept with its error
(and never published): the results file reports it at its place.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from turnout.schemas.models import InferenceRequest
from turnout.schemas.serde import DecodeError, validate
from turnout.schemas.topics import Topics

from .ids import line_request_id

LineFormat = Literal["turnout", "openai"]

AUTO = "auto"
OPENAI_URLS = ("/v1/chat/completions", "/v1/embeddings")
_TURNOUT_KEYS = {
    "custom_id", "tenant", "prompt", "system", "messages", "input", "model", "metadata",
    "max_tokens", "temperature", "stop", "response_schema", "tools", "cache",
}  # fmt: skip
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}


@dataclass(frozen=True)
class JobContext:
    """What every line of a job shares: the job, its default tenant, the fleet a pinned
    model must belong to (``None``: not checked), and the topic its answers go to."""

    job_id: str
    tenant: str
    topics: Topics
    fleet: frozenset[str] | None = None

    def __post_init__(self) -> None:
        self.topics.batch(self.job_id)  # a job id that cannot name a topic fails here, with the reason

    @property
    def reply_topic(self) -> str:
        return self.topics.batch(self.job_id)


@dataclass(frozen=True)
class BatchLine:
    """One input line: the request it became, or why it could not."""

    line: int  # 1-based line number in the file
    custom_id: str
    request_id: str
    format: LineFormat
    request: InferenceRequest | None = None
    error: str | None = None


class LineError(ValueError):
    """Why a line is not a request; ``str()`` is what the results file reports."""


def read_lines(lines: Iterable[str], job: JobContext) -> Iterator[BatchLine]:
    """Every non-blank line as a ``BatchLine``, numbered from 1. A ``custom_id`` used
    twice is an error on the later line (ids must tell the lines apart)."""
    seen: dict[str, int] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        parsed = parse_line(text, number, job)
        first = seen.setdefault(parsed.custom_id, number)
        if first != number:
            parsed = BatchLine(number, parsed.custom_id, parsed.request_id, parsed.format, error=f"custom_id {parsed.custom_id!r} is already used on line {first}")
        yield parsed


def parse_line(text: str, number: int, job: JobContext) -> BatchLine:
    default_id = f"line-{number}"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return BatchLine(number, default_id, line_request_id(job.job_id, default_id), "turnout", error=f"not JSON: {exc}")
    if not isinstance(obj, dict):
        return BatchLine(number, default_id, line_request_id(job.job_id, default_id), "turnout", error=f"expected a JSON object, got {type(obj).__name__}")
    fmt: LineFormat = "openai" if "body" in obj or "url" in obj else "turnout"
    custom_id = obj.get("custom_id", default_id if fmt == "turnout" else None)
    if not isinstance(custom_id, str) or not custom_id:
        return BatchLine(number, default_id, line_request_id(job.job_id, default_id), fmt, error="custom_id: a non-empty string is required")
    request_id = line_request_id(job.job_id, custom_id)
    try:
        fields = _openai_fields(obj) if fmt == "openai" else _turnout_fields(obj)
        request = _request(fields, request_id, number, job)
    except (LineError, DecodeError) as exc:
        return BatchLine(number, custom_id, request_id, fmt, error=str(exc))
    return BatchLine(number, custom_id, request_id, fmt, request=request)


def _request(fields: dict[str, Any], request_id: str, number: int, job: JobContext) -> InferenceRequest:
    model = fields.pop("model", None)
    if model == AUTO:
        model = None
    if model is not None and job.fleet is not None and model not in job.fleet:
        raise LineError(f"model {model!r} is not in the fleet (fleet has: {', '.join(sorted(job.fleet))}); use \"auto\" to let the router choose")
    metadata = fields.pop("metadata", None) or {}
    if not isinstance(metadata, dict):
        raise LineError("metadata: expected an object of strings")
    datum = {
        **fields,
        "id": request_id,
        "tenant": fields.get("tenant") or job.tenant,
        "model": model,
        "reply_topic": job.reply_topic,
        "metadata": {**{str(k): str(v) for k, v in metadata.items()}, "batch_job": job.job_id, "batch_line": str(number)},
    }
    return validate(InferenceRequest, datum)


def _turnout_fields(obj: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(obj) - _TURNOUT_KEYS)
    if unknown:
        hint = " (the request id is derived from the job and custom_id)" if "id" in unknown else ""
        raise LineError(f"unknown field(s) {', '.join(unknown)}{hint}; a Turnout line takes {', '.join(sorted(_TURNOUT_KEYS))}")
    fields = {k: v for k, v in obj.items() if k not in {"custom_id", "prompt", "system", "messages"}}
    if "prompt" in obj:
        if "messages" in obj:
            raise LineError("give prompt or messages, not both")
        if not isinstance(obj["prompt"], str):
            raise LineError("prompt: expected a string")
        system = [{"role": "system", "content": obj["system"]}] if obj.get("system") else []
        fields["messages"] = system + [{"role": "user", "content": obj["prompt"]}]
    elif "messages" in obj:
        if "system" in obj:
            raise LineError("system goes with prompt; with messages, put a system message first")
        fields["messages"] = _messages(obj["messages"])
    _carry_json_strings(fields)
    if isinstance(fields.get("stop"), str):
        fields["stop"] = [fields["stop"]]
    return fields


def _openai_fields(obj: dict[str, Any]) -> dict[str, Any]:
    if obj.get("method", "POST") != "POST":
        raise LineError(f"method {obj.get('method')!r}: only POST is supported")
    url = obj.get("url")
    if url not in OPENAI_URLS:
        raise LineError(f"url {url!r}: supported are {', '.join(OPENAI_URLS)}")
    body = obj.get("body")
    if not isinstance(body, dict):
        raise LineError("body: expected an object")
    if "model" not in body:
        raise LineError('body.model is required ("auto" lets the router choose)')
    if body.get("stream"):
        raise LineError("body.stream: a batch line cannot be streamed")
    if body.get("n", 1) != 1:
        raise LineError(f"body.n = {body['n']}: one answer per line only")
    fields: dict[str, Any] = {"model": body["model"]}
    if url == "/v1/embeddings":
        texts = body.get("input")
        fields["input"] = [texts] if isinstance(texts, str) else texts
        return fields
    fields["messages"] = _messages(body.get("messages"))
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    for name, value in (("max_tokens", max_tokens), ("temperature", body.get("temperature")), ("metadata", body.get("metadata"))):
        if value is not None:
            fields[name] = value
    stop = body.get("stop")
    if stop is not None:
        fields["stop"] = [stop] if isinstance(stop, str) else stop
    if body.get("tools") is not None:
        fields["tools"] = body["tools"]
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        fields["response_schema"] = (response_format.get("json_schema") or {}).get("schema")
        if fields["response_schema"] is None:
            raise LineError("body.response_format.json_schema.schema is required")
    elif response_format.get("type") == "json_object":
        fields["response_schema"] = {"type": "object"}
    _carry_json_strings(fields)
    return fields


def _carry_json_strings(fields: dict[str, Any]) -> None:
    """``tools`` and ``response_schema`` travel as JSON text in the request record."""
    for name in ("tools", "response_schema"):
        if name in fields and not isinstance(fields[name], str | type(None)):
            fields[name] = json.dumps(fields[name], separators=(",", ":"))


def _messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise LineError("messages: expected a non-empty list of {role, content}")
    return [_message(i, m) for i, m in enumerate(messages)]


def _message(index: int, message: Any) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise LineError(f"messages[{index}]: expected an object")
    role = _ROLES.get(message.get("role"))  # type: ignore[arg-type]
    if role is None:
        raise LineError(f"messages[{index}].role {message.get('role')!r}: expected one of {', '.join(_ROLES)}")
    content, images = message.get("content"), []
    if isinstance(content, list):  # OpenAI's content parts
        texts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                texts.append(part.get("text", ""))
            elif kind == "image_url":
                images.append((part.get("image_url") or {}).get("url", ""))
            else:
                raise LineError(f"messages[{index}].content: part type {kind!r} is not supported (text, image_url)")
        content = "\n".join(texts)
    if content is None and message.get("tool_calls"):
        content = json.dumps(message["tool_calls"], separators=(",", ":"))
    if not isinstance(content, str):
        raise LineError(f"messages[{index}].content: expected a string or a list of parts")
    out: dict[str, Any] = {"role": role, "content": content}
    if message.get("name"):
        out["name"] = message["name"]
    if images or message.get("images"):
        out["images"] = images or message["images"]
    return out
