"""
The keyboard service on real FIFOs: bytes on the wire, ordering under
concurrency, cancellation, stuck keys, Caps Lock and pacing.
"""

from __future__ import annotations

import os
import time
import tty
from pathlib import Path
from typing import Iterator

import attrs
import pytest
import pytest_twisted
from hid_support import (
    PAGE,
    UP,
    FifoReader,
    LogCapture,
    chunks,
    fill,
    key,
    mkfifo,
    sleep,
    until,
)
from twisted.internet import reactor
from twisted.internet.defer import CancelledError
from twisted.internet.testing import MemoryReactorClock

from tinypilotd.errors import DeviceUnavailable
from tinypilotd.hid.keyboard import Keyboard
from tinypilotd.hid.reports import Keystroke, parse_keystroke
from tinypilotd.paste.layouts import KeyPress, PasteRequest

LSHIFT = 0x02


@attrs.frozen
class FakeLayout:
    """
    Letters type as on en-US (caps-sensitive, Shift for capitals); "^" is a
    dead key followed by Space, as on de-DE; "é" is one press that Caps Lock
    turns into "É" whatever Shift does, as on fr-FR.
    """

    tag: str = "xx-TEST"
    caps_lock_breaks: frozenset[str] = frozenset({"é"})

    def presses(self, char: str) -> tuple[KeyPress, ...]:
        if char == "é":
            return (KeyPress(0x1F, 0, False),)
        if char == "^":
            return (KeyPress(0x35, 0, False), KeyPress(0x2C, 0, False))
        if char == "1":
            return (KeyPress(0x1E, 0, False),)
        if char.isascii() and char.isalpha():
            shift = LSHIFT if char.isupper() else 0
            return (KeyPress(0x04 + ord(char.lower()) - ord("a"), shift, True),)
        raise KeyError(char)


def paste(text: str) -> PasteRequest:
    return PasteRequest(text=text, layout=FakeLayout())  # type: ignore[arg-type]


def letter(char: str) -> int:
    return 0x04 + ord(char.lower()) - ord("a")


@pytest.fixture
def fifo(tmp_path: Path) -> str:
    return mkfifo(tmp_path, "hidg0")


@pytest.fixture
def reader(fifo: str) -> Iterator[FifoReader]:
    r = FifoReader(fifo)
    yield r
    r.close()


@pytest.fixture
def small_reader(fifo: str) -> Iterator[FifoReader]:
    """
    A reader whose pipe holds one page (512 keyboard reports).
    """
    r = FifoReader(fifo, pipe_size=PAGE)
    yield r
    r.close()


async def stopped(kb: Keyboard) -> None:
    await kb.stopService()


# -- bytes on the wire ---------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_keystroke_bytes(fifo: str, reader: FifoReader) -> None:
    """
    A keystroke is its press report then the all-zero release, both written
    before the Deferred fires.
    """
    kb = Keyboard(fifo, reactor=reactor)
    kb.startService()
    await kb.keystroke(parse_keystroke({"code": "KeyH", "shiftLeft": True}))
    await kb.keystroke(parse_keystroke({"code": "Delete", "ctrlLeft": True,
                                        "altRight": True}))  # fmt: skip
    assert reader.read() == key(0x02, 0x0B) + UP + key(0x41, 0x4C) + UP
    await kb.stopService()


@pytest_twisted.ensureDeferred
async def test_modifier_key_held_until_next_keystroke(
    fifo: str, reader: FifoReader
) -> None:
    """
    A modifier-key keystroke presses its bit with usage 0 and holds it; held
    modifiers accumulate; the next ordinary keystroke carries them in its
    press and its release lets go of everything.
    """
    kb = Keyboard(fifo, reactor=reactor)
    await kb.keystroke(parse_keystroke({"code": "ShiftLeft"}))
    assert reader.read() == key(0x02, 0)
    await kb.keystroke(parse_keystroke({"code": "ControlRight"}))
    await kb.keystroke(parse_keystroke({"code": "KeyA", "altLeft": True}))
    await kb.keystroke(parse_keystroke({"code": "KeyB"}))
    assert chunks(reader.read(), 8) == [
        key(0x02, 0),
        key(0x12, 0),
        key(0x16, 0x04),
        UP,
        key(0, 0x05),
        UP,
    ]
    await kb.stopService()


@pytest_twisted.ensureDeferred
async def test_stop_releases_held_modifier(fifo: str, reader: FifoReader) -> None:
    """
    A modifier still held at shutdown is released by stopService.
    """
    kb = Keyboard(fifo, reactor=reactor)
    kb.startService()
    await kb.keystroke(parse_keystroke({"code": "MetaLeft"}))
    await kb.stopService()
    assert reader.read() == key(0x08, 0) + UP


@pytest_twisted.ensureDeferred
async def test_stop_writes_release(fifo: str, reader: FifoReader) -> None:
    """
    stopService always writes an all-zero report, whatever a previous run may
    have left down on the target.
    """
    kb = Keyboard(fifo, reactor=reactor)
    kb.startService()
    await kb.stopService()
    assert reader.read() == UP


@pytest_twisted.ensureDeferred
async def test_stop_is_bounded_without_reader(fifo: str) -> None:
    """
    With the device full and unread, stopService gives up after the write
    timeout rather than hanging shutdown.
    """
    r = FifoReader(fifo, pipe_size=PAGE)
    fill(fifo, PAGE)
    kb = Keyboard(fifo, write_timeout=0.1, reactor=reactor)
    kb.startService()
    start = time.monotonic()
    with LogCapture() as logs:
        await kb.stopService()
    assert time.monotonic() - start < 0.5
    assert logs.matching("could not release keys at shutdown")
    r.close()


@pytest_twisted.ensureDeferred
async def test_held_modifier_released_before_paste(
    fifo: str, reader: FifoReader
) -> None:
    """
    A paste does not type under a modifier held by an earlier keystroke: the
    held bits are released first.
    """
    kb = Keyboard(fifo, reactor=reactor)
    await kb.keystroke(parse_keystroke({"code": "ShiftLeft"}))
    kb.paste(paste("ab"))
    await until(lambda: len(reader.read()) == 6 * 8)
    assert chunks(reader.read(), 8) == [
        key(0x02, 0), UP, key(0, 0x04), UP, key(0, 0x05), UP,
    ]  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_paste_bytes_and_dead_keys(fifo: str, reader: FifoReader) -> None:
    """
    Each character's presses come from the layout, each followed by a
    release; a dead-key character is its two presses.
    """
    kb = Keyboard(fifo, reactor=reactor)
    with LogCapture() as logs:
        kb.paste(paste("aB^"))
        await until(lambda: len(reader.read()) == 8 * 8)
    assert chunks(reader.read(), 8) == [
        key(0, 0x04), UP, key(LSHIFT, 0x05), UP,
        key(0, 0x35), UP, key(0, 0x2C), UP,
    ]  # fmt: skip
    assert logs.matching("pasted 3 characters (xx-TEST)")


# -- ordering under concurrency ------------------------------------------------


def _decode(stream: bytes) -> list[tuple[str, object]]:
    """
    Split the wire into ("ks", number) and ("char", text) events, asserting
    that every press is immediately followed by its release and that a
    dead-key character's two presses are adjacent.
    """
    reports = chunks(stream, 8)
    events: list[tuple[str, object]] = []
    i = 0
    while i < len(reports):
        press, release = reports[i], reports[i + 1]
        assert release == UP, f"report {i + 1} should be a release: {release!r}"
        modifiers, usage = press[0], press[2]
        i += 2
        if 0x3A <= usage <= 0x45 or 0x68 <= usage <= 0x73:
            n = usage - 0x3A if usage <= 0x45 else usage - 0x68 + 12
            events.append(("ks", n + (24 if modifiers == 0x10 else 0)))
        elif usage == 0x35:
            assert reports[i] == key(0, 0x2C) and reports[i + 1] == UP, (
                f"dead key at {i - 2} not followed by Space"
            )
            i += 2
            events.append(("char", "^"))
        else:
            char = chr(ord("a") + usage - 0x04)
            events.append(("char", char.upper() if modifiers == LSHIFT else char))
    return events


def _fkey(n: int) -> Keystroke:
    code = f"F{n % 24 + 1}"
    return parse_keystroke({"code": code, "ctrlRight": n >= 24})


@pytest_twisted.ensureDeferred
async def test_concurrent_keystrokes_and_pastes(
    fifo: str, small_reader: FifoReader
) -> None:
    """
    Many keystrokes arriving while two pastes are typed into a small pipe:
    every press is followed directly by its release; keystrokes keep their
    order; the two pastes come out whole and one after the other; keystrokes
    that arrive mid-paste go between two characters (never inside a
    dead-key character), not after the whole paste.
    """
    small_reader.drain()
    kb = Keyboard(fifo, write_timeout=2.0, reactor=reactor)
    kb.startService()
    first = ("abcdefghijklmnopqrstuvwxyz^" * 40)[:1000]
    second = ("ZYX^wvu" * 100)[:600]
    done = []
    with LogCapture() as logs:
        kb.paste(paste(first))
        kb.paste(paste(second))
        for n in range(48):
            kb.keystroke(_fkey(n)).addCallback(lambda _, n=n: done.append(n))
            if n % 3 == 0:
                await sleep(0)
        await until(lambda: logs.matching("pasted 600 characters"), timeout=5)
    await kb.stopService()
    stream = small_reader.read()
    assert stream.endswith(UP + UP), "stopService wrote its release last"
    events = _decode(stream[:-8])
    assert done == list(range(48))
    assert [n for kind, n in events if kind == "ks"] == list(range(48))
    typed = "".join(str(c) for kind, c in events if kind == "char")
    assert typed == first + second
    positions = []
    chars = 0
    for kind, _ in events:
        if kind == "char":
            chars += 1
        else:
            positions.append(chars)
    assert any(0 < p < len(first) for p in positions), positions


@pytest_twisted.ensureDeferred
async def test_keystroke_waits_for_the_character_in_flight(fifo: str) -> None:
    """
    A keystroke that arrives while a dead-key character is half written (its
    first press went out, the device is full) is written only after the
    character's last release, then the paste goes on.
    """
    r = FifoReader(fifo, pipe_size=PAGE)
    fill(fifo, PAGE - 8)
    kb = Keyboard(fifo, write_timeout=2.0, reactor=reactor)
    kb.paste(paste("^a"))
    await sleep(0.01)
    assert r.read()[PAGE - 8 :] == key(0, 0x35)
    done = kb.keystroke(parse_keystroke({"code": "Escape"}))
    await sleep(0.01)
    r.drain()
    await done
    await until(lambda: len(r.data) == PAGE - 8 + 8 * 8)
    assert chunks(bytes(r.data[PAGE - 8 :]), 8) == [
        key(0, 0x35), UP, key(0, 0x2C), UP,
        key(0, 0x29), UP,
        key(0, 0x04), UP,
    ]  # fmt: skip
    r.close()


@pytest_twisted.ensureDeferred
async def test_cancelled_keystroke_is_still_written(fifo: str) -> None:
    """
    Cancelling the Deferred of a keystroke stuck behind a full device (a
    client disconnecting) detaches the caller only: press and release still
    go out, adjacent, once the device takes reports again.
    """
    r = FifoReader(fifo, pipe_size=PAGE)
    fill(fifo, PAGE)
    kb = Keyboard(fifo, write_timeout=2.0, reactor=reactor)
    d = kb.keystroke(parse_keystroke({"code": "KeyQ"}))
    later = kb.keystroke(parse_keystroke({"code": "KeyW"}))
    await sleep(0.02)
    d.cancel()
    with pytest.raises(CancelledError):
        await d
    r.read()
    await later
    assert r.read()[PAGE:] == key(0, 0x14) + UP + key(0, 0x1A) + UP
    r.close()


# -- failures --------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_keystroke_fails_without_reader(fifo: str) -> None:
    """
    No reader (no target): the keystroke fails at once with the device path.
    """
    kb = Keyboard(fifo, write_timeout=1.0, reactor=reactor)
    start = time.monotonic()
    with pytest.raises(DeviceUnavailable) as raised:
        await kb.keystroke(parse_keystroke({"code": "KeyA"}))
    assert raised.value.path == fifo
    assert time.monotonic() - start < 0.1


@pytest_twisted.ensureDeferred
async def test_stuck_key_released_when_device_returns(fifo: str) -> None:
    """
    When the press went out but the release did not, the keystroke fails and
    the release is owed: it is written, before anything else, as soon as the
    device takes reports again, without waiting for another request.
    """
    r = FifoReader(fifo, pipe_size=PAGE)
    fill(fifo, PAGE - 8)
    kb = Keyboard(fifo, write_timeout=0.1, reactor=reactor)
    kb.startService()
    with LogCapture() as logs:
        with pytest.raises(DeviceUnavailable):
            await kb.keystroke(parse_keystroke({"code": "KeyA"}))
        assert r.read()[-8:] == key(0, 0x04)
        await until(lambda: r.read()[-8:] == UP)
        assert bytes(r.data[PAGE - 8 :]) == key(0, 0x04) + UP
        await kb.keystroke(parse_keystroke({"code": "KeyB"}))
        assert r.read()[PAGE - 8 :] == key(0, 0x04) + UP + key(0, 0x05) + UP
    assert logs.matching("may still be down")
    assert logs.matching("released the keys left down")
    await kb.stopService()
    r.close()


@pytest_twisted.ensureDeferred
async def test_owed_release_goes_before_next_keystroke(fifo: str) -> None:
    """
    A keystroke queued while a release is owed gets the release first, then
    its own press and release.
    """
    r = FifoReader(fifo, pipe_size=PAGE)
    fill(fifo, PAGE - 8)
    kb = Keyboard(fifo, write_timeout=0.1, reactor=reactor)
    with pytest.raises(DeviceUnavailable):
        await kb.keystroke(parse_keystroke({"code": "KeyA"}))
    second = kb.keystroke(parse_keystroke({"code": "KeyC"}))
    r.read()
    await second
    assert bytes(r.read()[PAGE - 8 :]) == key(0, 0x04) + UP + key(0, 0x06) + UP
    r.close()


@pytest_twisted.ensureDeferred
async def test_paste_failure_drops_the_rest(fifo: str) -> None:
    """
    A write that fails mid-paste stops that paste: the rest is dropped, the
    log says how many characters went out, and the key left down by the
    failed character is released when the device comes back.
    """
    r = FifoReader(fifo, pipe_size=PAGE)
    fill(fifo, 8)
    kb = Keyboard(fifo, write_timeout=0.1, reactor=reactor)
    with LogCapture() as logs:
        kb.paste(paste("a" * 1000))
        await until(lambda: logs.matching("paste stopped"))
    assert "after 255 of 1000 characters" in logs.matching("paste stopped")[0]
    r.read()
    await until(lambda: len(r.read()) == 8 + 512 * 8)
    assert chunks(bytes(r.data[8:]), 8) == [key(0, 0x04), UP] * 256
    await sleep(0.05)
    assert len(r.read()) == 8 + 512 * 8, "the dropped characters were typed"
    r.close()


@pytest_twisted.ensureDeferred
async def test_keystroke_after_stop_fails(fifo: str, reader: FifoReader) -> None:
    """
    A stopped keyboard refuses new keystrokes instead of queueing them.
    """
    kb = Keyboard(fifo, reactor=reactor)
    kb.startService()
    await kb.stopService()
    with pytest.raises(DeviceUnavailable, match="shutting down"):
        await kb.keystroke(parse_keystroke({"code": "KeyA"}))


# -- LEDs and Caps Lock ----------------------------------------------------------


def _send_leds(path: str, value: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, bytes([value]))
    os.close(fd)


@pytest_twisted.ensureDeferred
async def test_caps_lock_compensation(tmp_path: Path, fifo: str) -> None:
    """
    With Caps Lock on (from the target's LED report on the LED FIFO), letters
    are typed with Shift toggled so the target shows the requested case; the
    state is read when each character is typed, not when the paste was
    queued; LED changes are logged.
    """
    leds = mkfifo(tmp_path, "leds")
    r = FifoReader(fifo, pipe_size=PAGE)
    fill(fifo, PAGE)
    kb = Keyboard(fifo, leds_path=leds, write_timeout=2.0, reactor=reactor)
    kb.startService()
    assert not kb.caps_lock
    with LogCapture() as logs:
        # "1" waits behind the full pipe; Caps Lock goes on meanwhile.
        kb.paste(paste("1aB"))
        await sleep(0.01)
        _send_leds(leds, 0x02)
        await until(lambda: kb.caps_lock)
        assert not kb.num_lock
        r.drain()
        await until(lambda: len(r.data) == PAGE + 6 * 8)
        assert chunks(bytes(r.data[PAGE:]), 8) == [
            key(0, 0x1E), UP, key(LSHIFT, 0x04), UP, key(0, 0x05), UP,
        ]  # fmt: skip
        _send_leds(leds, 0x01)
        await until(lambda: not kb.caps_lock)
        assert kb.num_lock
        kb.paste(paste("aB"))
        await until(lambda: len(r.data) == PAGE + 10 * 8)
        assert bytes(r.data[PAGE + 48 :]) == key(0, 0x04) + UP + key(LSHIFT, 0x05) + UP
    assert logs.matching("Caps Lock on, Num Lock off")
    assert logs.matching("Caps Lock off, Num Lock on")
    await kb.stopService()
    r.close()


@pytest_twisted.ensureDeferred
async def test_caps_lock_tapped_off_around_unshiftable_characters(
    tmp_path: Path, fifo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    With Caps Lock on, a character Shift cannot compensate ("é" on fr-FR) is
    typed as Caps Lock tap, the character, Caps Lock tap, so the target shows
    it in the requested case and ends with Caps Lock on.  The target's LED
    reports echoing those taps (off, then on) do not change what the
    keyboard believes, so the next letter is still compensated; a report
    after the echo window is taken as news again.
    """
    monkeypatch.setattr("tinypilotd.hid.keyboard._CAPS_ECHO_WINDOW", 0.2)
    leds = mkfifo(tmp_path, "leds")
    r = FifoReader(fifo)
    r.drain()
    kb = Keyboard(fifo, leds_path=leds, reactor=reactor)
    kb.startService()
    try:
        _send_leds(leds, 0x02)
        await until(lambda: kb.caps_lock)
        kb.paste(paste("é"))
        await until(lambda: len(r.data) == 6 * 8)
        assert chunks(bytes(r.data), 8) == [key(0, 0x39), UP, key(0, 0x1F), UP, key(0, 0x39), UP]
        _send_leds(leds, 0x00)  # echo of the first tap
        await sleep(0.02)
        assert kb.caps_lock
        kb.paste(paste("a"))
        await until(lambda: len(r.data) == 8 * 8)
        assert bytes(r.data[48:]) == key(LSHIFT, 0x04) + UP
        _send_leds(leds, 0x02)  # echo of the second tap
        await sleep(0.3)
        assert kb.caps_lock
        _send_leds(leds, 0x00)  # the target's user switched Caps Lock off
        await until(lambda: not kb.caps_lock)
        kb.paste(paste("é"))
        await until(lambda: len(r.data) == 10 * 8)
        assert bytes(r.data[64:]) == key(0, 0x1F) + UP
    finally:
        await kb.stopService()
        r.close()


@pytest_twisted.ensureDeferred
async def test_leds_from_character_device() -> None:
    """
    On a character device (here a raw pty standing in for /dev/hidg0) the
    device is opened read-write, reports go out on it and LED reports are
    read back from the same descriptor.
    """
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    kb = Keyboard(path, reactor=reactor)
    kb.startService()
    try:
        os.write(master, b"\x02")
        await until(lambda: kb.caps_lock)
        await kb.keystroke(parse_keystroke({"code": "KeyZ"}))
        received = bytearray()

        def complete() -> bool:
            try:
                received.extend(os.read(master, 64))
            except BlockingIOError:
                pass
            return len(received) >= 16

        os.set_blocking(master, False)
        await until(complete)
        assert received == key(0, 0x1D) + UP
        os.write(master, b"\x00")
        await until(lambda: not kb.caps_lock)
    finally:
        await kb.stopService()
        os.close(master)
        os.close(slave)


# -- pacing ----------------------------------------------------------------------


def test_report_interval(fifo: str, reader: FifoReader) -> None:
    """
    report_interval spaces every report at least that far apart on the
    reactor clock: a keystroke's release waits for it, and so does each
    report of a paste.
    """
    clock = MemoryReactorClock()
    kb = Keyboard(fifo, report_interval=0.25, reactor=clock)
    d = kb.keystroke(parse_keystroke({"code": "KeyA"}))
    assert reader.read() == key(0, 0x04)
    clock.advance(0.125)
    assert len(reader.read()) == 8 and not d.called
    clock.advance(0.125)
    assert reader.read() == key(0, 0x04) + UP and d.called
    kb.paste(paste("bc"))
    counts = []
    for _ in range(5):
        clock.advance(0.25)
        counts.append(len(reader.read()) // 8)
    assert counts == [3, 4, 5, 6, 6]
    assert reader.read()[16:] == key(0, 0x05) + UP + key(0, 0x06) + UP


@pytest_twisted.ensureDeferred
async def test_led_fifo_created_after_start_is_picked_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A LED FIFO that does not exist when the keyboard starts (the virtual
    target creates it later) is opened once it appears, with one warning and
    one recovery line, and its reports then reach caps_lock.
    """
    monkeypatch.setattr("tinypilotd.hid.leds.LedReader.RETRY", 0.05)
    leds = str(tmp_path / "leds")
    kb = Keyboard(mkfifo(tmp_path, "hidg0"), leds_path=leds, reactor=reactor)
    with LogCapture() as logs:
        kb.startService()
        try:
            await sleep(0.15)
            os.mkfifo(leds)
            await until(lambda: logs.matching("reading LED reports"))
            _send_leds(leds, 0x02)
            await until(lambda: kb.caps_lock)
        finally:
            await kb.stopService()
    assert len(logs.matching("cannot open")) == 1


@pytest_twisted.ensureDeferred
async def test_paste_backlog_is_bounded(tmp_path: Path, fifo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Pastes are refused with Busy once MAX_BACKLOG characters would wait, and
    accepted again as the backlog is typed; a paste cut short by a failing
    device gives its untyped characters back to the backlog.
    """
    from tinypilotd.errors import Busy

    monkeypatch.setattr("tinypilotd.hid.keyboard.MAX_BACKLOG", 10)
    r = FifoReader(fifo, pipe_size=PAGE)
    fill(fifo, PAGE)  # the target is not reading yet
    kb = Keyboard(fifo, write_timeout=5.0, reactor=reactor)
    kb.startService()
    try:
        kb.paste(paste("abcdef"))
        kb.paste(paste("ghij"))
        assert kb.backlog == 10
        with pytest.raises(Busy, match="10 characters are still waiting"):
            kb.paste(paste("k"))
        r.drain()
        await until(lambda: kb.backlog == 0)
        kb.paste(paste("k"))
        await until(lambda: kb.backlog == 0)
    finally:
        await kb.stopService()
        r.close()

    dead = mkfifo(tmp_path, "dead")
    gone = FifoReader(dead, pipe_size=PAGE)
    fill(dead, PAGE)
    kb = Keyboard(dead, write_timeout=0.05, reactor=reactor)
    kb.startService()
    try:
        kb.paste(paste("abcdefgh"))
        await until(lambda: kb.backlog == 0)  # timed out and dropped
        kb.paste(paste("abcdefghij"))
        assert kb.backlog == 10
    finally:
        await kb.stopService()
        gone.close()
    assert kb.backlog == 0
