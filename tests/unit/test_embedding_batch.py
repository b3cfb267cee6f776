"""EmbeddingBatcher: concurrent embedding requests share one backend call, and each gets
back its own vectors, its share of the usage, or the call's failure."""

from __future__ import annotations

import asyncio

import pytest

from turnout.consumers.backend import BackendError, EmbeddingResult, embedding_request_ids
from turnout.consumers.embedding_batch import EmbeddingBatcher, split

FOREVER = 3600.0  # a wait that never ends a batch within a test: only its size can


class FakeSend:
    """Records each call; answers with one vector per text ([position in the call, len(text)])
    and ``tokens`` of usage, or raises ``fail``."""

    def __init__(self, tokens: int = 100, fail: Exception | None = None, hold: asyncio.Event | None = None) -> None:
        self.calls: list[tuple[list[str], int, float]] = []
        self.tokens, self.fail, self.hold = tokens, fail, hold

    async def __call__(self, texts: list[str], tokens: int, budget_s: float) -> EmbeddingResult:
        self.calls.append((texts, tokens, budget_s))
        if self.hold is not None:
            await self.hold.wait()
        if self.fail is not None:
            raise self.fail
        return EmbeddingResult([[float(i), float(len(t))] for i, t in enumerate(texts)], self.tokens, 12.5)


def embed(batcher: EmbeddingBatcher, texts: list[str], tokens: int = 1, budget_s: float = 30.0) -> asyncio.Task[EmbeddingResult]:
    return asyncio.ensure_future(batcher.embed(texts, tokens=tokens, budget_s=budget_s))


async def test_requests_within_the_wait_share_one_call_in_arrival_order():
    send = FakeSend()
    batcher = EmbeddingBatcher(send, max_texts=100, wait_s=0.01)
    first, second, third = embed(batcher, ["a", "bb"], 3), embed(batcher, ["ccc"], 2), embed(batcher, ["dddd", "e"], 4)
    results = await asyncio.wait_for(asyncio.gather(first, second, third), 5)

    assert [c[0] for c in send.calls] == [["a", "bb", "ccc", "dddd", "e"]]
    assert send.calls[0][1] == 9, "the batch's token estimate is the sum of its requests'"
    # each request gets its own vectors, in the order of its own texts
    assert [r.vectors for r in results] == [[[0.0, 1.0], [1.0, 2.0]], [[2.0, 3.0]], [[3.0, 4.0], [4.0, 1.0]]]
    assert all(r.latency_ms == 12.5 for r in results)


async def test_a_full_batch_goes_at_once_without_waiting():
    send = FakeSend()
    batcher = EmbeddingBatcher(send, max_texts=3, wait_s=FOREVER)
    tasks = [embed(batcher, [f"t{i}"]) for i in range(3)]
    await asyncio.wait_for(asyncio.gather(*tasks), 5)  # the wait would be an hour: the size sent it
    assert [c[0] for c in send.calls] == [["t0", "t1", "t2"]]


async def test_the_wait_sends_a_batch_that_never_fills():
    send = FakeSend()
    batcher = EmbeddingBatcher(send, max_texts=64, wait_s=0.01)
    result = await asyncio.wait_for(batcher.embed(["lonely"], tokens=1, budget_s=30), 5)
    assert len(send.calls) == 1 and result.vectors == [[0.0, 6.0]]


async def test_later_requests_open_the_next_batch():
    send = FakeSend()
    batcher = EmbeddingBatcher(send, max_texts=64, wait_s=0)
    await asyncio.gather(embed(batcher, ["a"]), embed(batcher, ["b"]))
    await embed(batcher, ["c"])
    assert [c[0] for c in send.calls] == [["a", "b"], ["c"]]


async def test_a_request_never_splits_across_calls():
    send = FakeSend()
    batcher = EmbeddingBatcher(send, max_texts=4, wait_s=FOREVER)
    first = embed(batcher, ["a", "b", "c"])
    await asyncio.sleep(0)
    second = embed(batcher, ["d", "e"])  # 3 + 2 > 4: the open batch goes first
    await asyncio.sleep(0)
    big = embed(batcher, ["1", "2", "3", "4", "5"])  # more than max_texts: alone, at once
    await asyncio.wait_for(asyncio.gather(first, big), 5)
    assert [c[0] for c in send.calls] == [["a", "b", "c"], ["d", "e"], ["1", "2", "3", "4", "5"]]
    assert (await second).vectors == [[0.0, 1.0], [1.0, 1.0]]


async def test_the_tightest_budget_of_the_batch_is_the_calls():
    send = FakeSend()
    batcher = EmbeddingBatcher(send, max_texts=2, wait_s=FOREVER)
    await asyncio.gather(embed(batcher, ["a"], budget_s=30), embed(batcher, ["b"], budget_s=2.5))
    assert send.calls[0][2] == 2.5


async def test_a_failed_call_fails_every_request_in_the_batch():
    error = BackendError("backend_error", "503 from backend", retryable=True, status=503)
    batcher = EmbeddingBatcher(FakeSend(fail=error), max_texts=3, wait_s=FOREVER)
    results = await asyncio.gather(*[embed(batcher, [t]) for t in "abc"], return_exceptions=True)
    assert all(r is error for r in results)


async def test_a_cancelled_request_is_left_out_of_its_batch():
    send = FakeSend()
    batcher = EmbeddingBatcher(send, max_texts=64, wait_s=0.01)
    gone, kept = embed(batcher, ["gone"]), embed(batcher, ["kept"])
    await asyncio.sleep(0)
    gone.cancel()
    assert (await kept).vectors == [[0.0, 4.0]]
    assert [c[0] for c in send.calls] == [["kept"]]


async def test_a_request_cancelled_during_the_call_does_not_disturb_the_others():
    hold = asyncio.Event()
    send = FakeSend(hold=hold)
    batcher = EmbeddingBatcher(send, max_texts=2, wait_s=FOREVER)
    gone, kept = embed(batcher, ["gone"]), embed(batcher, ["kept"])
    await asyncio.sleep(0.01)
    gone.cancel()
    hold.set()
    assert (await kept).vectors == [[1.0, 4.0]]


async def test_concurrent_calls_overlap():
    hold = asyncio.Event()
    send = FakeSend(hold=hold)
    batcher = EmbeddingBatcher(send, max_texts=1, wait_s=FOREVER)
    tasks = [embed(batcher, [t]) for t in "abc"]
    await asyncio.sleep(0.01)
    assert batcher.calls_in_flight == 3  # batching does not serialize the calls: the deployment's concurrency limits them
    hold.set()
    await asyncio.gather(*tasks)
    assert batcher.calls_in_flight == 0


async def test_each_call_runs_with_the_ids_of_its_requests_in_joining_order():
    """``send`` keeps its signature: the ids reach the backend's ``embed`` through
    ``embedding_request_ids``, set in the batch's own task only."""
    seen: list[tuple[str, ...]] = []
    send = FakeSend()

    async def recording(texts: list[str], tokens: int, budget_s: float) -> EmbeddingResult:
        seen.append(embedding_request_ids.get())
        return await send(texts, tokens, budget_s)

    batcher = EmbeddingBatcher(recording, max_texts=2, wait_s=FOREVER)
    await asyncio.gather(
        batcher.embed(["a"], tokens=1, budget_s=30, request_id="r1"),
        batcher.embed(["b"], tokens=1, budget_s=30, request_id="r2"),
        batcher.embed(["c"], tokens=1, budget_s=30, request_id="r3"),
        batcher.embed(["d"], tokens=1, budget_s=30),
    )
    assert seen == [("r1", "r2"), ("r3",)]
    assert embedding_request_ids.get() == ()


def test_settings_out_of_range_are_refused():
    with pytest.raises(ValueError, match="max_texts must be at least 1"):
        EmbeddingBatcher(FakeSend(), max_texts=0)


# -- usage attribution -----------------------------------------------------------------------
def test_usage_is_shared_by_characters_and_adds_up_exactly():
    result = EmbeddingResult([[0.0]] * 4, 101, 5.0)
    shares = split(result, [["aaaa"], ["aaaa", "aaaa"], ["a"]])  # 4, 8 and 1 of 13 characters
    assert [s.input_tokens for s in shares] == [31, 62, 8]
    assert sum(s.input_tokens for s in shares) == 101
    assert [len(s.vectors) for s in shares] == [1, 2, 1]


@pytest.mark.parametrize("tokens", [0, 1, 2, 7, 1000])
def test_shares_always_add_up_to_the_reported_usage(tokens: int):
    groups = [["x" * n] for n in (1, 3, 3, 10, 2)]
    shares = split(EmbeddingResult([[1.0]] * 5, tokens, 1.0), groups)
    assert sum(s.input_tokens for s in shares) == tokens
    assert all(s.input_tokens >= 0 for s in shares)


def test_a_wrong_number_of_vectors_is_a_malformed_response():
    with pytest.raises(BackendError) as caught:
        split(EmbeddingResult([[1.0]], 3, 1.0), [["a"], ["b"]])
    assert caught.value.code == "malformed_response" and caught.value.retryable
