"""The aiohttp app behind ``turnout gateway``: ``POST /v1/chat/completions`` and
``GET /v1/models``, each call authenticated by its API key.

A call is published as an ``InferenceRequest`` whose reply topic is this instance's
(``replies``) and awaited through the SDK's ``TurnoutClient``, which matches answers to
calls by request id. The id is made here for every call, so an answer on the reply topic
only ever reaches the HTTP call that caused it. A call that gives up (timeout, the
client hung up) is forgotten, so a long-running gateway keeps nothing for it. A call
with ``stream: true`` follows the answer's chunks on the same topic (``sse``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiokafka.errors import KafkaError

from turnout.producers.client import ResponseTimeout, TurnoutClient
from turnout.producers.openai_format import completion_body
from turnout.producers.streaming import TextDelta
from turnout.schemas.models import InferenceRequest, InferenceResponse
from turnout.schemas.settings import Settings

from .errors import ApiError, timed_out, unauthenticated, unknown_model
from .keys import Caller, KeyRing, bearer_token
from .replies import PARTITIONS, reply_topic, reply_topic_configs
from .sse import Item, stream_answer
from .wire import AUTO, error_answer, parse_chat, routing_headers, to_request

log = logging.getLogger(__name__)

CALLER = "turnout.caller"  # the request's authenticated Caller
HEALTH_PATH = "/health"
_STARTED = int(time.time())


class Gateway:
    """What the handlers share: the settings, the keys, and the client on the reply topic."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = KeyRing(settings.gateway.keys)
        self.fleet = sorted(settings.fleet)
        self.reply_topic = reply_topic(settings)
        self.timeout_s = settings.gateway.request_timeout_s
        self.client: TurnoutClient | None = None

    async def start(self) -> None:
        self.client = TurnoutClient(
            self.settings.kafka, reply_topic=self.reply_topic, reply_partitions=PARTITIONS, reply_configs=reply_topic_configs(self.settings)
        )
        await self.client.__aenter__()
        log.info("gateway ready: %d API key(s), fleet %s, replies on %s", len(self.keys), ", ".join(self.fleet), self.reply_topic)

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.__aexit__(None, None, None)
            self.client = None

    def authenticate(self, request: web.Request) -> Caller:
        key = bearer_token(request.headers.get("Authorization"))
        if key is None:
            raise unauthenticated("You didn't provide an API key: send it as 'Authorization: Bearer <key>'.")
        caller = self.keys.caller(key)
        if caller is None:
            raise unauthenticated("Incorrect API key provided.")
        return caller

    async def answer(self, inference: InferenceRequest) -> InferenceResponse:
        """Publish ``inference`` and wait for its response; forget it whatever happens."""
        assert self.client is not None, "the gateway is not started"
        try:
            try:
                pending = await self.client.submit(inference, self.timeout_s)
            except KafkaError as exc:
                raise _unpublished(exc) from None
            try:
                return await pending
            except ResponseTimeout:
                raise timed_out(self.timeout_s) from None
        finally:
            self.client.forget([inference.id])

    async def stream(self, inference: InferenceRequest) -> AsyncIterator[Item]:
        """``TextDelta``s of the answer as the worker writes it, then the final response."""
        assert self.client is not None, "the gateway is not started"
        try:
            async with contextlib.aclosing(self.client.stream(inference, self.timeout_s)) as items:
                async for item in items:
                    yield item
        except ResponseTimeout:
            raise timed_out(self.timeout_s) from None
        except KafkaError as exc:
            raise _unpublished(exc) from None

    async def whole(self, inference: InferenceRequest) -> AsyncIterator[Item]:
        """The answer in one piece, for a stream: what structured output sends."""
        response = await self.answer(inference)
        if response.status == "ok" and response.content:
            yield TextDelta(response.content, response.model or "")
        yield response


def _unpublished(exc: KafkaError) -> ApiError:
    return ApiError(503, f"the gateway could not publish the request: {type(exc).__name__}", type="server_error", code="broker_unavailable")


GATEWAY = web.AppKey("gateway", Gateway)


# -- handlers ------------------------------------------------------------------------------
async def chat_completions(request: web.Request) -> web.StreamResponse:
    gateway, caller = request.app[GATEWAY], request[CALLER]
    call = parse_chat(await request.read(), gateway.fleet)
    inference = to_request(call, caller.tenant, gateway.timeout_s, gateway.reply_topic)
    if call.stream:
        items = gateway.whole(inference) if inference.response_schema else gateway.stream(inference)
        headers = {"x-turnout-request-id": inference.id, "x-turnout-tenant": caller.tenant}
        async with contextlib.aclosing(items):
            return await stream_answer(request, items, request_id=inference.id, headers=headers, include_usage=call.include_usage)
    response = await gateway.answer(inference)
    if response.tenant != caller.tenant:  # cannot happen unless something else writes our topic with our ids
        log.error("response %s for tenant %r reached a call of tenant %r: dropped", response.id, response.tenant, caller.tenant)
        raise ApiError(502, "the answer did not belong to this caller", type="server_error")
    if response.status == "error":
        raise error_answer(response)
    return web.json_response(completion_body(response), headers=routing_headers(response))


def _models(gateway: Gateway, tenant: str) -> dict[str, dict[str, Any]]:
    """``auto`` and the fleet's ids that ``tenant``'s policy allows, as OpenAI's model
    objects (owned by their provider)."""
    fleet, policy = gateway.settings.fleet, gateway.settings.policy.tenant(tenant)  # the configured policy
    allowed = [model_id for model_id in gateway.fleet if policy.forbids(model_id, fleet[model_id].region) is None]
    owners = {AUTO: "turnout", **{model_id: fleet[model_id].provider for model_id in allowed}}
    return {model_id: {"id": model_id, "object": "model", "created": _STARTED, "owned_by": owner} for model_id, owner in owners.items()}


async def list_models(request: web.Request) -> web.Response:
    models = _models(request.app[GATEWAY], request[CALLER].tenant)
    return web.json_response({"object": "list", "data": list(models.values())})


async def retrieve_model(request: web.Request) -> web.Response:
    name = request.match_info["model"]
    models = _models(request.app[GATEWAY], request[CALLER].tenant)
    if name not in models:
        raise unknown_model(name, list(models))
    return web.json_response(models[name])


async def health(_request: web.Request) -> web.Response:
    """For load balancers: no key needed, nothing about the fleet or the keys said."""
    return web.json_response({"status": "ok"})


# -- middleware: authentication first, then every failure in OpenAI's format ---------------
@web.middleware
async def openai_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return _error_response(exc)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[GATEWAY].settings.gateway.max_body_bytes
        return _error_response(ApiError(413, f"the request body is larger than {limit} bytes (gateway.max_body_bytes)", type="invalid_request_error"))
    except web.HTTPException as exc:  # no such route or method
        if exc.status < 400:
            raise
        return _error_response(ApiError(exc.status, f"Invalid URL ({request.method} {request.path})", type="invalid_request_error"))
    except Exception:
        log.exception("gateway call %s %s failed", request.method, request.path)
        return _error_response(ApiError(500, "the gateway failed to handle the request", type="server_error"))


@web.middleware
async def api_key(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path != HEALTH_PATH:
        request[CALLER] = request.app[GATEWAY].authenticate(request)
    return await handler(request)


def _error_response(error: ApiError) -> web.Response:
    if error.status >= 500:
        log.warning("answering %d %s: %s", error.status, error.code or error.type, error.message)
    return web.json_response(error.body(), status=error.status, headers={**error.headers(), **error.extra_headers})


def make_app(gateway: Gateway) -> web.Application:
    app = web.Application(middlewares=[openai_errors, api_key], client_max_size=gateway.settings.gateway.max_body_bytes)
    app[GATEWAY] = gateway
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", retrieve_model)
    app.router.add_get(HEALTH_PATH, health)

    async def lifecycle(_app: web.Application):
        await gateway.start()
        yield
        await gateway.stop()

    app.cleanup_ctx.append(lifecycle)
    return app


def run_gateway(settings: Settings, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM; in-flight calls end with the process."""
    gateway = Gateway(settings)
    log.info("gateway listening on http://%s:%d/v1", host, port)
    web.run_app(make_app(gateway), host=host, port=port, print=None, access_log=None)
