"""
The mouse service on real FIFOs: report bytes, coalescing of moves while the
device is busy, cancellation, failure and shutdown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import pytest_twisted
from hid_support import PAGE, FifoReader, chunks, fill, mkfifo, sleep
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, gatherResults

from tinypilotd.errors import DeviceUnavailable
from tinypilotd.hid.mouse import Mouse
from tinypilotd.hid.reports import MouseEvent, mouse_report, parse_mouse_event


def move(x: int, y: int, buttons: int = 0) -> MouseEvent:
    return MouseEvent(buttons=buttons, x=x, y=y)


@pytest.fixture
def fifo(tmp_path: Path) -> str:
    return mkfifo(tmp_path, "hidg1")


@pytest.fixture
def reader(fifo: str) -> Iterator[FifoReader]:
    r = FifoReader(fifo)
    yield r
    r.close()


@pytest_twisted.ensureDeferred
async def test_report_bytes(fifo: str, reader: FifoReader) -> None:
    """
    A parsed mouse event goes out as the 7-byte absolute report, before the
    Deferred fires.
    """
    mouse = Mouse(fifo, reactor=reactor)
    mouse.startService()
    await mouse.send(
        parse_mouse_event(
            {"buttons": 1, "relativeX": 0.5, "relativeY": 1.0,
             "verticalWheelDelta": 1, "horizontalWheelDelta": 1}  # fmt: skip
        )
    )
    assert reader.read() == bytes([1, 0x00, 0x40, 0xFF, 0x7F, 0xFF, 0x01])
    await mouse.stopService()


@pytest_twisted.ensureDeferred
async def test_moves_coalesce_while_busy(fifo: str) -> None:
    """
    While a report waits for the device, queued moves collapse into the
    latest position; button changes and wheel reports are kept in order and
    a click stays where it was requested.  Every request completes.
    """
    r = FifoReader(fifo, pipe_size=PAGE)
    fill(fifo, PAGE)
    mouse = Mouse(fifo, write_timeout=2.0, reactor=reactor)
    sent = [
        move(1, 1),  # in flight, waiting for the device
        move(2, 2),
        move(3, 3),  # replaces (2, 2)
        move(3, 3, buttons=1),  # press: kept
        move(4, 4, buttons=1),
        move(5, 5, buttons=1),  # drag: replaces (4, 4)
        MouseEvent(buttons=1, x=5, y=5, wheel=1),  # wheel: kept
        move(6, 6, buttons=1),
        move(6, 6, buttons=0),  # release: kept
        move(7, 7),
        move(8, 8),  # replaces (7, 7)
    ]
    results = [mouse.send(ev) for ev in sent]
    await sleep(0.01)
    r.drain()
    await gatherResults(results)
    assert chunks(r.read()[PAGE:], 7) == [
        mouse_report(ev)
        for ev in [
            move(1, 1),
            move(3, 3),
            move(3, 3, buttons=1),
            move(5, 5, buttons=1),
            MouseEvent(buttons=1, x=5, y=5, wheel=1),
            move(6, 6, buttons=1),
            move(6, 6, buttons=0),
            move(8, 8),
        ]
    ]
    r.close()


@pytest_twisted.ensureDeferred
async def test_no_coalescing_when_idle(fifo: str, reader: FifoReader) -> None:
    """
    Moves sent to a device that keeps up are all written.
    """
    mouse = Mouse(fifo, reactor=reactor)
    for i in range(5):
        await mouse.send(move(i, i))
    assert len(reader.read()) == 5 * 7


@pytest_twisted.ensureDeferred
async def test_cancelled_send_is_still_written(fifo: str) -> None:
    """
    Cancelling a pending send (client disconnect) does not withdraw the
    report: a button release still reaches the target.
    """
    r = FifoReader(fifo, pipe_size=PAGE)
    fill(fifo, PAGE)
    mouse = Mouse(fifo, write_timeout=2.0, reactor=reactor)
    d = mouse.send(move(9, 9, buttons=0))
    d.cancel()
    with pytest.raises(CancelledError):
        await d
    r.drain()
    await mouse.send(move(10, 10))
    assert r.read()[PAGE:] == mouse_report(move(9, 9)) + mouse_report(move(10, 10))
    r.close()


@pytest_twisted.ensureDeferred
async def test_failure_without_reader(fifo: str) -> None:
    """
    No reader: the send fails with DeviceUnavailable naming the path; every
    request coalesced into it fails the same way.
    """
    mouse = Mouse(fifo, reactor=reactor)
    with pytest.raises(DeviceUnavailable) as raised:
        await mouse.send(move(1, 1))
    assert raised.value.path == fifo


@pytest_twisted.ensureDeferred
async def test_stop_releases_buttons_in_place(fifo: str, reader: FifoReader) -> None:
    """
    stopService writes a report with every button up at the last position,
    so a drag in progress ends and the pointer does not jump.
    """
    mouse = Mouse(fifo, reactor=reactor)
    mouse.startService()
    await mouse.send(move(100, 200, buttons=3))
    await mouse.stopService()
    assert chunks(reader.read(), 7) == [
        mouse_report(move(100, 200, buttons=3)),
        mouse_report(move(100, 200, buttons=0)),
    ]


@pytest_twisted.ensureDeferred
async def test_stop_fails_queued_reports(fifo: str) -> None:
    """
    At shutdown, reports still queued behind a busy device fail rather than
    hold up the stop, and the stop itself is bounded by the write timeout.
    """
    r = FifoReader(fifo, pipe_size=PAGE)
    fill(fifo, PAGE)
    mouse = Mouse(fifo, write_timeout=0.1, reactor=reactor)
    mouse.startService()
    first = mouse.send(move(1, 1))
    queued = mouse.send(move(1, 1, buttons=1))
    stopping: Deferred[None] = mouse.stopService()
    with pytest.raises(DeviceUnavailable, match="shutting down"):
        await queued
    with pytest.raises(DeviceUnavailable, match="timed out"):
        await first
    await stopping
    r.close()


@pytest_twisted.ensureDeferred
async def test_failed_button_release_is_retried_until_taken(fifo: str) -> None:
    """
    A button is down on the target and the report releasing it times out
    (the request fails): the release is owed, and written in the background
    as soon as the target reads again, without another request; one log
    line says a button may be down, one that it was released.
    """
    from hid_support import LogCapture, until

    r = FifoReader(fifo, pipe_size=PAGE)
    mouse = Mouse(fifo, write_timeout=0.05, reactor=reactor)
    mouse.startService()
    try:
        await mouse.send(move(100, 200, buttons=1))
        fill(fifo, PAGE - 7)  # the target stops reading; the pipe is full
        with LogCapture() as logs:
            with pytest.raises(DeviceUnavailable):
                await mouse.send(move(100, 200))
            await sleep(0.2)
            assert logs.matching("a button may still be down")
            r.drain()
            release = mouse_report(move(100, 200))
            await until(lambda: bytes(r.data).endswith(release))
            await until(lambda: bool(logs.matching("released the buttons left down")))
        assert bytes(r.data[:7]) == mouse_report(move(100, 200, buttons=1))
        assert len(r.data) == PAGE + 7
    finally:
        await mouse.stopService()
        r.close()


@pytest_twisted.ensureDeferred
async def test_failed_press_owes_nothing(fifo: str) -> None:
    """A failed report that presses (not releases) a button leaves no release owed."""
    from hid_support import LogCapture

    r = FifoReader(fifo, pipe_size=PAGE)
    fill(fifo, PAGE)
    mouse = Mouse(fifo, write_timeout=0.05, reactor=reactor)
    mouse.startService()
    with LogCapture() as logs:
        with pytest.raises(DeviceUnavailable):
            await mouse.send(move(1, 1, buttons=1))
        await sleep(0.2)
    assert not logs.matching("may still be down")
    await mouse.stopService()
    r.close()
