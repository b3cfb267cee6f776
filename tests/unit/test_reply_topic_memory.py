"""schemas/reply_topics.py: which reply topics the router and the workers accept, asking the broker
once per batch about names it has not seen, and not again for a while about a missing one."""

from __future__ import annotations

from turnout.schemas.reply_topics import MAX_REMEMBERED, MISSING_FOR_S, ReplyTopics


class Broker:
    """The ``ask`` of a cluster holding ``existing`` topics and creating none."""

    def __init__(self, existing: set[str]) -> None:
        self.existing = existing
        self.asked: list[set[str]] = []

    async def __call__(self, topics: set[str]) -> set[str]:
        self.asked.append(set(topics))
        return topics & self.existing


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_known_topics_pass_without_asking() -> None:
    broker = Broker(set())
    topics = ReplyTopics(broker, known=["t.responses"])
    assert topics("t.responses") and topics.unsure == set() and topics.asked_unsure == 0
    await topics.settle()
    assert broker.asked == []  # nothing unsure: no request at all


async def test_unseen_names_are_asked_about_together_once_then_remembered() -> None:
    broker = Broker({"made-by-client"})
    topics = ReplyTopics(broker)
    assert not topics("made-by-client") and not topics("typo") and not topics("typo")
    assert topics.unsure == {"made-by-client", "typo"} and topics.asked_unsure == 3  # three requests to route again
    await topics.settle()
    assert broker.asked == [{"made-by-client", "typo"}]  # one request for the batch
    assert topics("made-by-client") and not topics("typo")
    assert topics.unsure == set() and topics.asked_unsure == 3  # both answered from memory now


async def test_a_missing_topic_is_asked_about_again_after_a_while() -> None:
    broker, clock = Broker(set()), Clock()
    topics = ReplyTopics(broker, clock=clock)
    topics("later")
    await topics.settle()
    clock.now += MISSING_FOR_S - 0.1
    assert not topics("later") and topics.unsure == set()  # still refused from memory
    broker.existing.add("later")  # its owner creates it
    clock.now += 0.2
    assert not topics("later") and topics.unsure == {"later"}  # unsure again: its requests wait for the answer
    await topics.settle()
    assert topics("later")


async def test_the_writable_names_remembered_are_bounded_forgetting_the_least_recently_named() -> None:
    names = [f"client-{i:06d}" for i in range(MAX_REMEMBERED + 5)]
    topics = ReplyTopics(Broker(set(names)), known=["t.responses"])
    for name in names:
        topics(name)
    await topics.settle()
    forgotten = [name for name in ["t.responses", *names] if not topics(name)]
    assert forgotten == ["t.responses", *names[:5]]  # the oldest go first


async def test_a_worker_checks_one_name_at_a_time_and_callers_of_the_same_name_share_the_request() -> None:
    import asyncio

    gate = asyncio.Event()

    class SlowBroker(Broker):
        async def __call__(self, topics: set[str]) -> set[str]:
            await gate.wait()
            return await super().__call__(topics)

    broker = SlowBroker({"acme.replies"})
    topics = ReplyTopics(broker, known=["t.responses"])
    assert await topics.check("t.responses")  # known: no request
    waiting = [asyncio.create_task(topics.check("acme.replies")) for _ in range(3)] + [asyncio.create_task(topics.check("typo"))]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiting) == [True, True, True, False]
    assert sorted(map(sorted, broker.asked)) == [["acme.replies"], ["typo"]]  # one request per name
    assert await topics.check("acme.replies") and not await topics.check("typo")
    assert len(broker.asked) == 2  # both answered from memory now
