"""
The keyboard: one queue of keystrokes and pastes in front of C{/dev/hidg0}.

Ordering rules, all enforced by running one job at a time:

  - A keystroke is its press report then the all-zero release, adjacent on
    the wire.  A modifier key on its own (C{ShiftLeft}, ...) is pressed and
    held until the next keystroke, whose press carries the held bits and
    whose release lets go of everything: that is how a client shift-clicks.
  - Pastes are typed one after the other, never interleaved.  Keystrokes are
    served before the next character of a paste, so a keystroke sent during a
    long paste lands between two characters, never inside one.
  - If a press went out and its release did not, the release is owed: it is
    written before anything else, and retried in the background until the
    device takes it, so that no key stays down on the target.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from tinypilotd.errors import Busy, DeviceUnavailable
from tinypilotd.hid.leds import LedReader
from tinypilotd.hid.reports import (
    KEYBOARD_RELEASE,
    KEYBOARD_REPORT_SIZE,
    Keystroke,
    keyboard_report,
)
from tinypilotd.hid.writer import ReleaseRetry, ReportWriter, SerialRunner, detached
from tinypilotd.paste.layouts import CAPS_LOCK_USAGE, PasteRequest, character_reports

NUM_LOCK = 0x01
CAPS_LOCK = 0x02
SCROLL_LOCK = 0x04

#: Characters queued for typing at most, across all pastes: ten pastes of
#: the largest size, about 100 s of typing on a target polling at 1 kHz.
#: Beyond it a paste is refused (503) rather than memory and typing time
#: growing without bound.
MAX_BACKLOG = 100_000
#: Reports written back to back before a paste lets the reactor run.
_REPORTS_PER_TURN = 128
#: After the daemon taps Caps Lock itself, how long the target's LED reports
#: are taken as echoes of those taps rather than news (seconds).
_CAPS_ECHO_WINDOW = 0.5


@attrs.define
class _Paste:
    request: PasteRequest
    typed: int = 0
    started: bool = False

    @property
    def total(self) -> int:
        return len(self.request.text)


class Keyboard(Service):
    """
    The keyboard gadget: keystrokes, pastes and the target's LED state.

    @ivar caps_lock: Caps Lock is on, according to the target's latest LED
        output report (False until one arrives).
    @ivar num_lock: likewise for Num Lock.
    """

    log = Logger()

    def __init__(
        self,
        path: str,
        *,
        write_timeout: float = 0.5,
        report_interval: float = 0.0,
        leds_path: str | None = None,
        reactor: Any = None,
    ) -> None:
        """
        @param path: the keyboard device (C{/dev/hidg0}) or a FIFO.
        @param write_timeout: how long one report may wait for the device.
        @param report_interval: minimum time between two reports, for targets
            that drop fast input (0: as fast as the device takes them).
        @param leds_path: with a FIFO C{path}, a FIFO that carries the LED
            output reports (1 byte each); a character device C{path} carries
            them itself.
        @param reactor: an C{IReactorFDSet} and C{IReactorTime}.
        """
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.path = path
        self._reactor = reactor
        self._clock: IReactorTime = reactor
        self._interval = report_interval
        self._leds = 0
        self._reportedLeds = 0
        self._capsEcho: IDelayedCall | None = None
        self._writer = ReportWriter(
            path,
            KEYBOARD_REPORT_SIZE,
            name="keyboard",
            write_timeout=write_timeout,
            on_read=self._ledReport if leds_path is None else None,
            reactor=reactor,
        )
        self._ledReader = (
            LedReader(leds_path, self._ledReport, reactor=reactor)
            if leds_path is not None
            else None
        )
        self._keystrokes: deque[tuple[Keystroke, Deferred[None]]] = deque()
        self._pastes: deque[_Paste] = deque()
        # Characters of queued pastes not typed yet.
        self.backlog = 0
        self._runner = SerialRunner(self._run, what=f"keyboard {path}", onIdle=self._idle)
        self._stopping = False
        # What the target currently sees: the last report written.
        self._wire = KEYBOARD_RELEASE
        # Modifier bits deliberately held down by a modifier-key keystroke.
        self._held = 0
        self._lastWriteAt: float | None = None
        self._sinceYield = 0
        self._release = ReleaseRetry(self._runner, self._clock, what=f"keyboard {path}", thing="key")

    # -- LEDs --------------------------------------------------------------

    @property
    def caps_lock(self) -> bool:
        return bool(self._leds & CAPS_LOCK)

    @property
    def num_lock(self) -> bool:
        return bool(self._leds & NUM_LOCK)

    @property
    def scroll_lock(self) -> bool:
        return bool(self._leds & SCROLL_LOCK)

    def _ledReport(self, data: bytes) -> None:
        # Each byte is one report; only the latest state matters.
        leds = data[-1] & (NUM_LOCK | CAPS_LOCK | SCROLL_LOCK)
        self._reportedLeds = leds
        if self._capsEcho is not None:
            # Our own Caps Lock taps echoing back (off, then on again): keep
            # the Caps Lock state the target ends in until they have passed.
            leds = (leds & ~CAPS_LOCK) | (self._leds & CAPS_LOCK)
        self._setLeds(leds)

    def _expectCapsEcho(self) -> None:
        if self._capsEcho is not None and self._capsEcho.active():
            self._capsEcho.reset(_CAPS_ECHO_WINDOW)
        else:
            self._capsEcho = self._clock.callLater(_CAPS_ECHO_WINDOW, self._capsEchoOver)

    def _capsEchoOver(self) -> None:
        self._capsEcho = None
        self._setLeds(self._reportedLeds)

    def _setLeds(self, leds: int) -> None:
        if leds != self._leds:
            self._leds = leds
            self.log.info(
                "keyboard {path}: target LEDs now Caps Lock {caps},"
                " Num Lock {num}, Scroll Lock {scroll}",
                path=self.path,
                caps=_onOff(self.caps_lock),
                num=_onOff(self.num_lock),
                scroll=_onOff(self.scroll_lock),
            )

    # -- Service -----------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        try:
            self._writer.open()
        except DeviceUnavailable:
            pass  # logged by the writer; the next request tries again
        if self._ledReader is not None:
            self._ledReader.start()

    def stopService(self) -> Deferred[None]:
        """
        Stop taking work, finish the report in flight, then release every key.

        Queued keystrokes fail, queued pastes are dropped and a paste being
        typed stops after its current character.  The final all-zero report
        waits at most the write timeout.
        """
        super().stopService()
        self._stopping = True
        self._release.cancel()
        if self._capsEcho is not None and self._capsEcho.active():
            self._capsEcho.cancel()
        self._capsEcho = None
        while self._keystrokes:
            _, d = self._keystrokes.popleft()
            d.errback(DeviceUnavailable(self.path, "shutting down"))
        dropped = [p for p in self._pastes if not p.started]
        for paste in dropped:
            self._pastes.remove(paste)
            self.backlog -= paste.total
        if dropped:
            self.log.info(
                "keyboard {path}: shutting down, {count} queued paste(s) dropped",
                path=self.path,
                count=len(dropped),
            )
        d = self._runner.whenIdle()
        d.addCallback(lambda _: Deferred.fromCoroutine(self._releaseAtStop()))
        return d

    async def _releaseAtStop(self) -> None:
        self._held = 0
        try:
            await self._write(KEYBOARD_RELEASE)
        except DeviceUnavailable as e:
            self.log.warn(
                "keyboard {path}: could not release keys at shutdown ({reason})",
                path=self.path,
                reason=e.reason,
            )
        finally:
            self._writer.close()
            if self._ledReader is not None:
                self._ledReader.stop()

    # -- requests ----------------------------------------------------------

    def keystroke(self, ks: Keystroke) -> Deferred[None]:
        """
        Queue one keystroke.

        @return: fires when its press and release are written (for a modifier
            key, when its press is written); fails with L{DeviceUnavailable}.
            Cancelling it does not withdraw the keystroke.
        """
        d: Deferred[None] = Deferred()
        if self._stopping:
            d.errback(DeviceUnavailable(self.path, "shutting down"))
            return d
        self._keystrokes.append((ks, d))
        self._runner.kick()
        return detached(d)

    def paste(self, request: PasteRequest) -> None:
        """
        Queue a validated text to be typed after everything queued before it.

        @raise Busy: L{MAX_BACKLOG} characters would be waiting.
        """
        if self._stopping:
            self.log.warn(
                "keyboard {path}: shutting down, paste of {count} characters"
                " dropped",
                path=self.path,
                count=len(request.text),
            )
            return
        count = len(request.text)
        if self.backlog + count > MAX_BACKLOG:
            raise Busy(
                f"The keyboard is busy: {self.backlog} characters are still"
                f" waiting to be typed (at most {MAX_BACKLOG}); try again later"
            )
        self.backlog += count
        self._pastes.append(_Paste(request))
        self._runner.kick()

    # -- the queue ---------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if self._keystrokes:
                ks, d = self._keystrokes.popleft()
                try:
                    await self._typeKeystroke(ks)
                except DeviceUnavailable as e:
                    d.errback(e)
                else:
                    d.callback(None)
            elif self._pastes:
                await self._typeNextCharacter(self._pastes[0])
            elif self._release.due:
                self._release.due = False
                await self._recover()
            else:
                break

    def _idle(self) -> None:
        if self._owesRelease() and not self._stopping:
            self._release.schedule()

    async def _typeKeystroke(self, ks: Keystroke) -> None:
        await self._settle(keep_held=True)
        held, self._held = self._held, 0
        if ks.hold:
            bits = held | ks.modifiers
            await self._write(keyboard_report(bits, 0))
            self._held = bits
            return
        await self._write(keyboard_report(held | ks.modifiers, ks.usage))
        await self._write(KEYBOARD_RELEASE)

    def _dropCurrentPaste(self) -> _Paste:
        paste = self._pastes.popleft()
        self.backlog -= paste.total - paste.typed
        return paste

    async def _typeNextCharacter(self, paste: _Paste) -> None:
        if self._stopping:
            self._dropCurrentPaste()
            self.log.info(
                "keyboard {path}: shutting down, paste stopped after {typed}"
                " of {total} characters",
                path=self.path,
                typed=paste.typed,
                total=paste.total,
            )
            return
        if not paste.started:
            paste.started = True
            self._held = 0
        if paste.typed == paste.total:
            self._dropCurrentPaste()
            self.log.info(
                "keyboard {path}: pasted {total} characters ({layout})",
                path=self.path,
                total=paste.total,
                layout=paste.request.layout.tag,
            )
            return
        if self._sinceYield >= _REPORTS_PER_TURN:
            # Let the reactor read new requests between two characters.
            self._sinceYield = 0
            await deferLater(self._clock, 0, lambda: None)
        char = paste.request.text[paste.typed]
        try:
            await self._typeCharacter(paste, char)
        except DeviceUnavailable as e:
            self._dropCurrentPaste()
            self.log.warn(
                "keyboard {path}: paste stopped after {typed} of {total}"
                " characters ({reason}); the rest is dropped and all keys"
                " released",
                path=self.path,
                typed=paste.typed,
                total=paste.total,
                reason=e.reason,
            )
            return
        paste.typed += 1
        self.backlog -= 1

    async def _typeCharacter(self, paste: _Paste, char: str) -> None:
        try:
            # Caps Lock is read now, not when the paste was queued: the
            # target may toggle it while a long text is being typed.
            reports = character_reports(paste.request.layout, char, self.caps_lock)
        except KeyError:
            self.log.error(
                "keyboard {path}: layout {layout} cannot type {char!r};"
                " skipped",
                path=self.path,
                layout=paste.request.layout.tag,
                char=char,
            )
            return
        await self._settle(keep_held=False)
        for modifiers, usage in reports:
            if usage == CAPS_LOCK_USAGE:
                self._expectCapsEcho()
            await self._write(keyboard_report(modifiers, usage))
            await self._write(KEYBOARD_RELEASE)

    # -- the wire ----------------------------------------------------------

    async def _write(self, report: bytes) -> None:
        if self._interval > 0 and self._lastWriteAt is not None:
            wait = self._lastWriteAt + self._interval - self._clock.seconds()
            if wait > 0:
                await deferLater(self._clock, wait, lambda: None)
        await self._writer.write(report)
        self._wire = report
        self._sinceYield += 1
        if self._interval > 0:
            self._lastWriteAt = self._clock.seconds()

    def _owesRelease(self) -> bool:
        """
        Something is down on the target that nobody meant to hold.
        """
        if self._wire == KEYBOARD_RELEASE:
            return False
        return not (self._held and self._wire == keyboard_report(self._held, 0))

    async def _settle(self, *, keep_held: bool) -> None:
        """
        Before a job's first report: write the owed release, and also let go
        of held modifiers unless C{keep_held}.
        """
        if self._wire == KEYBOARD_RELEASE:
            return
        if keep_held and not self._owesRelease():
            return
        owed = self._owesRelease()
        self._held = 0
        await self._write(KEYBOARD_RELEASE)
        if owed:
            self._release.recovered()

    # -- releasing keys left down by a failed write ------------------------

    async def _recover(self) -> None:
        if not self._owesRelease():
            return
        try:
            await self._settle(keep_held=True)
        except DeviceUnavailable:
            pass  # the runner reschedules with a longer delay


def _onOff(flag: bool) -> str:
    return "on" if flag else "off"
