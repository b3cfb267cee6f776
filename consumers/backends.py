"""Build the backend a fleet deployment describes: its wire format (``api``), its key,
its timeout and its connection pool, in one place for every worker."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from turnout.schemas.fleet import ModelDeployment

from .anthropic_backend import AnthropicMessagesBackend
from .backend import ChatBackend, HttpOptions, OpenAIChatBackend
from .credentials import resolve_api_key
from .gemini_backend import GeminiBackend

def make_backend(
    model_id: str,
    deployment: ModelDeployment,
    base_url: str,
    *,
    environ: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ChatBackend:
    """``base_url`` comes from ``Settings.backend_url`` (a simulated deployment has none of
    its own); ``environ`` and ``transport`` are for tests. Raises ``CredentialError`` when the
    configured key source yields no key."""
    options = HttpOptions(
        provider=deployment.provider,
        api_key=resolve_api_key(model_id, deployment, environ),
        timeout_s=deployment.timeout_s,
        max_connections=deployment.concurrency,  # the worker's semaphore admits no more calls than this
        transport=transport,
        stream=deployment.stream,
    )
    served = deployment.served_model
    match deployment.api:
        case "anthropic":
            return AnthropicMessagesBackend(base_url, served, max_output_tokens=deployment.max_output_tokens, **options)
        case "gemini":
            return GeminiBackend(base_url, served, **options)
        case _:
            return OpenAIChatBackend(base_url, served, **options)
