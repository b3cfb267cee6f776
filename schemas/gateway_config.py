"""The OpenAI-compatible gateway's typed configuration: where its replies come back,
how long a call waits, and the API keys it accepts.

Kept with the other settings (``schemas/``) so that ``Settings`` can nest it and a
configuration error names the key; the gateway itself lives in ``gateway/``.

An API key is stored only as its SHA-256 digest (``sha256:<64 hex digits>``). That is
enough for keys and would not be for passwords: a key made by ``turnout gateway key
create`` holds 256 random bits, so no guess list finds it from its digest, while a slow
hash (bcrypt, argon2) would spend tens of milliseconds of CPU on every HTTP call, which
an unauthenticated caller could then make the gateway spend at will.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from .section import Section
from .topics import Topics

KEY_HASH_SCHEME = "sha256"
_KEY_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


class ApiKeyEntry(Section):
    """One accepted key: its digest, the tenant every call made with it acts as, a name for people."""

    hash: str = Field(description="sha256:<hex digest of the key>, as `turnout gateway key create` prints it")
    tenant: str = Field(min_length=1, description="the tenant of every request made with this key; callers cannot choose another")
    name: str = Field(default="", description="who holds the key (shown in logs, never the key itself)")

    @field_validator("hash")
    @classmethod
    def _digest(cls, value: str) -> str:
        if not _KEY_HASH.match(value):
            if value.startswith(KEY_HASH_SCHEME + ":"):
                raise ValueError("a sha256 digest is 64 lower-case hex digits after 'sha256:'")
            raise ValueError(
                "expected 'sha256:<64 hex digits>' (the digest `turnout gateway key create` prints), not the key itself or another scheme"
            )
        return value


class GatewaySettings(Section):
    """``turnout gateway``: OpenAI's chat completions API in front of the requests topic."""

    instance_id: str | None = Field(
        default=None,
        description="names this gateway's reply topic, <prefix>.gateway.<instance_id>; unset: the host name. Keep it stable across "
        "restarts (a new id leaves the old topic behind) and distinct between replicas (two replicas sharing one would each read the "
        "other's answers, and drop them)",
    )
    request_timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="how long a call waits for its answer before a 504; also the request's deadline"
    )
    reply_retention_s: float = Field(
        default=3600.0, gt=0, description="how long the broker keeps the reply topic's records: nobody reads an answer after its call ended"
    )
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, description="largest request body accepted (413 above it)")
    keys: list[ApiKeyEntry] = Field(default_factory=list, description="the accepted API keys; none: every call is refused (401)")

    @field_validator("instance_id")
    @classmethod
    def _topic_safe(cls, value: str | None) -> str | None:
        if value is not None and not _INSTANCE_ID.match(value):
            raise ValueError("instance_id becomes part of a topic name: 1 to 100 letters, digits, '.', '_' or '-'")
        return value

    @model_validator(mode="after")
    def _distinct_keys(self) -> GatewaySettings:
        seen: dict[str, int] = {}
        for index, entry in enumerate(self.keys):
            if entry.hash in seen:
                raise ValueError(f"keys[{index}] has the same hash as keys[{seen[entry.hash]}]: one key cannot belong to two entries")
            seen[entry.hash] = index
        return self

    def reply_topic(self, topics: Topics, default_instance: str) -> str:
        """This instance's reply topic; ``default_instance`` (the host name) when no id is set."""
        instance = self.instance_id or re.sub(r"[^A-Za-z0-9._-]", "-", default_instance)[:100] or "gateway"
        return f"{topics.prefix}.gateway.{instance}"
