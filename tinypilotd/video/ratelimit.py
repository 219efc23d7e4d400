"""
Keep a chatty source (a child's stderr, a broken stream's drop warnings) from
flooding the daemon's log.
"""

from __future__ import annotations

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger


class RateLimitedLog:
    """
    Pass at most C{burst} events per C{period} seconds on to a L{Logger};
    count the rest and, when the period ends, log one line saying how many
    were suppressed.

    A period starts with the first event after the previous one ended.

    @ivar what: how the summary names the suppressed events, e.g.
        C{"stderr lines from the video capture command"}.
    """

    def __init__(
        self,
        log: Logger,
        clock: IReactorTime,
        *,
        what: str,
        burst: int = 20,
        period: float = 10.0,
    ) -> None:
        self._log = log
        self._clock = clock
        self.what = what
        self.burst = burst
        self.period = period
        self._window_end = float("-inf")
        self._passed = 0
        self._suppressed = 0
        self._summary: IDelayedCall | None = None

    def info(self, format: str, **kwargs: object) -> None:
        if self._allow():
            self._log.info(format, **kwargs)

    def warn(self, format: str, **kwargs: object) -> None:
        if self._allow():
            self._log.warn(format, **kwargs)

    def _allow(self) -> bool:
        now = self._clock.seconds()
        if now >= self._window_end:
            self.flush()
            self._window_end = now + self.period
            self._passed = 0
        if self._passed < self.burst:
            self._passed += 1
            return True
        self._suppressed += 1
        if self._summary is None:
            self._summary = self._clock.callLater(
                self._window_end - now, self._period_over
            )
        return False

    def _period_over(self) -> None:
        self._summary = None
        self.flush()

    def flush(self) -> None:
        """
        Log the suppressed count now, if there is one.
        """
        if self._summary is not None:
            if self._summary.active():
                self._summary.cancel()
            self._summary = None
        if self._suppressed:
            self._log.warn(
                "suppressed {count} {what} in the last {period:.0f}s",
                count=self._suppressed,
                what=self.what,
                period=self.period,
            )
            self._suppressed = 0
