"""
The absolute mouse: one queue of reports in front of C{/dev/hidg1}.

A target that polls slowly (or a client that streams pointer moves faster
than the target collects them) would let moves pile up behind the device.
While a report is in flight, a move that follows a queued move replaces it:
the latest position wins, and both requests complete when it is written.  A
report that changes the buttons, or carries wheel or pan, is never merged or
dropped, and a move is never merged into one: a click stays where it was
requested.

A button the target saw go down stays down until a report says otherwise:
if the report that releases it fails, the release is owed and retried in
the background until the device takes it, as the keyboard does for keys.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from tinypilotd.errors import DeviceUnavailable
from tinypilotd.hid.reports import MOUSE_REPORT_SIZE, MouseEvent, mouse_report
from tinypilotd.hid.writer import ReleaseRetry, ReportWriter, SerialRunner, detached


@attrs.define
class _Pending:
    event: MouseEvent
    waiters: list[Deferred[None]]
    # Same buttons as the report before it, no wheel or pan.
    is_move: bool


class Mouse(Service):
    """
    The mouse gadget.
    """

    log = Logger()

    def __init__(
        self, path: str, *, write_timeout: float = 0.5, reactor: Any = None
    ) -> None:
        """
        @param path: the mouse device (C{/dev/hidg1}) or a FIFO.
        @param write_timeout: how long one report may wait for the device.
        @param reactor: an C{IReactorFDSet} and C{IReactorTime}.
        """
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.path = path
        self._writer = ReportWriter(
            path,
            MOUSE_REPORT_SIZE,
            name="mouse",
            write_timeout=write_timeout,
            reactor=reactor,
        )
        self._queue: deque[_Pending] = deque()
        self._runner = SerialRunner(self._run, what=f"mouse {path}", onIdle=self._idle)
        self._stopping = False
        # The last report handed to the device (in flight or written).
        self._last: MouseEvent | None = None
        # The last report the device took: what the target sees.
        self._wire: MouseEvent | None = None
        # A state releasing buttons that are down on the wire, whose report
        # failed; written in the background until the device takes it.
        self._owed: MouseEvent | None = None
        self._release = ReleaseRetry(self._runner, reactor, what=f"mouse {path}", thing="button")

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        try:
            self._writer.open()
        except DeviceUnavailable:
            pass  # logged by the writer; the next request tries again

    def stopService(self) -> Deferred[None]:
        """
        Stop taking work, finish the report in flight, then write a report
        with every button up (at the last position, so the pointer does not
        jump), waiting at most the write timeout.
        """
        super().stopService()
        self._stopping = True
        self._release.cancel()
        while self._queue:
            for d in self._queue.popleft().waiters:
                d.errback(DeviceUnavailable(self.path, "shutting down"))
        d = self._runner.whenIdle()
        d.addCallback(lambda _: Deferred.fromCoroutine(self._releaseAtStop()))
        return d

    async def _releaseAtStop(self) -> None:
        try:
            if self._last is not None:
                await self._writer.write(
                    mouse_report(MouseEvent(0, self._last.x, self._last.y))
                )
        except DeviceUnavailable as e:
            self.log.warn(
                "mouse {path}: could not release buttons at shutdown ({reason})",
                path=self.path,
                reason=e.reason,
            )
        finally:
            self._writer.close()

    def send(self, ev: MouseEvent) -> Deferred[None]:
        """
        Queue one mouse report.

        @return: fires when it (or a later move that replaced it) is written;
            fails with L{DeviceUnavailable}.  Cancelling it does not withdraw
            the report.
        """
        d: Deferred[None] = Deferred()
        if self._stopping:
            d.errback(DeviceUnavailable(self.path, "shutting down"))
            return d
        before = self._queue[-1].event if self._queue else self._last
        is_move = ev.is_move and before is not None and ev.buttons == before.buttons
        if is_move and self._queue and self._queue[-1].is_move:
            tail = self._queue[-1]
            tail.event = ev
            tail.waiters.append(d)
        else:
            self._queue.append(_Pending(ev, [d], is_move))
            self._runner.kick()
        return detached(d)

    async def _run(self) -> None:
        while True:
            if self._queue:
                pending = self._queue.popleft()
                self._last = pending.event
                try:
                    await self._put(pending.event)
                except DeviceUnavailable as e:
                    self._owe(pending.event)
                    for d in pending.waiters:
                        d.errback(e)
                else:
                    for d in pending.waiters:
                        d.callback(None)
            elif self._release.due:
                self._release.due = False
                if self._owed is not None:
                    try:
                        await self._put(self._owed)
                    except DeviceUnavailable:
                        pass  # the runner reschedules with a longer delay
            else:
                break

    async def _put(self, ev: MouseEvent) -> None:
        await self._writer.write(mouse_report(ev))
        self._wire = ev
        if self._owed is not None:
            self._owed = None
            self._release.recovered()

    def _owe(self, failed: MouseEvent) -> None:
        """
        A report failed: if it would have let go of buttons the target has
        down, the release is owed; if it asked for them down anyway, nothing
        is owed any more.
        """
        if self._wire is not None and self._wire.buttons & ~failed.buttons:
            self._owed = MouseEvent(failed.buttons, failed.x, failed.y)
        elif self._owed is not None:
            self._owed = None
            self._release.cancel()

    def _idle(self) -> None:
        if self._owed is not None and not self._stopping:
            self._release.schedule()
