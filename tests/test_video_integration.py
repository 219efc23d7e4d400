"""
Integration tests for the capture pipeline: real ffmpeg children under the
real reactor, frames checked by decoding them with Pillow.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from PIL import Image
from twisted.internet import reactor
from twisted.internet.task import deferLater

from tinypilotd.video.cache import FrameCache
from tinypilotd.video.capture import CaptureService

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg"),
]

FFMPEG = ["ffmpeg", "-hide_banner", "-nostats", "-loglevel", "error"]
PATTERN = ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=10"]
MJPEG_OUT = ["-f", "mjpeg", "-q:v", "5", "-"]


def _sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def _ffmpeg_line(*middle: str) -> str:
    return " ".join([*FFMPEG, "-re", *PATTERN, *middle, *MJPEG_OUT])


async def _until(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {condition}")
        await deferLater(reactor, 0.02)
    return result


def _decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest_twisted.ensureDeferred
async def test_test_pattern_frames() -> None:
    """
    A real ffmpeg test-pattern child fills the cache with decodable
    320x240 JPEGs whose sequence numbers increase; a fresh screenshot is
    one captured after the request; stopping the service ends the child.
    """
    cache = FrameCache(stale_after=2.0)
    argv = [*FFMPEG, "-re", *PATTERN, *MJPEG_OUT]
    service = CaptureService(argv, cache, kill_grace=2.0)
    service.startService()
    try:
        first = await _until(cache.current)
        im = _decode(first.data)
        assert im.format == "JPEG" and im.size == (320, 240)
        assert (first.width, first.height) == (320, 240)
        asked_at = reactor.seconds()
        fresh = await cache.screenshot(fresh=True)
        assert fresh is not None
        assert fresh.sequence > first.sequence
        assert fresh.captured_at >= asked_at
        assert _decode(fresh.data).size == (320, 240)
        pid = service._child.transport.pid  # type: ignore[union-attr]
    finally:
        await service.stopService()
    assert not _alive(pid)
    assert not cache.pipeline_up
    assert await cache.screenshot() is None


@pytest_twisted.ensureDeferred
async def test_crashing_child_is_restarted() -> None:
    """
    A child that writes five frames and exits with status 1 leaves the
    pipeline down (no screenshot) until the supervisor restarts it after
    min_restart_delay; then frames flow again with higher sequence numbers.
    """
    cache = FrameCache(stale_after=2.0)
    argv = _sh(_ffmpeg_line("-frames:v", "5") + "; exit 1")
    service = CaptureService(argv, cache, min_restart_delay=0.5, stable_run=60.0)
    service.startService()
    try:
        await _until(cache.current)
        await _until(lambda: not cache.pipeline_up)
        last_before = 5
        assert await cache.screenshot() is None
        assert await cache.screenshot(fresh=True) is None
        down_at = time.monotonic()
        frame = await _until(cache.current)
        assert time.monotonic() - down_at >= 0.4
        assert frame.sequence > last_before
        assert _decode(frame.data).size == (320, 240)
        assert service.restarts >= 1
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_stalled_child_goes_stale() -> None:
    """
    A child that writes a few frames and then stays alive without writing
    any more is still "up", but after stale_after seconds the screenshot is
    None; stopping it with SIGTERM works.
    """
    cache = FrameCache(stale_after=0.5)
    argv = _sh(_ffmpeg_line("-frames:v", "3") + "; exec sleep 30")
    service = CaptureService(argv, cache)
    service.startService()
    try:
        frame = await _until(cache.current)
        assert _decode(frame.data).size == (320, 240)
        await _until(lambda: cache.latest is not None and cache.latest.sequence == 3)
        stalled_at = cache.latest.captured_at  # type: ignore[union-attr]
        await _until(lambda: cache.current() is None)
        assert reactor.seconds() - stalled_at >= 0.5
        assert cache.pipeline_up
        assert await cache.screenshot() is None
        assert await cache.screenshot(fresh=True) is None
    finally:
        started = time.monotonic()
        await service.stopService()
    assert time.monotonic() - started < 1.5  # sleep dies of SIGTERM, no SIGKILL needed


@pytest_twisted.ensureDeferred
async def test_missing_command_keeps_retrying() -> None:
    """
    A command that is not installed is reported and retried with a growing
    delay; the pipeline stays down and stopping is immediate.
    """
    cache = FrameCache()
    service = CaptureService(
        ["tinypilotd-no-such-capture-command"], cache, min_restart_delay=0.1
    )
    service.startService()
    try:
        await _until(lambda: service.restarts >= 3)
        assert service.delay >= 0.8
        assert not cache.pipeline_up
    finally:
        await service.stopService()
