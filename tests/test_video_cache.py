"""
Tests for L{tinypilotd.video.cache}: which frame a screenshot gets, and
waiting for a fresh one, all on a L{Clock}.
"""

from __future__ import annotations

import attrs
import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock

from tinypilotd.video.cache import Frame, FrameCache


def _result(d: Deferred[Frame | None]) -> object:
    out: list[object] = []
    d.addBoth(out.append)
    assert out, "Deferred has not fired"
    return out[0]


def _cache(stale_after: float = 2.0) -> tuple[FrameCache, Clock]:
    clock = Clock()
    clock.advance(1_000_000)
    cache = FrameCache(stale_after=stale_after, clock=clock)
    cache.pipeline_up = True
    return cache, clock


def test_frame_is_a_frozen_value() -> None:
    """
    Frame is immutable and its repr does not dump the JPEG bytes.
    """
    frame = Frame(data=b"x" * 5000, captured_at=1.0, sequence=1, width=2, height=3)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        frame.width = 5  # type: ignore[misc]
    assert "5000 bytes" in repr(frame) and "xxxx" not in repr(frame)


def test_put_stamps_time_and_sequence() -> None:
    """
    put() stamps each frame with the clock's time and a sequence number
    that increases by one per frame, across a pipeline restart.
    """
    cache, clock = _cache()
    first = cache.put(b"a", 640, 480)
    clock.advance(0.5)
    second = cache.put(b"b", 640, 480)
    assert (first.sequence, second.sequence) == (1, 2)
    assert second.captured_at - first.captured_at == 0.5
    assert (second.data, second.width, second.height) == (b"b", 640, 480)
    cache.pipeline_up = False
    cache.pipeline_up = True
    assert cache.put(b"c", 1, 1).sequence == 3


def test_screenshot_serves_the_newest_frame_until_stale() -> None:
    """
    screenshot() answers the newest frame while it is at most stale_after
    seconds old, and None afterwards.
    """
    cache, clock = _cache(stale_after=2.0)
    assert _result(cache.screenshot()) is None
    cache.put(b"old", 1, 1)
    frame = cache.put(b"new", 1, 1)
    assert _result(cache.screenshot()) is frame
    clock.advance(2.0)
    assert _result(cache.screenshot()) is frame
    clock.advance(0.01)
    assert _result(cache.screenshot()) is None


def test_pipeline_down_means_no_frame() -> None:
    """
    While the pipeline is down there is no screenshot, and the last frame
    of the old pipeline is not served once it comes back up.
    """
    cache, clock = _cache()
    cache.put(b"x", 1, 1)
    cache.pipeline_up = False
    assert _result(cache.screenshot()) is None
    assert _result(cache.screenshot(fresh=True)) is None
    cache.pipeline_up = True
    assert _result(cache.screenshot()) is None
    assert cache.latest is None


def test_fresh_waits_for_the_next_frame() -> None:
    """
    screenshot(fresh=True) does not answer the frame already there; it
    answers the next frame put, and leaves nothing scheduled behind.
    """
    cache, clock = _cache()
    cache.put(b"before", 1, 1)
    d = cache.screenshot(fresh=True)
    clock.advance(0.3)
    assert not d.called
    frame = cache.put(b"after", 1, 1)
    assert _result(d) is frame
    assert cache.waiting == 0
    assert clock.getDelayedCalls() == []


def test_fresh_times_out_to_the_plain_answer() -> None:
    """
    With no new frame within one second, screenshot(fresh=True) answers as
    screenshot() would: the newest frame if it is not stale, else None.
    """
    cache, clock = _cache(stale_after=2.0)
    frame = cache.put(b"x", 1, 1)
    d = cache.screenshot(fresh=True)
    clock.advance(0.999)
    assert not d.called
    clock.advance(0.001)
    assert _result(d) is frame
    assert cache.waiting == 0

    clock.advance(1.5)
    d = cache.screenshot(fresh=True)
    clock.advance(1.0)
    assert _result(d) is None


def test_fresh_cancelled_by_a_client_that_left() -> None:
    """
    Cancelling a fresh wait (the HTTP client disconnected) fails that
    Deferred with CancelledError, removes the waiter and its timeout, and
    does not disturb other waiters.
    """
    cache, clock = _cache()
    gone = cache.screenshot(fresh=True)
    staying = cache.screenshot(fresh=True)
    assert cache.waiting == 2
    gone.cancel()
    assert cache.waiting == 1
    assert len(clock.getDelayedCalls()) == 1
    failure = _result(gone)
    assert failure.check(CancelledError)  # type: ignore[attr-defined]
    frame = cache.put(b"x", 1, 1)
    assert _result(staying) is frame
    assert clock.getDelayedCalls() == []


def test_pipeline_down_answers_waiters() -> None:
    """
    When the pipeline goes down, everyone waiting for a fresh frame gets
    None at once instead of waiting out the second.
    """
    cache, clock = _cache()
    d = cache.screenshot(fresh=True)
    cache.pipeline_up = False
    assert _result(d) is None
    assert cache.waiting == 0
    assert clock.getDelayedCalls() == []


def test_many_waiters_time_out_without_leaking() -> None:
    """
    A thousand fresh waits that time out leave no waiter and no delayed
    call behind.
    """
    cache, clock = _cache()
    ds = [cache.screenshot(fresh=True) for _ in range(1000)]
    clock.advance(1.0)
    assert all(_result(d) is None for d in ds)
    assert cache.waiting == 0
    assert clock.getDelayedCalls() == []
