"""An exact-match response cache: the same question to the same deployment, answered once.

Pipelines resend identical prompts (reruns of a batch job, retries upstream, many users
asking a service the same thing); each cache hit saves a backend call, its latency and
its cost. The key is the SHA-256 of a canonical JSON of every request field that can
change the answer, plus the deployment that answers, plus the **tenant**: one tenant
must never receive an answer computed for another's prompt (the prompt may be the same
text, the policy, the billing and the data ownership are not).

In the key: tenant, deployment id, each message's role, content, name and images (in
order), ``max_tokens``, ``temperature``, ``stop``, ``tools``, ``response_schema``, and the
texts of an embedding request's ``input`` (in order, exactly as sent: a vector depends
on every character, trailing whitespace included). Not in
the key: ``id``, ``created_at``, ``deadline``, ``reply_topic`` and ``metadata`` (the
caller's bookkeeping, never sent to a backend), ``model`` (a routing hint; the deployment
that answers is keyed) and ``cache`` (it says whether to use the cache, not what to answer).

``normalize`` makes requests that mean the same thing to every backend share a key, and
touches nothing else:
- trailing whitespace at the end of each message's content is removed (a chat template
  ends the turn right there, and Anthropic even refuses a final assistant turn ending
  in whitespace); leading and inner whitespace, line endings, letter case and Unicode
  forms are kept, since code, whitespace-sensitive formats and questions about the text
  itself depend on them;
- ``tools`` and ``response_schema`` are re-serialized without insignificant whitespace,
  key order kept (OpenAI's structured outputs emit properties in the schema's order);
  an empty string is the same as none, as the backends treat it;
- ``stop`` is sorted and deduplicated: it is a set of sequences;
- ``temperature`` is a float (0 and 0.0 are one value); ``None`` stays apart from 0,
  since ``None`` means the provider's default, which is often 1.

Only complete, successful answers are stored (``cacheable``): never errors, truncated
answers, answers that failed validation, shadow copies or answers that were themselves
cache hits; an embedding answer is complete when it carries its vectors. By default only requests with ``temperature`` unset or 0 are served from the
cache: a caller who asks for sampling (temperature > 0) usually wants a fresh draw each
time (variations, self-consistency votes), and a cache would hand back one frozen
sample; ``cache_sampled`` turns that on for fleets that prefer the saving. A request with
``cache=False`` is neither served from nor stored in the cache.

Entries live ``ttl_s`` from when they were stored (a hit does not extend it: answers
age) and the least recently used is evicted beyond ``max_entries``. Pure logic with an
injectable clock; one cache per worker process.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar


from turnout.schemas.models import InferenceRequest, InferenceResponse, RoutedRequest
from turnout.schemas.worker_config import CacheConfig

V = TypeVar("V")

KEY_VERSION = 2
"""Part of every key: bump it when ``normalize`` changes, so old entries stop matching."""


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    evictions: int
    expirations: int
    size: int


def normalize(request: InferenceRequest) -> dict[str, Any]:
    """The request fields that can change the answer, in canonical form (see the module doc)."""
    return {
        "messages": [
            {"role": m.role, "content": m.content.rstrip(), "name": m.name, "images": list(m.images)} for m in request.messages
        ],
        "max_tokens": request.max_tokens,
        "temperature": None if request.temperature is None else float(request.temperature),
        "stop": sorted(set(request.stop)),
        "tools": _compact_json(request.tools),
        "response_schema": _compact_json(request.response_schema),
        "input": None if request.input is None else list(request.input),
    }


def cache_key(request: InferenceRequest, deployment: str) -> str:
    """SHA-256 (hex) of the tenant, the deployment and the normalized request."""
    keyed = {"v": KEY_VERSION, "tenant": request.tenant, "deployment": deployment, "request": normalize(request)}
    canonical = json.dumps(keyed, sort_keys=True, separators=(",", ":"))  # ASCII: any str encodes, lone surrogates too
    return hashlib.sha256(canonical.encode()).hexdigest()


def request_cacheable(request: InferenceRequest, config: CacheConfig | None = None) -> bool:
    """Whether the cache may answer this request (and later store its answer)."""
    config = config or CacheConfig()
    return request.cache and (config.cache_sampled or not request.temperature)


def cacheable(slip: RoutedRequest, response: InferenceResponse, config: CacheConfig | None = None) -> bool:
    """Whether ``response`` may be stored as the answer to ``slip``'s request."""
    return (
        request_cacheable(slip.request, config)
        and not slip.shadow
        and response.status == "ok"
        and (bool(response.embeddings) or (response.finish_reason == "stop" and response.content is not None))
        and not response.cache_hit
        and response.validation != "failed"
    )


class ResponseCache(Generic[V]):
    """A TTL'd LRU map from ``cache_key`` to a cached answer, with hit/miss counters."""

    def __init__(self, config: CacheConfig | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config or CacheConfig()
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._hits = self._misses = self._evictions = self._expirations = 0

    def get(self, key: str) -> V | None:
        entry = self._entries.get(key)
        if entry is not None and entry[0] <= self._clock():
            del self._entries[key]
            self._expirations += 1
            entry = None
        if entry is None:
            self._misses += 1
            return None
        self._entries.move_to_end(key)
        self._hits += 1
        return entry[1]

    def put(self, key: str, value: V) -> None:
        now = self._clock()
        self._entries[key] = (now + self.config.ttl_s, value)
        self._entries.move_to_end(key)
        self._drop_expired_lru(now)
        while len(self._entries) > self.config.max_entries:
            self._entries.popitem(last=False)
            self._evictions += 1

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def stats(self) -> CacheStats:
        return CacheStats(self._hits, self._misses, self._evictions, self._expirations, len(self._entries))

    def _drop_expired_lru(self, now: float) -> None:
        """Expired entries at the cold end go first, so they never push out live ones there."""
        while self._entries:
            key, (expires_at, _) = next(iter(self._entries.items()))
            if expires_at > now:
                return
            del self._entries[key]
            self._expirations += 1


def _compact_json(text: str | None) -> str | None:
    """JSON text without insignificant whitespace, key order kept; text that is not JSON
    is kept as it is (such a request fails, and a failure is never cached)."""
    if not text:
        return None
    try:
        return json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))
    except ValueError:
        return text
