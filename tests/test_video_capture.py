"""
Tests for L{tinypilotd.video.capture}: supervising the capture child, on a
fake reactor that is both a L{MemoryReactor} and a L{Clock} and whose
processes are puppets the tests drive.
"""

from __future__ import annotations

import io
import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from tinypilotd.video.cache import FrameCache
from tinypilotd.video.capture import CaptureService

_pids = itertools.count(1000)


@implementer(IProcessTransport)
class FakeProcess:
    """
    A child process the test controls: it writes what the test says, exits
    when the test says, and reacts to TERM/KILL as configured.
    """

    def __init__(self, reactor: FakeProcessReactor, proto: Any, args: list[str],
                 env: object, stdout: int) -> None:
        self.reactor = reactor
        self.stdout: int | None = os.dup(stdout)  # the child's fd 1
        self.proto = proto
        self.args = args
        self.env = env
        self.pid: int | None = next(_pids)
        self.signals: list[str] = []
        self.stdin_closed = False
        self.pipes_closed = False
        self.ignore_term = reactor.ignore_term
        self.ignore_kill = reactor.ignore_kill
        self.hold_pipes = reactor.hold_pipes
        self._ended: Failure | None = None

    def closeStdin(self) -> None:
        self.stdin_closed = True

    def signalProcess(self, sig: str) -> None:
        if self.pid is None:
            raise ProcessExitedAlready()
        self.signals.append(sig)
        if sig == "TERM" and not self.ignore_term:
            self.reactor.callLater(0.5, self.exit, signal=15)
        elif sig == "KILL" and not self.ignore_kill:
            self.exit(signal=9)

    def out(self, data: bytes) -> None:
        assert self.stdout is not None
        os.write(self.stdout, data)
        self.reactor.pump()

    def close_stdout(self) -> None:
        if self.stdout is not None:
            os.close(self.stdout)
            self.stdout = None
            self.reactor.pump()

    def err(self, data: bytes) -> None:
        self.proto.childDataReceived(2, data)

    def exit(self, code: int | None = None, signal: int | None = None) -> None:
        if self.pid is None:
            return
        self.pid = None
        if not self.hold_pipes and not self.reactor.eof_after_exit:
            self.close_stdout()
        if code == 0:
            reason = Failure(ProcessDone(0))
        else:
            reason = Failure(ProcessTerminated(code, signal))
        self.proto.processExited(reason)
        if self.hold_pipes:
            self._ended = reason
        else:
            self.proto.processEnded(reason)

    def loseConnection(self) -> None:
        self.pipes_closed = True
        if self._ended is not None:
            reason, self._ended = self._ended, None
            self.proto.processEnded(reason)


class FakeProcessReactor(MemoryReactorClock):
    """
    MemoryReactor + Clock with a spawnProcess that makes L{FakeProcess}es,
    or raises C{spawn_error} as posix_spawnp does for a missing command.
    """

    def __init__(self) -> None:
        super().__init__()
        self.processes: list[FakeProcess] = []
        self.spawned_at: list[float] = []
        self.spawn_error: OSError | None = None
        self.ignore_term = False
        self.ignore_kill = False
        self.hold_pipes = False
        self.eof_after_exit = False

    def pump(self) -> None:
        """
        Do what the reactor would for readable descriptors: read them until
        they would block, and disconnect them at end of file.
        """
        for reader in list(self.readers):
            for _ in range(16):
                why = reader.doRead()
                if why is not None:
                    self.removeReader(reader)
                    reader.connectionLost(Failure(why))
                    break

    def spawnProcess(self, processProtocol: Any, executable: Any, args: Any = (),
                     env: Any = None, path: Any = None, uid: Any = None, gid: Any = None,
                     usePTY: Any = False, childFDs: Any = None) -> FakeProcess:
        self.spawned_at.append(self.seconds())
        if self.spawn_error is not None:
            raise self.spawn_error
        assert executable == args[0]
        assert childFDs[0] == "w" and childFDs[2] == "r"
        proc = FakeProcess(self, processProtocol, list(args), env, childFDs[1])
        self.processes.append(proc)
        processProtocol.makeConnection(proc)
        return proc

    @property
    def child(self) -> FakeProcess:
        return self.processes[-1]


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """Every log line emitted during the test, formatted."""
    lines: list[str] = []

    @implementer(ILogObserver)
    def observe(event: LogEvent) -> None:
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


def _service(**kwargs: Any) -> tuple[CaptureService, FakeProcessReactor, FrameCache]:
    reactor = FakeProcessReactor()
    cache = FrameCache(clock=reactor)
    service = CaptureService(["ffmpeg", "-i", "x"], cache, reactor=reactor, **kwargs)
    return service, reactor, cache


def _jpeg(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(out, "JPEG")
    return out.getvalue()


def _fired(d: Deferred[None]) -> bool:
    out: list[object] = []
    d.addBoth(out.append)
    return bool(out) and out[0] is None


def test_start_spawns_argv_and_feeds_the_cache() -> None:
    """
    Starting the service runs argv as given (no shell, parent environment,
    stdin closed), marks the pipeline up, and turns the child's stdout into
    frames with the size from their SOF segment, in any chunking.
    """
    service, reactor, cache = _service()
    service.startService()
    child = reactor.child
    assert child.args == ["ffmpeg", "-i", "x"]
    assert child.env is None
    assert child.stdin_closed
    assert cache.pipeline_up
    jpeg = _jpeg((320, 240))
    stream = jpeg + jpeg
    for i in range(0, len(stream), 100):
        child.out(stream[i : i + 100])
    frame = cache.latest
    assert frame is not None
    assert (frame.data, frame.width, frame.height, frame.sequence) == (jpeg, 320, 240, 2)


def test_stderr_lines_are_logged(logged: list[str]) -> None:
    """
    The child's stderr is logged line by line, whether lines end in \\n or
    in ffmpeg's progress \\r, and a last line without newline is logged
    when the child exits.
    """
    service, reactor, cache = _service()
    service.startService()
    reactor.child.err(b"Input #0, video4linux2\nframe=  1\rfra")
    reactor.child.err(b"me=  2\rlast words")
    reactor.child.exit(code=1)
    captured = [line for line in logged if line.startswith("video capture: ")]
    assert captured == [
        "video capture: Input #0, video4linux2",
        "video capture: frame=  1",
        "video capture: frame=  2",
        "video capture: last words",
    ]


def test_stderr_is_rate_limited(logged: list[str]) -> None:
    """
    A child that floods stderr gets at most stderr_burst lines logged per
    stderr_period; when the period ends one line says how many were
    suppressed, and logging resumes afterwards.
    """
    service, reactor, cache = _service(stderr_burst=5, stderr_period=10.0)
    service.startService()
    for i in range(50):
        reactor.child.err(b"line %d\n" % i)
        reactor.advance(0.1)
    captured = [line for line in logged if line.startswith("video capture: ")]
    assert captured == [f"video capture: line {i}" for i in range(5)]
    assert not any("suppressed" in line for line in logged)
    reactor.advance(4.9)
    assert not any("suppressed" in line for line in logged)
    reactor.advance(0.2)  # ten seconds after the first line
    assert [line for line in logged if "suppressed" in line] == [
        "suppressed 45 stderr lines from the video capture command in the last 10s"
    ]
    reactor.child.err(b"again\n")
    assert logged[-1] == "video capture: again"


def test_restart_delay_doubles_up_to_the_maximum(logged: list[str]) -> None:
    """
    A child that keeps dying young is restarted after min_restart_delay,
    then twice that, and so on up to max_restart_delay; each exit is logged
    with its status and the coming delay.
    """
    service, reactor, cache = _service(min_restart_delay=1.0, max_restart_delay=30.0)
    service.startService()
    gaps = []
    for _ in range(7):
        died_at = reactor.seconds()
        reactor.child.exit(code=1)
        assert not cache.pipeline_up
        [restart] = reactor.getDelayedCalls()
        gaps.append(restart.getTime() - died_at)
        before = len(reactor.processes)
        reactor.advance(gaps[-1])
        assert len(reactor.processes) == before + 1
    assert gaps == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    exits = [line for line in logged if "exited" in line]
    assert exits[0] == (
        "video capture command ffmpeg exited (exit status 1) after 0.0s;"
        " restarting in 1.0s"
    )
    assert exits[-1].endswith("restarting in 30.0s")


def test_delay_resets_after_a_stable_run(logged: list[str]) -> None:
    """
    A child that ran at least stable_run seconds is restarted at once and
    the delay goes back to the minimum, as procmon does.
    """
    service, reactor, cache = _service(min_restart_delay=1.0, stable_run=5.0)
    service.startService()
    for _ in range(3):
        reactor.child.exit(code=1)
        reactor.advance(60)
    assert service.delay == 8.0
    reactor.advance(5.0)
    reactor.child.exit(signal=11)
    assert "exited (killed by SIGSEGV)" in logged[-1]
    assert logged[-1].endswith("; restarting in 0.0s")
    reactor.advance(0)
    assert len(reactor.processes) == 5
    assert service.delay == 1.0
    reactor.child.exit(code=1)
    assert logged[-1].endswith("restarting in 1.0s")


def test_stop_sends_term_and_waits_for_the_child() -> None:
    """
    stopService sends SIGTERM and returns a Deferred that fires once the
    child has exited; no SIGKILL follows and no restart is scheduled.
    """
    service, reactor, cache = _service(kill_grace=2.0)
    service.startService()
    child = reactor.child
    d = service.stopService()
    assert child.signals == ["TERM"]
    assert not d.called
    reactor.advance(0.5)  # the fake child exits 0.5 s after TERM
    assert _fired(d)
    reactor.advance(100)
    assert child.signals == ["TERM"]
    assert len(reactor.processes) == 1
    assert not cache.pipeline_up
    assert reactor.getDelayedCalls() == []


def test_stop_kills_a_child_that_ignores_term(logged: list[str]) -> None:
    """
    A child still alive kill_grace seconds after SIGTERM gets SIGKILL, and
    the stop Deferred fires when it is gone.
    """
    service, reactor, cache = _service(kill_grace=2.0)
    reactor.ignore_term = True
    service.startService()
    child = reactor.child
    d = service.stopService()
    reactor.advance(1.9)
    assert child.signals == ["TERM"]
    assert not d.called
    reactor.advance(0.1)
    assert child.signals == ["TERM", "KILL"]
    assert _fired(d)
    assert any("ignored SIGTERM for 2.0s; sending SIGKILL" in line for line in logged)
    assert logged[-1] == "video capture stopped (killed by SIGKILL) after 2.0s"
    assert reactor.getDelayedCalls() == []


def test_stop_gives_up_on_an_unkillable_child(logged: list[str]) -> None:
    """
    A child that survives SIGKILL (stuck in the kernel) does not hang
    shutdown: after another grace period the stop Deferred fires anyway,
    with an error logged.
    """
    service, reactor, cache = _service(kill_grace=2.0)
    reactor.ignore_term = reactor.ignore_kill = True
    service.startService()
    child = reactor.child
    d = service.stopService()
    reactor.advance(2.0)
    assert not d.called
    reactor.advance(2.0)
    assert _fired(d)
    assert any("survived SIGKILL" in line for line in logged)
    child.exit(signal=9)  # finally gone: nothing is restarted
    reactor.advance(100)
    assert len(reactor.processes) == 1


def test_stop_while_waiting_to_restart() -> None:
    """
    Stopping between an exit and the scheduled restart cancels the restart
    and returns an already-fired Deferred.
    """
    service, reactor, cache = _service(min_restart_delay=5.0)
    service.startService()
    reactor.child.exit(code=1)
    assert len(reactor.getDelayedCalls()) == 1
    d = service.stopService()
    assert _fired(d)
    assert reactor.getDelayedCalls() == []
    reactor.advance(100)
    assert len(reactor.processes) == 1


def test_stop_twice_and_restart_service() -> None:
    """
    A second stopService while the child is still going waits for the same
    exit without signalling again; starting the service later runs a new
    child.
    """
    service, reactor, cache = _service()
    service.startService()
    first = reactor.child
    d1 = service.stopService()
    d2 = service.stopService()
    assert first.signals == ["TERM"]
    reactor.advance(0.5)
    assert _fired(d1) and _fired(d2)
    service.startService()
    assert len(reactor.processes) == 2
    assert cache.pipeline_up


@pytest.mark.parametrize("ignore_term", [False, True])
def test_start_while_stopping(ignore_term: bool, logged: list[str]) -> None:
    """
    Starting the service again before the stopped child has exited lets
    the stop finish: its Deferred fires once that child is gone (after
    SIGTERM, or SIGKILL if TERM is ignored), and a new child starts at
    once, without the restart delay of a crash.
    """
    service, reactor, cache = _service(kill_grace=2.0, min_restart_delay=5.0)
    reactor.ignore_term = ignore_term
    service.startService()
    first = reactor.child
    d = service.stopService()
    service.startService()
    assert len(reactor.processes) == 1
    reactor.advance(2.0 if ignore_term else 0.5)
    assert _fired(d)
    assert first.signals == (["TERM", "KILL"] if ignore_term else ["TERM"])
    assert len(reactor.processes) == 2
    assert reactor.child.pid is not None and cache.pipeline_up
    assert any(line.startswith("video capture stopped") for line in logged)
    reactor.advance(100)
    assert reactor.child.signals == []
    assert len(reactor.processes) == 2 and service.running


def test_start_while_stopping_an_unkillable_child() -> None:
    """
    If the service starts again while a stop waits for a child that
    survives SIGKILL, giving up on that child completes the stop and
    starts a new one.
    """
    service, reactor, cache = _service(kill_grace=2.0)
    reactor.ignore_term = reactor.ignore_kill = True
    service.startService()
    first = reactor.child
    d = service.stopService()
    service.startService()
    reactor.advance(2.0)  # SIGKILL
    assert not d.called
    reactor.advance(2.0)
    assert _fired(d)
    assert len(reactor.processes) == 2
    first.exit(signal=9)  # gone at last: the new child carries on
    reactor.advance(100)
    assert len(reactor.processes) == 2 and reactor.child.pid is not None


def test_missing_command_is_retried_with_backoff(logged: list[str]) -> None:
    """
    A command that cannot be executed (not installed) is logged as such,
    keeps the pipeline down, and is retried with the same doubling delay;
    once it can run, it does.
    """
    service, reactor, cache = _service(min_restart_delay=1.0)
    reactor.spawn_error = FileNotFoundError(2, "No such file or directory")
    service.startService()
    assert not cache.pipeline_up
    assert logged[-1] == (
        "cannot start video capture command ffmpeg: No such file or directory;"
        " retrying in 1.0s"
    )
    reactor.advance(1.0)
    assert logged[-1].endswith("retrying in 2.0s")
    reactor.advance(2.0)
    assert logged[-1].endswith("retrying in 4.0s")
    assert reactor.spawned_at == [0.0, 1.0, 3.0]
    reactor.spawn_error = None
    reactor.advance(4.0)
    assert len(reactor.processes) == 1
    assert cache.pipeline_up
    d = service.stopService()
    reactor.advance(1)
    assert _fired(d)


def test_exit_clears_the_frame() -> None:
    """
    When the child exits the pipeline is down: screenshot() answers None
    until the restarted child delivers a new frame.
    """
    service, reactor, cache = _service(min_restart_delay=1.0)
    service.startService()
    jpeg = _jpeg((64, 48))
    reactor.child.out(jpeg)
    assert cache.current() is not None
    reactor.child.exit(code=1)
    assert cache.current() is None
    reactor.advance(1.0)
    assert cache.current() is None
    reactor.child.out(jpeg)
    frame = cache.current()
    assert frame is not None and frame.sequence == 2


def test_child_restarted_mid_frame_drops_the_partial_frame() -> None:
    """
    Each run of the child gets its own splitter: half a frame written by a
    child that died is not glued to the next child's output.
    """
    service, reactor, cache = _service(min_restart_delay=1.0)
    service.startService()
    jpeg = _jpeg((64, 48))
    reactor.child.out(jpeg[: len(jpeg) // 2])
    reactor.child.exit(code=1)
    reactor.advance(1.0)
    reactor.child.out(jpeg[len(jpeg) // 2 :] + jpeg)
    frame = cache.latest
    assert frame is not None and frame.data == jpeg and frame.sequence == 1


def test_pipes_held_open_after_exit(logged: list[str]) -> None:
    """
    If the child exits but something it started keeps its stdout open,
    the service closes the pipes after kill_grace so supervision goes on.
    """
    service, reactor, cache = _service(kill_grace=2.0, min_restart_delay=1.0)
    reactor.hold_pipes = True
    service.startService()
    child = reactor.child
    child.exit(code=1)
    assert cache.pipeline_up
    reactor.advance(2.0)
    assert child.pipes_closed
    assert reactor.readers == set()
    assert not cache.pipeline_up
    child.close_stdout()
    assert any("output pipes are still open" in line for line in logged)
    reactor.advance(1.0)
    assert len(reactor.processes) == 2


def test_empty_command_rejected() -> None:
    """
    An empty argv is a configuration error, reported when the service is
    built.
    """
    with pytest.raises(ValueError, match="empty"):
        CaptureService([], FrameCache(clock=MemoryReactorClock()), reactor=FakeProcessReactor())


def test_frames_written_just_before_exit_are_kept() -> None:
    """
    When the child's exit is noticed before the end of its stdout, the run
    is not over until the pipe is drained: the last frames still reach the
    cache, and only then does the service restart the child.
    """
    service, reactor, cache = _service(min_restart_delay=1.0)
    reactor.eof_after_exit = True
    service.startService()
    child = reactor.child
    jpeg = _jpeg((32, 16))
    assert child.stdout is not None
    os.write(child.stdout, jpeg)
    child.exit(code=0)
    assert reactor.getDelayedCalls() != [] and not service.restarts
    child.close_stdout()
    assert cache.sequence == 1
    assert service.restarts == 1


def test_stdout_pipe_is_enlarged() -> None:
    """
    The child's stdout is a pipe made by the service, enlarged so that the
    reactor reads a 1080p frame in a few large chunks rather than in 8 KiB
    pieces, and read through the reactor.
    """
    import fcntl

    service, reactor, cache = _service()
    service.startService()
    child = reactor.child
    assert child.stdout is not None
    assert fcntl.fcntl(child.stdout, fcntl.F_GETPIPE_SZ) >= 256 * 1024
    assert len(reactor.readers) == 1
    child.exit(code=0)
    assert reactor.readers == set()
