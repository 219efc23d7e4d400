"""
Real FIFOs standing in for /dev/hidg0 and /dev/hidg1 in the HID tests.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from zope.interface import implementer

PAGE = 4096


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


async def until(predicate: Any, timeout: float = 2.0, step: float = 0.005) -> None:
    """
    Let the reactor run until C{predicate()} is true, or fail after C{timeout}.
    """
    waited = 0.0
    while not predicate():
        if waited >= timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await sleep(step)
        waited += step


def mkfifo(tmp_path: Path, name: str) -> str:
    path = str(tmp_path / name)
    os.mkfifo(path)
    return path


class FifoReader:
    """
    The target's end of a FIFO: reads whatever the daemon wrote.

    @ivar data: everything read so far.
    """

    def __init__(self, path: str, *, pipe_size: int | None = None) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        if pipe_size is not None:
            fcntl.fcntl(self.fd, fcntl.F_SETPIPE_SZ, pipe_size)
        self.data = bytearray()
        self._watcher: _Watcher | None = None

    def read(self) -> bytes:
        """
        Read what is in the pipe now, without waiting; return all data so far.
        """
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self.data += chunk
        return bytes(self.data)

    def drain(self) -> None:
        """
        Keep reading through the reactor, like a target polling the device.
        """
        if self._watcher is None:
            self._watcher = _Watcher(self)
            reactor.addReader(self._watcher)

    def close(self) -> None:
        if self._watcher is not None:
            reactor.removeReader(self._watcher)
            self._watcher = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@implementer(IReadDescriptor)
class _Watcher:
    def __init__(self, reader: FifoReader) -> None:
        self._reader = reader

    def fileno(self) -> int:
        return self._reader.fd

    def logPrefix(self) -> str:
        return "FifoReader"

    def doRead(self) -> None:
        self._reader.read()

    def connectionLost(self, reason: object) -> None:
        pass


def fill(path: str, count: int) -> None:
    """
    Put C{count} bytes of filler (0xEE) into the FIFO from another writer.
    """
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        assert os.write(fd, b"\xee" * count) == count
    finally:
        os.close(fd)


def chunks(data: bytes, size: int) -> list[bytes]:
    assert len(data) % size == 0, (len(data), size)
    return [data[i : i + size] for i in range(0, len(data), size)]


def key(modifiers: int, usage: int) -> bytes:
    return bytes((modifiers, 0, usage, 0, 0, 0, 0, 0))


UP = bytes(8)


@implementer(ILogObserver)
class LogCapture:
    """
    Collects formatted log lines from one namespace prefix.
    """

    def __init__(self, prefix: str = "tinypilotd.hid") -> None:
        self.prefix = prefix
        self.lines: list[str] = []

    def __call__(self, event: LogEvent) -> None:
        if event.get("log_namespace", "").startswith(self.prefix):
            self.lines.append(formatEvent(event))

    def matching(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    def __enter__(self) -> LogCapture:
        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(self)
