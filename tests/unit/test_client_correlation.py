"""The SDK's pure parts: derived ids, and matching responses to waiters by id."""

from __future__ import annotations

import asyncio

import pytest

from turnout.producers.correlation import Correlator, ResponseTimeout
from turnout.producers.ids import derived_id, line_request_id
from turnout.schemas.models import InferenceResponse


def answer(request_id: str, content: str = "ok") -> InferenceResponse:
    return InferenceResponse(id=request_id, tenant="acme", status="ok", content=content)


def test_derived_ids_are_stable_and_tell_their_parts_apart() -> None:
    assert derived_id("job", 7) == derived_id("job", "7")
    assert len(derived_id("job", 7)) == 32 and int(derived_id("job", 7), 16) >= 0
    assert derived_id("a", "bc") != derived_id("ab", "c")
    assert line_request_id("job-1", "request-1") != line_request_id("job-2", "request-1"), "two jobs never share an id"
    with pytest.raises(ValueError, match="NUL"):
        derived_id("a\x00b")
    with pytest.raises(ValueError, match="at least one part"):
        derived_id()


async def test_a_pending_response_resolves_with_the_first_answer_for_its_id() -> None:
    correlator = Correlator()
    pending = correlator.pending("r1", timeout_s=5)
    assert not correlator.resolve(answer("someone-else"))
    assert correlator.resolve(answer("r1", "first"))
    assert not correlator.resolve(answer("r1", "redelivered")), "a duplicate is ignored"
    assert (await pending).content == "first"


async def test_an_answer_that_arrives_before_the_await_is_kept() -> None:
    correlator = Correlator()
    correlator.expect("r1")  # registered before publishing
    correlator.resolve(answer("r1"))
    assert (await correlator.gather(["r1"], timeout_s=0.01))["r1"].id == "r1"


async def test_a_timeout_names_exactly_the_requests_without_an_answer() -> None:
    correlator = Correlator()
    correlator.expect("answered")
    correlator.resolve(answer("answered"))
    with pytest.raises(ResponseTimeout) as caught:
        await correlator.gather(["answered", "late-1", "late-2"], timeout_s=0.05)
    assert caught.value.missing == ["late-1", "late-2"]
    assert "2 request(s) got no response within 0.05s: late-1, late-2" in str(caught.value)
    correlator.resolve(answer("late-1"))
    correlator.resolve(answer("late-2"))
    assert set(await correlator.gather(["late-1", "late-2"], timeout_s=1)) == {"late-1", "late-2"}, "a later gather still gets them"


async def test_awaiting_a_pending_response_times_out_with_its_id() -> None:
    pending = Correlator().pending("never", timeout_s=0.01)
    with pytest.raises(ResponseTimeout, match="never") as caught:
        await pending
    assert caught.value.missing == ["never"] and isinstance(caught.value, TimeoutError)


def test_a_long_list_of_missing_ids_is_shortened_in_the_message() -> None:
    error = ResponseTimeout([f"r{i}" for i in range(8)], 3)
    assert str(error) == "8 request(s) got no response within 3s: r0, r1, r2, r3, r4 … and 3 more"
    assert len(error.missing) == 8


async def test_many_waiters_resolve_concurrently() -> None:
    correlator = Correlator()
    pendings = [correlator.pending(f"r{i}", timeout_s=5) for i in range(50)]
    for i in reversed(range(50)):
        asyncio.get_running_loop().call_soon(correlator.resolve, answer(f"r{i}", str(i)))
    assert [(await p).content for p in pendings] == [str(i) for i in range(50)]
