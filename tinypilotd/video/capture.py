"""
Run the video capture command and keep it running.

L{CaptureService} spawns the configured command (an argv list, no shell)
through the reactor, cuts its stdout into JPEG frames for the L{FrameCache},
logs its stderr with a rate limit, and restarts it when it exits: at once
after a stable run, otherwise after a delay that doubles from
C{min_restart_delay} up to C{max_restart_delay} while the child keeps dying
young (the algorithm of L{twisted.runner.procmon}).
"""

from __future__ import annotations

import fcntl
import os
import signal
from collections.abc import Sequence

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorProcess,
    IReactorTime,
    IReadDescriptor,
)
from twisted.internet.main import CONNECTION_DONE
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tinypilotd.video.cache import FrameCache
from tinypilotd.video.jpeg import DEFAULT_MAX_FRAME_SIZE, MJPEGSplitter
from tinypilotd.video.ratelimit import RateLimitedLog

_MAX_LINE = 4096
READ_SIZE = 1024 * 1024
PIPE_SIZE = 1024 * 1024


def describe_exit(reason: Failure) -> str:
    """
    Say how a child ended, for a log line: C{"exit status 1"},
    C{"killed by SIGTERM"}.
    """
    value = reason.value
    if isinstance(value, ProcessTerminated):
        if value.signal is not None:
            try:
                name = signal.Signals(value.signal).name
            except ValueError:
                name = f"signal {value.signal}"
            return f"killed by {name}"
        return f"exit status {value.exitCode}"
    if isinstance(value, ProcessDone):
        return "exit status 0"
    return str(value)


@implementer(IReadDescriptor)
class _StdoutReader:
    """
    The read end of the child's stdout pipe, read by the reactor in large
    chunks.

    Twisted's own process pipes read 8 KiB per wakeup; a 1080p MJPEG stream
    is 5-15 MB/s, and at that size the reactor round trips cost more than
    splitting the frames.  So the service makes the stdout pipe itself
    (enlarged to C{PIPE_SIZE} where the kernel allows) and hands the child
    its write end through C{childFDs}.
    """

    def __init__(self, fd: int, protocol: _CaptureProtocol) -> None:
        self._fd = fd
        self._protocol = protocol
        self._buf = bytearray(READ_SIZE)

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "video capture stdout"

    def doRead(self) -> BaseException | None:  # type: ignore[override]  # the reactor takes exceptions too
        try:
            n = os.readv(self._fd, [self._buf])
        except BlockingIOError:
            return None
        except OSError as e:
            return e
        if not n:
            return CONNECTION_DONE
        with memoryview(self._buf) as view:
            self._protocol.stdout_received(view[:n])
        return None

    def connectionLost(self, reason: Failure) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self._protocol.stdout_closed()


class _CaptureProtocol(ProcessProtocol):
    """
    One run of the capture child: stdout to the splitter, stderr to the log.
    The run is over once the child has ended and its stdout is closed.
    """

    def __init__(self, service: CaptureService) -> None:
        self._service = service
        self._splitter = MJPEGSplitter(
            self._deliver,
            max_frame_size=service.max_frame_size,
            log=service._drop_log,
        )
        self._err = bytearray()
        self.exited = False
        self._linger: IDelayedCall | None = None
        self.stdout: _StdoutReader | None = None
        self._ended: Failure | None = None

    def _deliver(self, data: bytes, width: int, height: int) -> None:
        self._service.cache.put(data, width, height)

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.closeStdin()
        self._service._child_started(self)

    def stdout_received(self, data: memoryview) -> None:
        self._splitter.feed(data)  # type: ignore[arg-type]

    def stdout_closed(self) -> None:
        self.stdout = None
        self._maybe_done()

    def errReceived(self, data: bytes) -> None:
        err = self._err
        err += data.replace(b"\r", b"\n")
        end = err.rfind(b"\n")
        if end >= 0:
            for line in err[:end].split(b"\n"):
                self._line(line)
            del err[: end + 1]
        if len(err) > _MAX_LINE:
            self._line(err[:_MAX_LINE])
            del err[:]

    def _line(self, line: bytes | bytearray) -> None:
        text = line.decode("utf-8", "replace").rstrip()
        if text:
            self._service._stderr_log.info(
                "video capture: {line}", line=text, command=self._service.argv[0]
            )

    def processExited(self, reason: Failure) -> None:
        # The child is gone.  If something it started still holds our pipes
        # open, the run would not end; stop listening after a grace period
        # so supervision carries on.
        self.exited = True
        self._linger = self._service._clock.callLater(
            self._service.kill_grace, self.close_pipes
        )

    def close_pipes(self) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None
        self._service.log.warn(
            "video capture command exited but its output pipes are still"
            " open; closing them"
        )
        if self._ended is None and self.transport is not None:
            self.transport.loseConnection()
        if self.stdout is not None:
            self._service._reactor.removeReader(self.stdout)  # type: ignore[attr-defined]
            self.stdout.connectionLost(Failure(CONNECTION_DONE))

    def processEnded(self, reason: Failure) -> None:
        self._ended = reason
        if self._err:
            self._line(self._err)
            del self._err[:]
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self._ended is None or self.stdout is not None:
            return
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None
        self._service._child_ended(self, self._ended)


class CaptureService(Service):
    """
    Supervise the video capture child.

    @ivar argv: the command, C{argv[0]} looked up on C{$PATH}.
    @ivar cache: where frames go; its C{pipeline_up} follows the child.
    @ivar min_restart_delay: first delay after the child dies young.
    @ivar max_restart_delay: the delay doubles up to this.
    @ivar kill_grace: seconds between SIGTERM and SIGKILL when stopping.
    @ivar stable_run: a child that ran at least this long did not die young:
        it is restarted at once and the delay goes back to the minimum.
    @ivar max_frame_size: larger frames are dropped.
    """

    log = Logger()

    def __init__(
        self,
        argv: Sequence[str],
        cache: FrameCache,
        *,
        reactor: IReactorProcess | None = None,
        min_restart_delay: float = 1.0,
        max_restart_delay: float = 30.0,
        kill_grace: float = 2.0,
        stable_run: float = 5.0,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        stderr_burst: int = 20,
        stderr_period: float = 10.0,
    ) -> None:
        if not argv:
            raise ValueError("the video capture command is empty")
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor  # type: ignore[assignment]
        self.argv = list(argv)
        self.cache = cache
        self._reactor: IReactorProcess = reactor  # type: ignore[assignment]
        self._clock: IReactorTime = reactor  # type: ignore[assignment]
        self.min_restart_delay = min_restart_delay
        self.max_restart_delay = max_restart_delay
        self.kill_grace = kill_grace
        self.stable_run = stable_run
        self.max_frame_size = max_frame_size
        self._stderr_log = RateLimitedLog(
            self.log,
            self._clock,
            what="stderr lines from the video capture command",
            burst=stderr_burst,
            period=stderr_period,
        )
        self._drop_log = RateLimitedLog(
            self.log,
            self._clock,
            what="video stream warnings",
            burst=stderr_burst,
            period=stderr_period,
        )
        self._delay = min_restart_delay
        self._child: _CaptureProtocol | None = None
        self._started_at = 0.0
        self._restart: IDelayedCall | None = None
        self._kill: IDelayedCall | None = None
        self._abandon: IDelayedCall | None = None
        self._gone: list[Deferred[None]] = []
        self.restarts = 0

    @property
    def delay(self) -> float:
        """The delay before the next restart if the child now died young."""
        return self._delay

    def startService(self) -> None:
        """
        Start the child, or, if a stop is still waiting for the last one to
        exit, start a new one as soon as it has.
        """
        super().startService()
        self._delay = self.min_restart_delay
        if self._child is None:
            self._spawn()

    def stopService(self) -> Deferred[None]:
        """
        Stop supervising: cancel a pending restart, send the child SIGTERM
        and, if it is still there after C{kill_grace} seconds, SIGKILL.

        @return: a Deferred that fires once the child is gone.
        """
        super().stopService()
        if self._restart is not None and self._restart.active():
            self._restart.cancel()
        self._restart = None
        child = self._child
        if child is None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._gone.append(d)
        if self._kill is None and self._abandon is None:
            self._signal(child, "TERM")
            self._kill = self._clock.callLater(self.kill_grace, self._force_stop)
        return d

    def _signal(self, child: _CaptureProtocol, sig: str) -> None:
        if child.exited or child.transport is None:
            return
        try:
            child.transport.signalProcess(sig)
        except ProcessExitedAlready:
            pass

    def _force_stop(self) -> None:
        self._kill = None
        child = self._child
        if child is None:
            return
        if child.exited:
            # The child is gone but something it started holds the pipes.
            child.close_pipes()
            return
        self.log.warn(
            "video capture command {command} ignored SIGTERM for {grace:.1f}s;"
            " sending SIGKILL",
            command=self.argv[0],
            grace=self.kill_grace,
        )
        self._abandon = self._clock.callLater(self.kill_grace, self._give_up)
        self._signal(child, "KILL")

    def _give_up(self) -> None:
        self._abandon = None
        if self._child is None:
            return
        self.log.error(
            "video capture command {command} survived SIGKILL for {grace:.1f}s;"
            " no longer waiting for it",
            command=self.argv[0],
            grace=self.kill_grace,
        )
        self._child = None
        self._fire_gone()
        if self.running and self._child is None:
            self._spawn()  # started again while the stop was waiting

    def _fire_gone(self) -> None:
        gone, self._gone = self._gone, []
        for d in gone:
            d.callback(None)

    def _spawn(self) -> None:
        self._restart = None
        child = _CaptureProtocol(self)
        self._child = child
        self._started_at = self._clock.seconds()
        read_end, write_end = os.pipe()
        try:
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # above /proc/sys/fs/pipe-max-size: keep the default
        os.set_blocking(read_end, False)
        child.stdout = _StdoutReader(read_end, child)
        try:
            self._reactor.spawnProcess(
                child,
                self.argv[0],
                self.argv,
                env=None,
                childFDs={0: "w", 1: write_end, 2: "r"},
            )
        except OSError as e:
            os.close(read_end)
            os.close(write_end)
            self._child = None
            self.cache.pipeline_up = False
            delay = self._next_delay(young=True)
            self.log.error(
                "cannot start video capture command {command}: {error};"
                " retrying in {delay:.1f}s",
                command=self.argv[0],
                error=e.strerror or str(e),
                delay=delay,
            )
            self._schedule(delay)
            return
        os.close(write_end)
        self._reactor.addReader(child.stdout)  # type: ignore[attr-defined]

    def _child_started(self, child: _CaptureProtocol) -> None:
        self.cache.pipeline_up = True
        assert child.transport is not None
        self.log.info(
            "video capture started: {argv} (pid {pid})",
            argv=" ".join(self.argv),
            pid=child.transport.pid,
        )

    def _next_delay(self, young: bool) -> float:
        if young:
            delay = self._delay
            self._delay = min(self._delay * 2, self.max_restart_delay)
        else:
            delay = 0.0
            self._delay = self.min_restart_delay
        return delay

    def _schedule(self, delay: float) -> None:
        self.restarts += 1
        self._restart = self._clock.callLater(delay, self._spawn)

    def _child_ended(self, child: _CaptureProtocol, reason: Failure) -> None:
        if child is not self._child:
            return  # abandoned after SIGKILL, ended at last
        self._child = None
        self.cache.pipeline_up = False
        self._stderr_log.flush()
        self._drop_log.flush()
        for call in (self._kill, self._abandon):
            if call is not None and call.active():
                call.cancel()
        self._kill = self._abandon = None
        ran = self._clock.seconds() - self._started_at
        status = describe_exit(reason)
        if self._gone or not self.running:
            # Stopped on purpose, even if started again since: the stop is
            # over, and a start that found this child still there gets a
            # new one now.
            self.log.info(
                "video capture stopped ({status}) after {ran:.1f}s",
                status=status,
                ran=ran,
            )
            self._fire_gone()
            if self.running and self._child is None:
                self._spawn()
            return
        delay = self._next_delay(young=ran < self.stable_run)
        self.log.warn(
            "video capture command {command} exited ({status}) after {ran:.1f}s;"
            " restarting in {delay:.1f}s",
            command=self.argv[0],
            status=status,
            ran=ran,
            delay=delay,
        )
        self._schedule(delay)
