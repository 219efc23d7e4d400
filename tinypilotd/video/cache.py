"""
The latest captured frame, and waiting for the next one.

The capture service L{FrameCache.put}s every image its child produces and
flips L{FrameCache.pipeline_up}; the REST tree asks L{FrameCache.screenshot}
and answers 204 when it gets L{None}.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

FRESH_WAIT = 1.0


@attrs.frozen
class Frame:
    """
    One JPEG image from the capture pipeline.

    @ivar data: the complete JPEG file, SOI to EOI.
    @ivar captured_at: C{clock.seconds()} when the image's last byte arrived
        (POSIX time under the real reactor).
    @ivar sequence: 1 for the first image this daemon captured, then
        increasing by one per image, across pipeline restarts.
    @ivar width: from the image's start-of-frame segment.
    @ivar height: from the image's start-of-frame segment.
    """

    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")
    captured_at: float
    sequence: int
    width: int
    height: int


class FrameCache:
    """
    Hold the newest L{Frame} and decide whether it is still worth showing.

    @ivar stale_after: a frame older than this many seconds is not served.
    @ivar fresh_wait: how long C{screenshot(fresh=True)} waits for a new frame.
    """

    log = Logger()

    def __init__(
        self,
        *,
        stale_after: float = 2.0,
        clock: IReactorTime | None = None,
        fresh_wait: float = FRESH_WAIT,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[assignment]
        self._clock: IReactorTime = clock  # type: ignore[assignment]
        self.stale_after = stale_after
        self.fresh_wait = fresh_wait
        self._latest: Frame | None = None
        self._sequence = 0
        self._pipeline_up = False
        self._waiters: dict[Deferred[Frame | None], IDelayedCall] = {}

    @property
    def latest(self) -> Frame | None:
        """
        The newest frame of the running pipeline, however old; L{None} when
        there is none or the pipeline is down.
        """
        return self._latest

    @property
    def sequence(self) -> int:
        """The sequence number of the last frame put; 0 before the first."""
        return self._sequence

    @property
    def pipeline_up(self) -> bool:
        """
        Whether a capture child is running.  Setting it to C{False} forgets
        the newest frame (it belongs to a pipeline that no longer runs) and
        answers everyone waiting for a fresh frame with L{None}.
        """
        return self._pipeline_up

    @pipeline_up.setter
    def pipeline_up(self, up: bool) -> None:
        self._pipeline_up = up
        if not up:
            self._latest = None
            self._answer_waiters(None)

    def put(self, data: bytes, width: int, height: int) -> Frame:
        """
        Record a newly captured image as the newest frame, stamped with the
        clock's current time, and hand it to everyone waiting for one.
        """
        self._sequence += 1
        frame = Frame(
            data=data,
            captured_at=self._clock.seconds(),
            sequence=self._sequence,
            width=width,
            height=height,
        )
        self._latest = frame
        self._answer_waiters(frame)
        return frame

    def current(self) -> Frame | None:
        """
        The newest frame if the pipeline is up and the frame is younger than
        C{stale_after}, else L{None}.
        """
        frame = self._latest
        if frame is None or not self._pipeline_up:
            return None
        if self._clock.seconds() - frame.captured_at > self.stale_after:
            return None
        return frame

    def screenshot(self, fresh: bool = False) -> Deferred[Frame | None]:
        """
        The frame to serve, or L{None} for "no picture" (HTTP 204).

        With C{fresh=True}, wait up to C{fresh_wait} seconds for a frame
        captured after this call; if none comes, answer as without C{fresh}.
        Cancelling the returned Deferred (a client that went away) forgets
        the wait.
        """
        if not fresh or not self._pipeline_up:
            return succeed(self.current())

        def cancel(d: Deferred[Frame | None]) -> None:
            timeout = self._waiters.pop(d, None)
            if timeout is not None and timeout.active():
                timeout.cancel()

        d: Deferred[Frame | None] = Deferred(cancel)
        self._waiters[d] = self._clock.callLater(self.fresh_wait, self._timed_out, d)
        return d

    @property
    def waiting(self) -> int:
        """How many C{screenshot(fresh=True)} calls are waiting."""
        return len(self._waiters)

    def _timed_out(self, d: Deferred[Frame | None]) -> None:
        if self._waiters.pop(d, None) is not None:
            d.callback(self.current())

    def _answer_waiters(self, frame: Any) -> None:
        waiters, self._waiters = self._waiters, {}
        for d, timeout in waiters.items():
            if timeout.active():
                timeout.cancel()
            d.callback(frame)
