"""API keys: made with 256 random bits, stored as their SHA-256 digest, each one a tenant.

A caller is whoever holds a key listed in ``[gateway] keys``; the tenant of its requests
is the key's, never a field of the request, so no caller can act as another tenant.
Every stored digest is compared with ``hmac.compare_digest`` and the loop never stops at
a match, so the time a lookup takes says nothing about which digests exist.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from turnout.schemas.gateway_config import KEY_HASH_SCHEME, ApiKeyEntry

KEY_PREFIX = "tnt-"  # recognisable by secret scanners and by people who find one in a log
KEY_BYTES = 32


@dataclass(frozen=True)
class Caller:
    """Who made a call: the tenant its requests act as, and the key's name for logs."""

    tenant: str
    key_name: str


def new_key() -> str:
    """A fresh API key: the prefix and 32 random bytes, URL-safe base64 (43 characters)."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def key_hash(key: str) -> str:
    """What the configuration stores for ``key``: ``sha256:<hex digest>``."""
    return f"{KEY_HASH_SCHEME}:{hashlib.sha256(key.encode('utf-8')).hexdigest()}"


def config_snippet(key: str, tenant: str, name: str) -> str:
    """The TOML to add to the configuration for ``key`` (its digest, not the key)."""
    return f'[[gateway.keys]]\nhash = "{key_hash(key)}"\ntenant = {_toml_string(tenant)}\nname = {_toml_string(name)}\n'


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def bearer_token(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header; ``None`` when absent or of another scheme."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class KeyRing:
    """The accepted keys, by digest; ``caller(key)`` says who holds ``key``, or ``None``."""

    def __init__(self, entries: Sequence[ApiKeyEntry]) -> None:
        self._entries = [(bytes.fromhex(entry.hash.partition(":")[2]), Caller(entry.tenant, entry.name)) for entry in entries]

    def __len__(self) -> int:
        return len(self._entries)

    def caller(self, key: str) -> Caller | None:
        digest = hashlib.sha256(key.encode("utf-8", "replace")).digest()  # a header that is no UTF-8 matches no key
        found = None
        for stored, caller in self._entries:  # no early exit: every lookup compares every digest
            if hmac.compare_digest(stored, digest):
                found = caller
        return found
