"""OpenAI's chat completions JSON in, Turnout's records out, and back.

``parse_chat`` reads a request body into ``ChatCall`` (what the caller asked) and
``to_request`` makes the ``InferenceRequest`` the router reads; ``routing_headers`` turns
the ``InferenceResponse`` into the ``x-turnout-*`` headers (its body, OpenAI's
``chat.completion`` or its chunks, is ``producers.openai_format``'s, shared with batch jobs).
Parameters Turnout cannot honour are refused with a 400 naming them, never dropped in
silence: a caller that sends ``tools`` and gets plain text back would not know why.
Parameters that only advise (``seed``, ``store``, ``user``) are accepted; ``user`` and
``metadata`` travel in the request's metadata, where routes can match them.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from turnout.schemas.models import ChatMessage, InferenceRequest, InferenceResponse

from .errors import ApiError, from_turnout, invalid_request, unknown_model

AUTO = "auto"  # the model name that lets the router choose
_METADATA_PAIRS, _METADATA_KEY_CHARS, _METADATA_VALUE_CHARS = 16, 64, 512  # OpenAI's own limits


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ImageUrl(_Strict):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageUrl


class Message(BaseModel):
    """One turn. Tool calls and tool results are read so that they can be refused by name."""

    model_config = ConfigDict(extra="ignore")  # e.g. an assistant turn's ``refusal`` or ``annotations`` echoed back
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart | ImagePart] | None = None
    name: str | None = None
    tool_calls: list[Any] | None = None
    function_call: Any = None


class JsonSchemaFormat(_Strict):
    name: str
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=lambda: {"type": "object"}, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class ChatCompletionBody(_Strict):
    """The body of ``POST /v1/chat/completions``: what Turnout honours, then what it refuses
    unless left at its neutral value, then what it accepts and ignores."""

    model: str
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    response_format: ResponseFormat | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    # refused unless neutral: Turnout has no way to honour them (yet)
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    parallel_tool_calls: bool | None = None
    n: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    modalities: list[str] | None = None
    audio: Any = None
    prediction: Any = None
    web_search_options: Any = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    # advisory: accepted, with no effect
    seed: int | None = None
    store: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None


# name -> the values that mean "not asked for"
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "functions": (None, []),
    "function_call": (None, "none"),
    "parallel_tool_calls": (None, True, False),
    "n": (None, 1),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "top_p": (None, 1, 1.0),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "prediction": (None,),
    "web_search_options": (None,),
    "reasoning_effort": (None,),
    "verbosity": (None,),
}


@dataclass(frozen=True)
class ChatCall:
    """A validated call: the model asked for (``None`` for auto) and the parts of the request."""

    model: str | None
    messages: list[ChatMessage]
    stream: bool
    include_usage: bool  # stream_options.include_usage: a last chunk with the usage
    temperature: float | None
    max_tokens: int | None
    stop: list[str]
    response_schema: str | None
    metadata: dict[str, str]


def parse_chat(raw: bytes, fleet: list[str]) -> ChatCall:
    """Validate a request body; raise ``ApiError`` (400, 404 for a model not in ``fleet``)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_request(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise invalid_request("the request body must be a JSON object")
    try:
        body = ChatCompletionBody.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    _refuse_unsupported(body)
    model = _model(body.model, fleet)
    return ChatCall(
        model=model,
        messages=[_message(m, i) for i, m in enumerate(body.messages)],
        stream=bool(body.stream),
        include_usage=bool((body.stream_options or {}).get("include_usage")),
        temperature=body.temperature,
        max_tokens=_max_tokens(body),
        stop=[body.stop] if isinstance(body.stop, str) else list(body.stop or []),
        response_schema=_response_schema(body.response_format),
        metadata=_metadata(body),
    )


def _validation_error(exc: ValidationError) -> Exception:
    error = exc.errors()[0]
    param = _dotted(error["loc"])
    if error["type"] == "extra_forbidden":
        return invalid_request(f"Unrecognized request argument supplied: {param}", param=param)
    if error["type"] == "missing":
        return invalid_request(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    return invalid_request(f"Invalid value for '{param}': {error['msg']}{more}", param=param, code="invalid_value")


_TYPE_TAGS = {"str", "int", "float", "bool"}  # pydantic names the member of a union it tried


def _dotted(loc: tuple[int | str, ...]) -> str:
    """``messages[0].content`` from pydantic's location, without its union-member names."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not (part[:1].isupper() or "[" in part or part in _TYPE_TAGS):
            out += f".{part}" if out else part
    return out


def _refuse_unsupported(body: ChatCompletionBody) -> None:
    for name, neutral in _NEUTRAL.items():
        value = getattr(body, name)
        if value not in neutral:
            raise invalid_request(f"'{name}' is not supported by the Turnout gateway (leave it out): {_why(name)}", param=name, code="unsupported_parameter")
    for index, message in enumerate(body.messages):
        if message.role in ("tool", "function") or message.tool_calls or message.function_call is not None:
            raise invalid_request(
                f"messages[{index}]: tool and function calls are not supported by the Turnout gateway", param=f"messages[{index}]", code="unsupported_parameter"
            )
    if body.stream_options and not body.stream:
        raise invalid_request("'stream_options' is only allowed when 'stream' is true", param="stream_options")


def _why(name: str) -> str:
    if name in ("tools", "tool_choice", "functions", "function_call", "parallel_tool_calls"):
        return "Turnout's responses carry text, not tool calls"
    if name == "n":
        return "one choice per request; send the request n times instead"
    return "Turnout's backends are not asked for it, so the answer would not honour it"


def _model(name: str, fleet: list[str]) -> str | None:
    if name == AUTO:
        return None
    if name not in fleet:
        raise unknown_model(name, [AUTO, *fleet])
    return name


def _message(message: Message, index: int) -> ChatMessage:
    role = "system" if message.role == "developer" else message.role
    if message.content is None:
        raise invalid_request(f"messages[{index}].content is missing", param=f"messages[{index}].content")
    if isinstance(message.content, str):
        text, images = message.content, []
    else:
        text = "\n".join(part.text for part in message.content if isinstance(part, TextPart))
        images = [part.image_url.url for part in message.content if isinstance(part, ImagePart)]
    return ChatMessage(role=role, content=text, name=message.name, images=images)  # type: ignore[arg-type]


def _max_tokens(body: ChatCompletionBody) -> int | None:
    both = body.max_tokens is not None and body.max_completion_tokens is not None
    if both and body.max_tokens != body.max_completion_tokens:
        raise invalid_request("max_tokens and max_completion_tokens disagree: send one of them", param="max_completion_tokens")
    return body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens


def _response_schema(fmt: ResponseFormat | None) -> str | None:
    """Structured output: the JSON schema the workers validate (and repair) the answer against."""
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return json.dumps({"type": "object"})
    if fmt.json_schema is None:
        raise invalid_request("response_format of type 'json_schema' needs a 'json_schema' object", param="response_format.json_schema")
    return json.dumps(fmt.json_schema.schema_, separators=(",", ":"))


def _metadata(body: ChatCompletionBody) -> dict[str, str]:
    metadata = dict(body.metadata or {})
    if len(metadata) > _METADATA_PAIRS:
        raise invalid_request(f"metadata holds {len(metadata)} pairs; at most {_METADATA_PAIRS} are allowed", param="metadata")
    for key, value in metadata.items():
        if len(key) > _METADATA_KEY_CHARS or len(value) > _METADATA_VALUE_CHARS:
            raise invalid_request(
                f"metadata[{key[:_METADATA_KEY_CHARS]!r}]: keys hold at most {_METADATA_KEY_CHARS} characters, values {_METADATA_VALUE_CHARS}",
                param="metadata",
            )
    if body.user:
        metadata.setdefault("user", body.user)
    return metadata


def to_request(call: ChatCall, tenant: str, timeout_s: float, reply_topic: str) -> InferenceRequest:
    """The request the router reads. Its id is made here, 122 random bits, so that no
    caller can name (or guess) another call's id; its tenant is the caller's key's; its
    deadline is when the gateway stops waiting, so no worker pays for an answer nobody reads."""
    now = datetime.now(timezone.utc)
    return InferenceRequest(
        id=uuid.uuid4().hex,
        tenant=tenant,
        messages=call.messages,
        response_schema=call.response_schema,
        max_tokens=call.max_tokens,
        stop=call.stop,
        temperature=call.temperature,
        metadata=call.metadata,
        deadline=now + timedelta(seconds=timeout_s),
        reply_topic=reply_topic,
        model=call.model,
    )


def routing_headers(response: InferenceResponse) -> dict[str, str]:
    """How the request was routed, served and paid for, as ``x-turnout-*`` headers (errors too)."""
    routing = response.routing
    headers = {
        "x-turnout-request-id": response.id,
        "x-turnout-tenant": response.tenant,
        "x-turnout-route": routing.route,
        "x-turnout-model": response.model or routing.selected_model,
        "x-turnout-provider": response.provider,
        "x-turnout-policy-version": routing.policy_version,
        "x-turnout-task-type": routing.task_type,
        "x-turnout-fallback-depth": str(max(0, len(routing.fallback_path) - 1)),
        "x-turnout-fallback-path": ",".join(routing.fallback_path),
        "x-turnout-cost-usd": f"{response.cost_usd:.8f}",
        "x-turnout-cache-hit": "true" if response.cache_hit else "false",
        "x-turnout-validation": response.validation,
        "x-turnout-latency-ms": f"{response.latency_ms:.1f}",
    }
    return {name: value for name, value in headers.items() if value}


def error_answer(response: InferenceResponse) -> ApiError:
    """An error response as the HTTP error it is answered with, carrying its routing headers."""
    error = from_turnout(response.error)
    error.extra_headers = routing_headers(response)
    return error
