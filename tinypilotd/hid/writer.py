"""
A non-blocking writer of fixed-size HID reports to one gadget device.

What the kernel's f_hid driver does, and what this module does about it:

  - A report is one C{write()} of the full report; a short report is dropped
    by the target, so a short write is an error.
  - C{EAGAIN}: the device is plugged in but the previous report has not been
    collected (the target polls at its own pace, or is not reading at all).
    Wait for writability through the reactor and, because an unread gadget
    never shows C{POLLOUT}, also retry on a short timer, up to the write
    timeout; then give up on this report but keep the file open.
  - C{ESHUTDOWN} (cable pulled, gadget not configured) or C{EPIPE} (the FIFO
    reader went away): fail at once, close, and reopen on the next report.
  - C{ENOENT}/C{ENXIO}/C{EACCES} on open (gadget unbound, no FIFO reader,
    permissions): fail at once; the next report tries to open again.

A character device (C{/dev/hidg0}) is opened C{O_RDWR}, so the keyboard's LED
output reports can be read from the same descriptor; a FIFO (the virtual
target, tests) is opened C{O_WRONLY}, which never reads back our own reports
and tells "no reader" apart as C{ENXIO}.

The writer does not queue: its owner (the keyboard or mouse service) runs one
job at a time and awaits L{ReportWriter.write} for each report, which is what
makes the order on the wire strictly the order of the queue.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Any, Callable, Coroutine, TypeVar

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorFDSet,
    IReactorTime,
    IReadDescriptor,
    IWriteDescriptor,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tinypilotd.errors import DeviceUnavailable

T = TypeVar("T")

#: How often an C{EAGAIN}-ed report is retried even without C{POLLOUT}.
RETRY_INTERVAL = 0.005
#: Background retries of an owed release: first delay and cap (seconds).
RELEASE_RETRY_MIN = 0.05
RELEASE_RETRY_MAX = 2.0


def errno_name(code: int | None) -> str:
    """
    C{errno.ESHUTDOWN} -> C{"ESHUTDOWN"}, for logs and error reasons.
    """
    if code is None:
        return "unknown error"
    return errno.errorcode.get(code, f"errno {code}")


def detached(d: Deferred[T]) -> Deferred[T]:
    """
    A Deferred that follows C{d} but whose cancellation does not reach it.

    Klein cancels a handler's Deferred when its client disconnects; the HID
    queue must still write the keystroke it accepted (a press without its
    release would leave a key down on the target).  Cancelling the returned
    Deferred only detaches the caller; C{d}'s own result, success or failure,
    is consumed here so that an abandoned failure is not reported as an
    unhandled error.
    """
    out: Deferred[T] = Deferred()

    def relay(result: T | Failure) -> None:
        if out.called:
            return None
        if isinstance(result, Failure):
            out.errback(result)
        else:
            out.callback(result)
        return None

    d.addBoth(relay)
    return out


class SerialRunner:
    """
    Runs a device queue's loop, never two at once: L{kick} starts the loop
    unless it is running already, and L{whenIdle} fires once the loop has run
    dry.  The loop is its owner's coroutine that takes jobs until its queue
    is empty; running it alone is what keeps the order on the wire the order
    of the queue.
    """

    log = Logger()

    def __init__(
        self,
        loop: Callable[[], Coroutine[Any, Any, None]],
        *,
        what: str,
        onIdle: Callable[[], None] | None = None,
    ) -> None:
        """
        @param what: the device, for the log line of a crashed loop.
        @param onIdle: called when the loop has run dry, before the
            L{whenIdle} waiters fire.
        """
        self._loop = loop
        self._what = what
        self._onIdle = onIdle
        self.busy = False
        self._idleWaiters: list[Deferred[None]] = []

    def kick(self) -> None:
        if self.busy:
            return
        self.busy = True
        d = Deferred.fromCoroutine(self._run())
        d.addErrback(lambda f: self.log.failure("{what}: queue runner crashed", f, what=self._what))

    def whenIdle(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if self.busy:
            self._idleWaiters.append(d)
        else:
            d.callback(None)
        return d

    async def _run(self) -> None:
        try:
            await self._loop()
        finally:
            self.busy = False
            if self._onIdle is not None:
                self._onIdle()
            waiters, self._idleWaiters = self._idleWaiters, []
            for waiter in waiters:
                waiter.callback(None)


class ReleaseRetry:
    """
    The background retry of a release that a failed write left owed: a key
    or button still down on the target that nobody asked to hold.

    L{schedule} arms a timer whose delay doubles from L{RELEASE_RETRY_MIN}
    to L{RELEASE_RETRY_MAX}; when it fires, L{due} is set and the owner's
    queue runner kicked, and the owner's loop writes the release when no
    request is waiting.  One log line when a release becomes owed, one when
    it is made good.
    """

    log = Logger()

    def __init__(self, runner: SerialRunner, clock: IReactorTime, *, what: str, thing: str) -> None:
        """
        @param what: the device, e.g. C{"keyboard /dev/hidg0"}.
        @param thing: what may be down, C{"key"} or C{"button"}.
        """
        self._runner = runner
        self._clock = clock
        self._what = what
        self._thing = thing
        self._call: IDelayedCall | None = None
        self._delay = RELEASE_RETRY_MIN
        self.due = False

    def schedule(self) -> None:
        if self._call is not None and self._call.active():
            return
        if self._delay == RELEASE_RETRY_MIN:
            self.log.warn(
                "{what}: a {thing} may still be down on the target; releasing it"
                " as soon as the device takes a report",
                what=self._what,
                thing=self._thing,
            )
        self._call = self._clock.callLater(self._delay, self._fire)
        self._delay = min(self._delay * 2, RELEASE_RETRY_MAX)

    def _fire(self) -> None:
        self._call = None
        self.due = True
        self._runner.kick()

    def recovered(self) -> None:
        """
        The release reached the target.
        """
        self.cancel()
        if self._delay != RELEASE_RETRY_MIN:
            self.log.info(
                "{what}: released the {thing}s left down by a failed write",
                what=self._what,
                thing=self._thing,
            )
        self._delay = RELEASE_RETRY_MIN

    def cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self.due = False


@implementer(IReadDescriptor, IWriteDescriptor)
class _Descriptor:
    """
    The reactor's handle on a writer's file descriptor: one object for both
    directions, as the poll-based reactors key their bookkeeping by fd.
    """

    def __init__(self, owner: ReportWriter, fd: int) -> None:
        self._owner = owner
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return self._owner.path

    def doRead(self) -> None:
        self._owner._readable()

    def doWrite(self) -> None:
        self._owner._writable()

    def connectionLost(self, reason: Failure) -> None:
        # The reactor saw an error condition (e.g. EPOLLERR on a FIFO whose
        # reader went away) and already removed us from both sets.
        self._owner._descriptorLost(self)


class ReportWriter:
    """
    Writes reports of one fixed size to one HID device, never blocking.

    @ivar path: the device path, as configured.
    """

    log = Logger()

    def __init__(
        self,
        path: str,
        report_size: int,
        *,
        name: str,
        write_timeout: float = 0.5,
        retry_interval: float = RETRY_INTERVAL,
        on_read: Callable[[bytes], None] | None = None,
        reactor: object = None,
    ) -> None:
        """
        @param name: what the device is to an operator ("keyboard", "mouse").
        @param write_timeout: how long one report may wait for C{EAGAIN} to
            clear before it fails.
        @param on_read: called with the bytes of each output report read from
            a character device (the keyboard's LED state).
        @param reactor: an L{IReactorFDSet} and L{IReactorTime}.
        """
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.path = path
        self.name = name
        self._report_size = report_size
        self._timeout = write_timeout
        self._retry_interval = retry_interval
        self._on_read = on_read
        self._reactor = reactor
        self._fd: int | None = None
        self._descriptor: _Descriptor | None = None
        self._pollable = False
        self._reading = False
        self._writing = False
        self._waiter: Deferred[None] | None = None
        # None until the first open or write tells us; then True/False.
        self._reachable: bool | None = None

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def open(self) -> None:
        """
        Open the device if it is not open yet.

        @raise DeviceUnavailable: the device cannot be opened now.
        """
        if self._fd is not None:
            return
        try:
            mode = os.stat(self.path).st_mode
            is_fifo = stat.S_ISFIFO(mode)
            flags = os.O_WRONLY if is_fifo else os.O_RDWR
            fd = os.open(self.path, flags | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise self._unreachable(
                f"{errno_name(e.errno)} on open",
                "requests fail at once; the device is reopened for each new one",
            ) from None
        self._fd = fd
        self._descriptor = _Descriptor(self, fd)
        self._pollable = is_fifo or stat.S_ISCHR(mode)
        if self._on_read is not None and stat.S_ISCHR(mode):
            self._reactor.addReader(self._descriptor)  # type: ignore[attr-defined]
            self._reading = True

    def close(self) -> None:
        """
        Close the device (it is reopened by the next write).
        """
        descriptor, fd = self._descriptor, self._fd
        if fd is None or descriptor is None:
            return
        reactor: IReactorFDSet = self._reactor  # type: ignore[assignment]
        if self._reading:
            reactor.removeReader(descriptor)
            self._reading = False
        if self._writing:
            reactor.removeWriter(descriptor)
            self._writing = False
        self._fd = None
        self._descriptor = None
        os.close(fd)
        self._wake()

    async def write(self, report: bytes) -> None:
        """
        Write one report, waiting out C{EAGAIN} for at most the write timeout.

        @raise DeviceUnavailable: the device is absent, unplugged, or did not
            take the report in time.
        """
        clock: IReactorTime = self._reactor  # type: ignore[assignment]
        deadline: float | None = None
        while True:
            self.open()
            assert self._fd is not None
            try:
                written = os.write(self._fd, report)
            except BlockingIOError:
                now = clock.seconds()
                if deadline is None:
                    deadline = now + self._timeout
                if now >= deadline:
                    raise self._unreachable(
                        f"timed out after {self._timeout:g}s",
                        "the target is not reading; each report waits up to"
                        f" {self._timeout:g}s",
                    ) from None
                await self._waitWritable(min(self._retry_interval, deadline - now))
                continue
            except OSError as e:
                self.close()
                raise self._unreachable(
                    errno_name(e.errno),
                    "requests fail at once; the device is reopened for each"
                    " new one",
                ) from None
            if written != len(report):
                raise self._unreachable(
                    f"short write ({written} of {len(report)} bytes)",
                    "the report was cut short and will not reach the target",
                )
            if self._reachable is not True:
                if self._reachable is False:
                    self.log.info(
                        "{device} {path} is reachable again",
                        device=self.name,
                        path=self.path,
                    )
                self._reachable = True
            return

    async def _waitWritable(self, delay: float) -> None:
        """
        Sleep until the device looks writable or C{delay} seconds pass.
        """
        waiter: Deferred[None] = Deferred()
        self._waiter = waiter
        if self._pollable and not self._writing and self._descriptor is not None:
            self._reactor.addWriter(self._descriptor)  # type: ignore[attr-defined]
            self._writing = True
        timer: IDelayedCall = self._reactor.callLater(  # type: ignore[attr-defined]
            delay, self._wake
        )
        try:
            await waiter
        except CancelledError:
            pass
        finally:
            if timer.active():
                timer.cancel()
            if self._waiter is waiter:
                self._waiter = None
            if self._writing and self._descriptor is not None:
                self._reactor.removeWriter(self._descriptor)  # type: ignore[attr-defined]
                self._writing = False

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.callback(None)

    def _writable(self) -> None:
        if self._writing and self._descriptor is not None:
            self._reactor.removeWriter(self._descriptor)  # type: ignore[attr-defined]
            self._writing = False
        self._wake()

    def _readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            return
        except OSError as e:
            data = b""
            reason = errno_name(e.errno)
        else:
            reason = "end of file"
        if not data:
            # Stop watching rather than spin on a descriptor that keeps
            # reporting an error; the next reopen starts reading again.
            self.log.info(
                "{device} {path}: stopped reading output reports ({reason})"
                " until the device is reopened",
                device=self.name,
                path=self.path,
                reason=reason,
            )
            if self._reading and self._descriptor is not None:
                self._reactor.removeReader(self._descriptor)  # type: ignore[attr-defined]
                self._reading = False
            return
        assert self._on_read is not None
        self._on_read(data)

    def _descriptorLost(self, descriptor: _Descriptor) -> None:
        if descriptor is not self._descriptor:
            return
        self._reading = False
        self._writing = False
        # The next write attempt finds out what happened (EPIPE, ESHUTDOWN).
        self._wake()

    def _unreachable(self, reason: str, action: str) -> DeviceUnavailable:
        """
        Note a failure: log it if the device was reachable until now.
        """
        if self._reachable is not False:
            self.log.warn(
                "{device} {path} is unreachable ({reason}); {action}",
                device=self.name,
                path=self.path,
                reason=reason,
                action=action,
            )
            self._reachable = False
        return DeviceUnavailable(self.path, reason)
