"""
The non-blocking report writer against real FIFOs.

A FIFO reproduces the gadget's failure modes closely enough: no reader is
C{ENXIO} on open (gadget absent), a reader that stops reading fills the pipe
(C{EAGAIN}, a target that does not poll), and a reader that goes away is
C{EPIPE} (treated like C{ESHUTDOWN}, a pulled cable).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import pytest_twisted
from hid_support import PAGE, FifoReader, LogCapture, fill, mkfifo, sleep
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from tinypilotd.errors import DeviceUnavailable
from tinypilotd.hid.writer import ReportWriter, detached

REPORT = bytes(range(8))


def writer(path: str, timeout: float = 0.1) -> ReportWriter:
    return ReportWriter(path, 8, name="keyboard", write_timeout=timeout, reactor=reactor)


async def write(w: ReportWriter, report: bytes = REPORT) -> None:
    await Deferred.fromCoroutine(w.write(report))


@pytest_twisted.ensureDeferred
async def test_writes_whole_reports(tmp_path: Path) -> None:
    """
    Each report arrives whole and in order.
    """
    path = mkfifo(tmp_path, "hidg0")
    reader = FifoReader(path)
    w = writer(path)
    try:
        for i in range(3):
            await write(w, bytes([i]) * 8)
        assert reader.read() == b"\x00" * 8 + b"\x01" * 8 + b"\x02" * 8
    finally:
        w.close()
        reader.close()


@pytest_twisted.ensureDeferred
async def test_eagain_times_out(tmp_path: Path) -> None:
    """
    When nobody reads, the report waits the write timeout, then fails with
    DeviceUnavailable; the reactor keeps running meanwhile (no blocking
    write); the descriptor stays open; one log line for two failures.
    """
    path = mkfifo(tmp_path, "hidg0")
    reader = FifoReader(path, pipe_size=PAGE)
    w = writer(path, timeout=0.15)
    ticks = []
    reactor.callLater(0.05, ticks.append, "tick")
    try:
        with LogCapture() as logs:
            for _ in range(PAGE // 8):
                await write(w)
            start = time.monotonic()
            with pytest.raises(DeviceUnavailable) as raised:
                await write(w)
            elapsed = time.monotonic() - start
            assert 0.14 <= elapsed < 0.5
            assert raised.value.path == path
            assert "timed out after 0.15s" in raised.value.reason
            assert ticks == ["tick"]
            assert w.is_open
            with pytest.raises(DeviceUnavailable):
                await write(w)
        assert len(logs.matching("unreachable")) == 1
        assert "timed out" in logs.lines[0]
    finally:
        w.close()
        reader.close()


@pytest_twisted.ensureDeferred
async def test_eagain_waits_for_writability(tmp_path: Path) -> None:
    """
    A report stuck behind a full pipe goes out as soon as the reader makes
    room, long before the timeout.
    """
    path = mkfifo(tmp_path, "hidg0")
    reader = FifoReader(path, pipe_size=PAGE)
    fill(path, PAGE)
    w = writer(path, timeout=2.0)
    try:
        pending = Deferred.fromCoroutine(w.write(REPORT))
        await sleep(0.02)
        assert not pending.called
        start = time.monotonic()
        reader.read()
        await pending
        assert time.monotonic() - start < 0.1
        assert reader.read()[-8:] == REPORT
    finally:
        w.close()
        reader.close()


@pytest_twisted.ensureDeferred
async def test_enxio_then_recovery(tmp_path: Path) -> None:
    """
    No reader: the write fails at once with ENXIO (no waiting); once a reader
    appears, the next write reopens and succeeds.  One line is logged when
    the device becomes unreachable and one when it comes back.
    """
    path = mkfifo(tmp_path, "hidg0")
    w = writer(path, timeout=1.0)
    with LogCapture() as logs:
        start = time.monotonic()
        for _ in range(3):
            with pytest.raises(DeviceUnavailable) as raised:
                await write(w)
            assert raised.value.reason == "ENXIO on open"
        assert time.monotonic() - start < 0.1
        reader = FifoReader(path)
        try:
            await write(w)
            assert reader.read() == REPORT
        finally:
            w.close()
            reader.close()
    assert len(logs.lines) == 2, logs.lines
    assert "keyboard" in logs.lines[0] and "ENXIO" in logs.lines[0]
    assert "reopened" in logs.lines[0]
    assert "reachable again" in logs.lines[1]


@pytest_twisted.ensureDeferred
async def test_enoent_then_recovery(tmp_path: Path) -> None:
    """
    A missing device node (gadget unbound) fails at once with ENOENT; when it
    reappears the writer opens it on the next request.
    """
    path = str(tmp_path / "hidg0")
    w = writer(path)
    with pytest.raises(DeviceUnavailable) as raised:
        await write(w)
    assert raised.value.reason == "ENOENT on open"
    os.mkfifo(path)
    reader = FifoReader(path)
    try:
        await write(w)
        assert reader.read() == REPORT
    finally:
        w.close()
        reader.close()


@pytest_twisted.ensureDeferred
async def test_epipe_fails_at_once_and_reopens(tmp_path: Path) -> None:
    """
    A reader that goes away (EPIPE, like ESHUTDOWN on a pulled cable) fails
    the write at once and closes the descriptor; a new reader is picked up
    by the next write.
    """
    path = mkfifo(tmp_path, "hidg0")
    reader = FifoReader(path)
    w = writer(path, timeout=1.0)
    try:
        await write(w)
        reader.close()
        start = time.monotonic()
        with pytest.raises(DeviceUnavailable) as raised:
            await write(w)
        assert raised.value.reason == "EPIPE"
        assert time.monotonic() - start < 0.1
        assert not w.is_open
        reader = FifoReader(path)
        await write(w, b"\x07" * 8)
        assert reader.read() == b"\x07" * 8
    finally:
        w.close()
        reader.close()


@pytest_twisted.ensureDeferred
async def test_reader_leaves_while_waiting(tmp_path: Path) -> None:
    """
    A write waiting out EAGAIN when the reader goes away fails promptly with
    EPIPE rather than waiting for its timeout.
    """
    path = mkfifo(tmp_path, "hidg0")
    reader = FifoReader(path, pipe_size=PAGE)
    fill(path, PAGE)
    w = writer(path, timeout=2.0)
    try:
        pending = Deferred.fromCoroutine(w.write(REPORT))
        await sleep(0.02)
        start = time.monotonic()
        reader.close()
        with pytest.raises(DeviceUnavailable) as raised:
            await pending
        assert raised.value.reason == "EPIPE"
        assert time.monotonic() - start < 0.2
    finally:
        w.close()


def test_detached_cancel_does_not_reach_the_work() -> None:
    """
    Cancelling the detached Deferred fails the caller with CancelledError but
    leaves the original running; its later failure is consumed, not logged as
    unhandled.
    """
    from twisted.internet.defer import CancelledError

    inner: Deferred[None] = Deferred()
    outer = detached(inner)
    outer.cancel()
    failures: list[object] = []
    outer.addErrback(failures.append)
    assert failures and failures[0].check(CancelledError)  # type: ignore[attr-defined]
    assert not inner.called
    inner.errback(DeviceUnavailable("/dev/hidg0", "EPIPE"))
    assert inner.result is None
