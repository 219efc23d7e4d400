"""
tinypilot-virtual-target: a computer at the far end of the HID FIFOs.

It reads keyboard and mouse reports from the FIFOs the daemon writes to,
decodes them as a USB host would, and writes its screen to stdout as MJPEG
(concatenated JPEGs) at a fixed frame rate, so the daemon's capture
supervisor runs it exactly as it runs a real capture pipeline.

This is a separate program, not part of the daemon: a plain select loop that
sleeps until the next frame or the next input.

Faults on demand, to exercise the daemon:
  - SIGUSR1 / control C{stop}: stop reading the HID FIFOs (a host that does
    not poll; the daemon's writes then time out).  SIGUSR2 / C{resume}: read
    again.
  - control C{unplug}: close the FIFOs (a pulled cable; the daemon's writes
    fail with EPIPE, its opens with ENXIO).  C{plug}: reopen them.
  - control C{caps on} / C{caps off}: set Caps Lock from the target's side.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import select
import signal
import stat
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from tinypilotd.target.keymap import LAYOUTS_DIR, KeyboardDecoder, KeyEvent, KeyTable
from tinypilotd.target.screen import Screen

KEYBOARD_REPORT = 8
MOUSE_REPORT = struct.Struct("<BHHbb")
HID_MAX = 32767
LED_CAPS = 0x02
LED_RETRY = 1.0
BUTTON_NAMES = {1: "left", 2: "right", 4: "middle"}


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, got {text!r}") from None
    if not (16 <= w <= 7680 and 16 <= h <= 4320):
        raise argparse.ArgumentTypeError(f"size out of range: {text!r}")
    return w, h


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tinypilot-virtual-target",
        description="A virtual target computer: HID reports in from FIFOs, MJPEG out on stdout.",
    )
    p.add_argument("--keyboard", required=True, metavar="FIFO", help="keyboard report FIFO (created if missing)")
    p.add_argument("--mouse", required=True, metavar="FIFO", help="mouse report FIFO (created if missing)")
    p.add_argument("--leds", metavar="FIFO", help="FIFO to write 1-byte keyboard LED reports to")
    p.add_argument("--control", metavar="FIFO", help="FIFO of fault commands: stop, resume, unplug, plug, caps on|off")
    p.add_argument("--layout", default="en-US", metavar="TAG", help="keyboard layout (default en-US)")
    p.add_argument("--layouts-dir", type=Path, default=LAYOUTS_DIR, metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--size", type=_size, default=(1280, 720), metavar="WxH", help="screen size (default 1280x720)")
    p.add_argument("--fps", type=float, default=15.0, help="frames per second (default 15)")
    p.add_argument("--quality", type=int, default=80, help="JPEG quality 1..95 (default 80)")
    p.add_argument("--transcript", metavar="FILE", help="write what was decoded as JSON lines")
    args = p.parse_args(argv)
    if not 0.1 <= args.fps <= 120:
        p.error("--fps must be between 0.1 and 120")
    if not 1 <= args.quality <= 95:
        p.error("--quality must be between 1 and 95")
    return args


class Transcript:
    """JSON lines of what the target decoded, one flushed line per event."""

    def __init__(self, out: IO[str] | None) -> None:
        self._out = out

    def __call__(self, event: str, **fields: Any) -> None:
        if self._out is None:
            return
        self._out.write(json.dumps({"t": round(time.time(), 6), "event": event, **fields}) + "\n")
        self._out.flush()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


def ensure_fifo(path: str) -> None:
    """Create C{path} as a FIFO unless it already is one."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        os.mkfifo(path, 0o660)
        return
    if not stat.S_ISFIFO(st.st_mode):
        raise SystemExit(f"tinypilot-virtual-target: {path} exists and is not a FIFO")


def open_reader(path: str) -> int:
    """
    Open a FIFO for reading without ever seeing end-of-file.  O_RDWR (Linux)
    keeps a writer on the FIFO ourselves, so the daemon closing and reopening
    its end never wakes select() with EOF; we never write to it.
    """
    return os.open(path, os.O_RDWR | os.O_NONBLOCK)


class Target:
    """The virtual target: its devices, its screen, and the loop that runs them."""

    def __init__(self, args: argparse.Namespace, transcript: Transcript, out_fd: int = 1) -> None:
        self.args = args
        self.log = transcript
        self.out_fd = out_fd
        width, height = args.size
        self.screen = Screen(width, height, quality=args.quality)
        self.decoder = KeyboardDecoder(KeyTable.load(args.layout, args.layouts_dir))
        self.reading = True
        self.plugged = True
        self.running = True
        self.kbd_fd: int | None = None
        self.mouse_fd: int | None = None
        self.control_fd: int | None = None
        self.leds_fd: int | None = None
        self._leds_retry_at = 0.0
        self._kbd_buf = b""
        self._mouse_buf = b""
        self._control_buf = b""
        self._buttons = 0
        self._hid_pos: tuple[int, int] | None = None
        self._pending = memoryview(b"")
        self.frames_sent = 0
        self.frames_dropped = 0
        for path in (args.keyboard, args.mouse, args.leds, args.control):
            if path:
                ensure_fifo(path)
        self.log("start", width=width, height=height, fps=args.fps, layout=self.decoder.table.tag, pid=os.getpid())
        self._plug()
        if args.control:
            self.control_fd = open_reader(args.control)

    # -- devices ---------------------------------------------------------

    def _plug(self) -> None:
        self.kbd_fd = open_reader(self.args.keyboard)
        self.mouse_fd = open_reader(self.args.mouse)
        self._kbd_buf = self._mouse_buf = b""
        self._leds_retry_at = 0.0
        self._try_open_leds()

    def _unplug(self) -> None:
        for name in ("kbd_fd", "mouse_fd", "leds_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)

    def _try_open_leds(self) -> None:
        """
        The daemon reads LED reports from its own end of the FIFO; until it
        has opened it, opening the write end fails with ENXIO and we retry.
        Each time the FIFO opens, the current state goes out once, as a host
        does when a keyboard is plugged in.
        """
        if not self.args.leds or self.leds_fd is not None or not self.plugged:
            return
        now = time.monotonic()
        if now < self._leds_retry_at:
            return
        try:
            self.leds_fd = os.open(self.args.leds, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise
            self._leds_retry_at = now + LED_RETRY
            return
        self._send_leds()

    def _send_leds(self) -> None:
        if self.leds_fd is None:
            self._try_open_leds()
            return
        value = LED_CAPS if self.decoder.caps_lock else 0
        try:
            os.write(self.leds_fd, bytes([value]))
        except BlockingIOError:
            return  # nobody is draining the LED FIFO; the next change retries
        except BrokenPipeError:
            os.close(self.leds_fd)
            self.leds_fd = None
            self._leds_retry_at = time.monotonic() + LED_RETRY
            return
        self.log("leds", value=value, caps_lock=self.decoder.caps_lock)

    # -- input -------------------------------------------------------------

    def _read(self, fd: int) -> bytes:
        try:
            return os.read(fd, 4096)
        except BlockingIOError:
            return b""

    def on_keyboard(self) -> None:
        assert self.kbd_fd is not None
        self._kbd_buf += self._read(self.kbd_fd)
        while len(self._kbd_buf) >= KEYBOARD_REPORT:
            report, self._kbd_buf = self._kbd_buf[:KEYBOARD_REPORT], self._kbd_buf[KEYBOARD_REPORT:]
            for event in self.decoder.feed(report):
                self.on_key(event)

    def on_key(self, ev: KeyEvent) -> None:
        fields: dict[str, Any] = {"usage": ev.usage, "modifiers": ev.modifiers, "char": ev.char, "action": ev.action}
        if ev.action == "text" and ev.char:
            self.screen.type(ev.char)
        elif ev.action == "backspace":
            self.screen.backspace()
        elif ev.action == "caps_lock":
            fields["caps_lock"] = self.decoder.caps_lock
        self.log("key", **fields)
        if ev.action == "caps_lock":
            self._send_leds()
        elif ev.action == "terminal":
            window = self.screen.open_terminal()
            self.log("window", title=window.title, box=list(window.box))

    def on_mouse(self) -> None:
        assert self.mouse_fd is not None
        self._mouse_buf += self._read(self.mouse_fd)
        size = MOUSE_REPORT.size
        while len(self._mouse_buf) >= size:
            report, self._mouse_buf = self._mouse_buf[:size], self._mouse_buf[size:]
            self.on_mouse_report(*MOUSE_REPORT.unpack(report))

    def to_pixels(self, x: int, y: int) -> tuple[int, int]:
        w, h = self.screen.width, self.screen.height
        x, y = min(x, HID_MAX), min(y, HID_MAX)
        return min(w - 1, round(x * w / HID_MAX)), min(h - 1, round(y * h / HID_MAX))

    def on_mouse_report(self, buttons: int, x: int, y: int, wheel: int, pan: int) -> None:
        """
        Apply one absolute report as a host would: the move first (drawing if
        the left button was already down), then button changes, then the
        wheel.
        """
        if (x, y) != self._hid_pos:
            px, py = self.to_pixels(x, y)
            drawing = bool(self._buttons & 1) and self._hid_pos is not None
            self._hid_pos = (x, y)
            self.screen.move_pointer(px, py, drawing=drawing)
            self.log("move", x=x, y=y, px=px, py=py, drawing=drawing)
        changed = buttons ^ self._buttons
        self._buttons = buttons
        for bit in (1, 2, 4, 8, 16):
            if changed & bit:
                down = bool(buttons & bit)
                if bit == 1 and down:
                    self.screen.dot()
                px, py = self.screen.pointer
                self.log("button", button=BUTTON_NAMES.get(bit, bit), down=down, buttons=buttons, px=px, py=py)
        if wheel or pan:
            if wheel:
                self.screen.scroll(wheel * 3)
            self.log("wheel", wheel=wheel, pan=pan, scroll=self.screen.focus.scroll)

    def on_control(self) -> None:
        assert self.control_fd is not None
        self._control_buf += self._read(self.control_fd)
        *lines, self._control_buf = self._control_buf.split(b"\n")
        for line in lines:
            self.command(line.decode("utf-8", "replace").strip())

    def command(self, cmd: str) -> None:
        """Apply one fault command (also reached through SIGUSR1/SIGUSR2)."""
        if cmd == "stop":
            self.reading = False
        elif cmd == "resume":
            self.reading = True
        elif cmd == "unplug":
            if self.plugged:
                self._unplug()
                self.plugged = False
        elif cmd == "plug":
            if not self.plugged:
                self.plugged = True
                self._plug()
        elif cmd in ("caps on", "caps off"):
            self.decoder.caps_lock = cmd == "caps on"
            self._send_leds()
        elif not cmd:
            return
        else:
            self.log("fault", fault=cmd, error="unknown command")
            return
        self.log("fault", fault=cmd, reading=self.reading, plugged=self.plugged)

    # -- output ------------------------------------------------------------

    def on_frame(self) -> None:
        """
        Start sending the next frame, unless the previous one is still going
        out (the reader is slow): then this frame is dropped, as a capture
        device drops frames, so stdout only ever carries whole JPEGs.
        """
        if self._pending:
            self.frames_dropped += 1
            return
        self._pending = memoryview(self.screen.jpeg())
        self.frames_sent += 1
        self.on_writable()

    def on_writable(self) -> None:
        try:
            n = os.write(self.out_fd, self._pending)
        except BlockingIOError:
            return
        self._pending = self._pending[n:]

    # -- loop ------------------------------------------------------------------

    def run(self, wakeup_fd: int, on_signal: Callable[[int], None]) -> None:
        period = 1.0 / self.args.fps
        next_frame = time.monotonic()
        while self.running:
            now = time.monotonic()
            if now >= next_frame:
                self.on_frame()
                next_frame += period
                if next_frame <= now:  # fell behind: skip, never burst
                    next_frame = now + period
                self._try_open_leds()
            readers: dict[int, Callable[[], None]] = {wakeup_fd: lambda: None}
            if self.control_fd is not None:
                readers[self.control_fd] = self.on_control
            if self.reading and self.plugged:
                assert self.kbd_fd is not None and self.mouse_fd is not None
                readers[self.kbd_fd] = self.on_keyboard
                readers[self.mouse_fd] = self.on_mouse
            writers = [self.out_fd] if self._pending else []
            timeout = max(0.0, next_frame - time.monotonic())
            r, w, _ = select.select(list(readers), writers, [], timeout)
            if wakeup_fd in r:
                for signum in os.read(wakeup_fd, 64):
                    on_signal(signum)
            for fd in r:
                if fd != wakeup_fd and self.running and fd in readers:
                    # A fault command may have closed this fd in this round.
                    if fd in (self.kbd_fd, self.mouse_fd, self.control_fd):
                        readers[fd]()
            if w and self._pending:
                self.on_writable()

    def close(self) -> None:
        self._unplug()
        if self.control_fd is not None:
            os.close(self.control_fd)
            self.control_fd = None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        transcript = Transcript(open(args.transcript, "a", encoding="utf-8") if args.transcript else None)
        target = Target(args, transcript)
    except LookupError as e:
        print(f"tinypilot-virtual-target: {e.args[0]}", file=sys.stderr)
        return 2

    # Signals arrive through a pipe so select() wakes for them.
    sig_r, sig_w = os.pipe()
    for fd in (sig_r, sig_w):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(sig_w, warn_on_full_buffer=False)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, lambda *_: None)

    def on_signal(signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            target.running = False
            transcript("exit", signal=signal.Signals(signum).name)
        elif signum == signal.SIGUSR1:
            target.command("stop")
        elif signum == signal.SIGUSR2:
            target.command("resume")

    was_blocking = os.get_blocking(1)
    os.set_blocking(1, False)
    try:
        target.run(sig_r, on_signal)
    except BrokenPipeError:
        # The capture supervisor went away: nobody is watching, leave quietly.
        transcript("exit", reason="stdout closed")
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    finally:
        try:
            os.set_blocking(1, was_blocking)
        except OSError:
            pass
        target.close()
        transcript.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
