"""
The virtual target as the daemon runs it: a subprocess with real FIFOs, MJPEG
on its stdout, a JSON-lines transcript, faults by signal and control FIFO.
"""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytestmark = pytest.mark.integration

SHIFT, LCTRL, LALT = 0x02, 0x01, 0x04
RELEASE = bytes(8)

def key(usage: int, modifiers: int = 0) -> bytes:
    return bytes([modifiers, 0, usage, 0, 0, 0, 0, 0]) + RELEASE


def mouse(buttons: int, rx: float, ry: float, wheel: int = 0) -> bytes:
    return struct.pack("<BHHbb", buttons, round(rx * 32767), round(ry * 32767), wheel, 0)


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def open_writer(path: Path) -> int:
    """Open a FIFO as the daemon does; ENOENT/ENXIO until the target has it open."""

    def attempt() -> int | None:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno not in (errno.ENXIO, errno.ENOENT):
                raise
            return None

    return wait_for(attempt, what=f"a reader on {path}")


class Target:
    def __init__(self, tmp: Path, *extra: str) -> None:
        self.dir = tmp
        self.kbd, self.mouse, self.leds, self.control = (tmp / n for n in ("kbd", "mouse", "leds", "control"))
        self.transcript = tmp / "transcript.jsonl"
        os.mkfifo(self.leds)
        # The daemon's end of the LED FIFO: O_RDWR, non-blocking.
        self.leds_fd = os.open(self.leds, os.O_RDWR | os.O_NONBLOCK)
        argv = [
            sys.executable, "-m", "tinypilotd.target",
            "--keyboard", str(self.kbd), "--mouse", str(self.mouse), "--leds", str(self.leds),
            "--control", str(self.control), "--transcript", str(self.transcript),
            "--size", "640x360", "--fps", "30", *extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        self._mjpeg = b""

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        if not self.transcript.exists():
            return []
        lines = self.transcript.read_text().splitlines()
        return [e for e in map(json.loads, lines) if kind is None or e["event"] == kind]

    def frames(self) -> Iterator[bytes]:
        """Whole JPEGs read from stdout so far (SOI .. EOI)."""
        assert self.proc.stdout is not None
        try:
            self._mjpeg += self.proc.stdout.read() or b""
        except BlockingIOError:
            pass
        while True:
            start = self._mjpeg.find(b"\xff\xd8")
            end = self._mjpeg.find(b"\xff\xd9", start + 2)
            if start < 0 or end < 0:
                return
            yield self._mjpeg[start : end + 2]
            self._mjpeg = self._mjpeg[end + 2 :]

    def next_frame(self, after: float = 0.0) -> bytes:
        """A frame read from stdout at least C{after} seconds from now."""
        deadline = time.monotonic() + after

        def attempt() -> bytes | None:
            got = list(self.frames())
            return got[-1] if got and time.monotonic() >= deadline else None

        return wait_for(attempt, timeout=after + 5, what="an MJPEG frame")

    def leds_read(self) -> bytes:
        try:
            return os.read(self.leds_fd, 64)
        except BlockingIOError:
            return b""

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(5)
        finally:
            os.close(self.leds_fd)
            assert self.proc.stdout is not None and self.proc.stderr is not None
            self.proc.stdout.close()
            self.proc.stderr.close()


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Target]:
    t = Target(tmp_path)
    yield t
    if t.proc.poll() is None:
        t.proc.kill()
        t.stop()


def test_reports_in_frames_and_transcript_out(target: Target) -> None:
    """
    Keyboard and mouse reports written to the FIFOs are decoded (Ctrl+Alt+T
    opens a window, letters with Shift and Caps Lock arrive as the right
    characters, the 25 %/75 % rectangle is drawn), the LED FIFO gets the
    initial state and each Caps Lock change, stdout carries whole JPEGs of the
    configured size showing the rectangle, and SIGTERM exits 0.
    """
    kbd = open_writer(target.kbd)
    mfd = open_writer(target.mouse)
    assert wait_for(target.leds_read, what="the initial LED report") == b"\x00"

    os.write(kbd, key(0x17, LCTRL | LALT))
    os.write(kbd, key(0x0B, SHIFT) + key(0x0C) + key(0x2C) + key(0x39) + key(0x04) + key(0x04, SHIFT) + key(0x39))
    os.write(kbd, key(0x28))
    path = [(0, 0.25, 0.25), (1, 0.25, 0.25), (1, 0.75, 0.25), (1, 0.75, 0.75), (1, 0.25, 0.75), (1, 0.25, 0.25), (0, 0.25, 0.25), (0, 0.9, 0.9)]
    for b, x, y in path:
        os.write(mfd, mouse(b, x, y))
    os.write(mfd, mouse(0, 0.9, 0.9, wheel=1))

    keys = wait_for(lambda: len(target.events("key")) >= 9 and target.events("key"), what="9 key events")
    assert "".join(e["char"] or "" for e in keys) == "Hi Aa\n"
    assert keys[0]["action"] == "terminal"
    assert [e["title"] for e in target.events("window")] == ["Terminal 1 - user@target: ~"]
    assert wait_for(lambda: target.events("wheel"), what="a wheel event")[0]["wheel"] == 1
    moves = target.events("move")
    assert [(m["px"], m["py"]) for m in moves[:5]] == [(160, 90), (480, 90), (480, 270), (160, 270), (160, 90)]
    assert moves[0]["x"] == 8192 and moves[0]["drawing"] is False
    assert all(m["drawing"] for m in moves[1:5])
    buttons = target.events("button")
    assert [(b["button"], b["down"]) for b in buttons] == [("left", True), ("left", False)]
    assert wait_for(target.leds_read, what="Caps Lock LED reports") in (b"\x02\x00", b"\x02")

    img = Image.open(io.BytesIO(target.next_frame(after=0.1)))
    assert img.format == "JPEG" and img.size == (640, 360)
    rgb = img.convert("RGB")
    r, g, b = rgb.getpixel((320, 90))  # middle of the top edge
    assert r > 150 and g < 110 and b < 110

    assert target.stop() == 0
    assert target.events()[-1]["event"] == "exit"


def test_unplug_gives_epipe_and_plug_recovers(target: Target) -> None:
    """
    The control FIFO's C{unplug} closes the HID FIFOs, so the daemon's next
    write fails with EPIPE and a reopen with ENXIO; C{plug} makes them work
    again.
    """
    kbd = open_writer(target.kbd)
    ctl = open_writer(target.control)
    os.write(ctl, b"unplug\n")
    wait_for(lambda: any(e.get("fault") == "unplug" for e in target.events("fault")), what="unplug")
    with pytest.raises(BrokenPipeError):
        os.write(kbd, key(0x04))
    os.close(kbd)
    with pytest.raises(OSError) as exc:
        os.open(target.kbd, os.O_WRONLY | os.O_NONBLOCK)
    assert exc.value.errno == errno.ENXIO
    os.write(ctl, b"plug\n")
    kbd = open_writer(target.kbd)
    os.write(kbd, key(0x05))
    keys = wait_for(lambda: target.events("key"), what="a key after plug")
    assert [e["char"] for e in keys] == ["b"]
    os.close(kbd)
    os.close(ctl)
    assert target.stop() == 0


def test_sigusr1_stops_reading_until_sigusr2(target: Target) -> None:
    """
    After SIGUSR1 the target stops draining the FIFOs, so the daemon's writes
    end in EAGAIN (a target that does not poll); SIGUSR2 drains them again.
    """
    mfd = open_writer(target.mouse)
    wait_for(lambda: target.events("start"), what="start")
    target.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: target.events("fault"), what="the stop fault")
    report = mouse(0, 0.5, 0.5)
    with pytest.raises(BlockingIOError):
        for _ in range(100_000):  # 7-byte writes are atomic: no torn report
            os.write(mfd, report)
    time.sleep(0.1)
    with pytest.raises(BlockingIOError):  # still not read
        os.write(mfd, report)
    target.proc.send_signal(signal.SIGUSR2)

    def writable() -> bool:
        try:
            os.write(mfd, report)
        except BlockingIOError:
            return False
        return True

    wait_for(writable, what="the FIFO drained after SIGUSR2")
    assert [e["fault"] for e in target.events("fault")] == ["stop", "resume"]
    assert len(target.events("move")) == 1
    os.close(mfd)
    assert target.stop() == 0


def test_exits_quietly_when_stdout_closes(target: Target) -> None:
    """When the capture supervisor closes the pipe, the target exits 0 with nothing on stderr."""
    target.next_frame()
    assert target.proc.stdout is not None
    target.proc.stdout.close()
    assert target.proc.wait(5) == 0
    assert target.proc.stderr is not None
    assert target.proc.stderr.read() == b""
    last = target.events()[-1]
    assert (last["event"], last.get("reason")) == ("exit", "stdout closed")
    os.close(target.leds_fd)
    target.proc.stderr.close()


def test_layout_option_and_caps_from_the_control_fifo(tmp_path: Path) -> None:
    """
    C{--layout de-DE} decodes with the German table (AltGr+Q is @, Z/Y
    swapped), and the control FIFO's C{caps on} sets Caps Lock on the target's
    side: the LED FIFO reports it and letters come out in capitals.
    """
    target = Target(tmp_path, "--layout", "de-de")
    try:
        kbd = open_writer(target.kbd)
        ctl = open_writer(target.control)
        assert wait_for(target.leds_read, what="the initial LED report") == b"\x00"
        start = target.events()[0]
        assert (start["event"], start["layout"], start["width"]) == ("start", "de-DE", 640)
        os.write(kbd, key(0x14, 0x40) + key(0x1C))
        wait_for(lambda: len(target.events("key")) >= 2, what="2 keys")
        os.write(ctl, b"caps on\n")
        assert wait_for(target.leds_read, what="the Caps Lock LED report") == b"\x02"
        os.write(kbd, key(0x1D))
        keys = wait_for(lambda: len(target.events("key")) >= 3 and target.events("key"), what="3 keys")
        assert [e["char"] for e in keys] == ["@", "z", "Y"]
        os.close(kbd)
        os.close(ctl)
    finally:
        assert target.stop() == 0
