"""Request ids a caller can compute again: the key to idempotent publishing.

A request published twice with the same id is answered once (the worker remembers the
ids it answered, the analytics sink stores one row per id), so an id derived from what
the request *is* (a job and its line, an order number) makes a retry or a resubmitted
job safe. ``uuid4`` ids (``new_request``'s default) are for requests that have no such
identity.
"""

from __future__ import annotations

import uuid

# A fixed namespace, so that the same parts give the same id on every machine and release.
_NAMESPACE = uuid.UUID("5d0f9a52-7c1e-4c55-9a3e-3f1b7b6f8a11")


def derived_id(*parts: str | int) -> str:
    """A 32-hex-digit id (UUIDv5 over ``parts``), the same for the same parts.

    Parts are joined with a NUL, which no part may contain, so ``("a", "bc")`` and
    ``("ab", "c")`` never collide."""
    if not parts:
        raise ValueError("derived_id needs at least one part")
    texts = [str(part) for part in parts]
    if any("\x00" in text for text in texts):
        raise ValueError("an id part may not contain a NUL character")
    return uuid.uuid5(_NAMESPACE, "\x00".join(texts)).hex


def line_request_id(job_id: str, custom_id: str) -> str:
    """The id of a batch job's line: the job and the line's own id (its ``custom_id``, or
    ``line-<n>`` when it has none), so two jobs with the same custom ids never share one."""
    return derived_id("batch", job_id, custom_id)
