"""
Reading the keyboard's LED output reports from a separate FIFO.

On the real gadget the target's LED reports (1 byte: bit 0 Num Lock, bit 1
Caps Lock, bit 2 Scroll Lock) are read from C{/dev/hidg0} itself, by the
L{ReportWriter}.  A FIFO cannot carry data both ways, so the virtual target
and the tests write them into a second FIFO, read here.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tinypilotd.hid.writer import errno_name


@implementer(IReadDescriptor)
class LedReader:
    """
    Reads 1-byte LED reports from a FIFO through the reactor.

    The FIFO is opened C{O_RDWR}: opening never waits for a writer, and the
    read side never sees end-of-file when the writer closes and comes back.
    A FIFO that is not there yet (its creator starts after the daemon) is
    looked for again every L{RETRY} seconds.
    """

    RETRY = 1.0

    log = Logger()

    def __init__(
        self, path: str, on_report: Callable[[bytes], None], *, reactor: Any
    ) -> None:
        self.path = path
        self._onReport = on_report
        self._reactor = reactor
        self._fd: int | None = None
        self._retry: Any = None
        self._warned = False

    def start(self) -> None:
        self._retry = None
        if self._fd is not None:
            return
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            if not self._warned:
                self.log.warn(
                    "keyboard LEDs {path}: cannot open ({error}); Caps Lock is"
                    " assumed off until it can, retrying every {retry:g}s",
                    path=self.path,
                    error=errno_name(e.errno),
                    retry=self.RETRY,
                )
                self._warned = True
            self._retry = self._reactor.callLater(self.RETRY, self.start)
            return
        if self._warned:
            self.log.info("keyboard LEDs {path}: reading LED reports", path=self.path)
            self._warned = False
        self._reactor.addReader(self)

    def stop(self) -> None:
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        fd, self._fd = self._fd, None
        if fd is not None:
            self._reactor.removeReader(self)
            os.close(fd)

    def fileno(self) -> int:
        return -1 if self._fd is None else self._fd

    def logPrefix(self) -> str:
        return self.path

    def doRead(self) -> None:
        if self._fd is None:
            return
        try:
            data = os.read(self._fd, 64)
        except BlockingIOError:
            return
        if data:
            self._onReport(data)

    def connectionLost(self, reason: Failure) -> None:
        # Removed from the reactor after an error; close our end.
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
