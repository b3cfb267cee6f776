"""Which reply topics a request may name: those a producer is known to be able to write to.

Why check: a request may name its own ``reply_topic``. On a cluster that creates topics
on first use (Tansu, Apache Kafka's default) any name will do, but production clusters
usually turn ``auto.create.topics.enable`` off, and then a send to a topic nobody
created waits ``request_timeout_ms`` for its metadata and fails: the worker that served
the request (and paid for its call) stops before committing, and every replica that
replays the request fails the same way. So the router refuses such a request up front,
and a worker refuses one that reached it anyway (a topic deleted after routing, a slip
written by a tool): dead-lettered with ``unknown_reply_topic`` and answered on the shared
responses topic, where a caller can still hear about it.

The check must not cost a round trip per request: names found writable are remembered
(a bounded set; SDK instances each name one), names found missing are remembered for
:data:`MISSING_FOR_S` (so a flood of requests naming one typo asks the broker once in
that time, while a topic created later is accepted soon after). The router collects the
names it has not seen while it routes a batch and asks about them in one request
(``settle``); a worker, serving requests one by one, asks per name (``check``), one
request per name at a time.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

from .models import ErrorInfo

MISSING_FOR_S = 5.0  # how long a topic found missing is refused without asking again
MAX_REMEMBERED = 100_000  # writable names kept (the least recently named are forgotten first)


def unknown_reply_topic(topic: str, shared: str) -> ErrorInfo:
    """The error a request naming an unwritable reply topic is answered with (on ``shared``)."""
    return ErrorInfo(
        code="unknown_reply_topic",
        message=f"reply topic {topic!r} does not exist and the broker does not create topics on first use: "
        f"create it before publishing, or leave reply_topic unset for the shared {shared}",
        details={"reply_topic": topic},
    )


class ReplyTopics:
    """A predicate: ``topics(name)`` is True when ``name`` is known writable; False when it
    is known missing, or unknown (then ``unsure`` holds it, and ``asked_unsure`` counts
    the calls that answered so, until ``settle`` asks)."""

    def __init__(
        self, ask: Callable[[set[str]], Awaitable[set[str]]], known: Iterable[str] = (), clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ask = ask  # which of these topics are writable (``schemas.kafka.writable_topics``)
        self._clock = clock
        self._writable: OrderedDict[str, None] = OrderedDict.fromkeys(known)
        self._missing: dict[str, float] = {}  # name -> when it was found missing
        self._unsure: dict[str, None] = {}  # in the order named
        self._asking: dict[str, asyncio.Task[set[str]]] = {}  # ``check``'s requests in flight, per name
        self.asked_unsure = 0

    @property
    def unsure(self) -> set[str]:
        return set(self._unsure)

    def __call__(self, topic: str) -> bool:
        if topic in self._writable:
            self._writable.move_to_end(topic)
            return True
        found_missing = self._missing.get(topic)
        if found_missing is None or self._clock() - found_missing >= MISSING_FOR_S:
            self._unsure[topic] = None
            self.asked_unsure += 1
        return False

    async def settle(self) -> None:
        """Ask the broker about every name found unknown since the last call, once."""
        asking, self._unsure = list(self._unsure), {}
        if asking:
            self._remember(asking, await self._ask(set(asking)))

    async def check(self, topic: str) -> bool:
        """``self(topic)``, asking the broker first when the name is unknown; callers
        naming the same unknown topic at once share one request."""
        if self(topic):
            return True
        if topic not in self._unsure:
            return False  # found missing a moment ago
        asking = self._asking.get(topic)
        if asking is None:
            asking = self._asking[topic] = asyncio.ensure_future(self._ask({topic}))
            asking.add_done_callback(lambda _: self._asking.pop(topic, None))
        writable = await asyncio.shield(asking)
        self._unsure.pop(topic, None)
        self._remember([topic], writable)
        return topic in writable

    def _remember(self, asked: list[str], writable: set[str]) -> None:
        now = self._clock()
        for topic in asked:
            if topic in writable:
                self._missing.pop(topic, None)
                self._writable[topic] = None
            else:
                self._missing[topic] = now
        while len(self._writable) > MAX_REMEMBERED:
            self._writable.popitem(last=False)
        self._missing = {topic: when for topic, when in self._missing.items() if now - when < MISSING_FOR_S}
