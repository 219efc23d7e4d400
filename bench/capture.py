#!/usr/bin/env python3
"""
CPU cost of ingesting a 1080p MJPEG stream, against `cat` of the same stream.

Makes a 1080p MJPEG file with ffmpeg (testsrc2 with noise, so frames are
the size a USB HDMI dongle delivers), then measures CPU seconds per frame:

  cat writer     `cat FILE` writing into a pipe
  cat reader     `cat > /dev/null` draining that pipe (the baseline: the
                 least any reader of the stream can spend)
  regex floor    one pass of the splitter's marker regex over the stream
                 (the part no stdlib-only splitter can skip)
  in-process     MJPEGSplitter + FrameCache fed 64 KiB chunks from memory
  CaptureService the daemon's real path: a `cat FILE` child under the
                 supervisor, stdout read by the reactor, split, cached

and prints each figure with its ratio to the cat reader (target <= 3x for
the daemon's path).  Usage: bench/capture.py [--frames N] [--keep FILE]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

CHUNK = 64 * 1024


def make_stream(path: str, frames: int) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30",
         "-vf", "noise=alls=12:allf=t", "-frames:v", str(frames),
         "-f", "mjpeg", "-q:v", "5", path],
        check=True,
    )


def cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def cat_pipeline(path: str) -> tuple[float, float]:
    """CPU seconds of `cat FILE | cat > /dev/null`: (writer, reader)."""
    writer = subprocess.Popen(["cat", path], stdout=subprocess.PIPE)
    reader = subprocess.Popen(["cat"], stdin=writer.stdout, stdout=subprocess.DEVNULL)
    assert writer.stdout is not None
    writer.stdout.close()
    _, _, wu = os.wait4(writer.pid, 0)
    _, _, ru = os.wait4(reader.pid, 0)
    writer.returncode = reader.returncode = 0
    return cpu(wu), cpu(ru)


def in_process(data: bytes) -> tuple[float, int]:
    from twisted.internet.task import Clock

    from tinypilotd.video.cache import FrameCache
    from tinypilotd.video.jpeg import MJPEGSplitter

    cache = FrameCache(clock=Clock())
    cache.pipeline_up = True
    splitter = MJPEGSplitter(cache.put)
    view = memoryview(data)
    start = time.process_time()
    for i in range(0, len(data), CHUNK):
        splitter.feed(view[i : i + CHUNK])  # type: ignore[arg-type]
    return time.process_time() - start, splitter.frames


def scan_floor(data: bytes) -> float:
    """CPU seconds of one pass of the splitter's marker regex over the stream."""
    from tinypilotd.video.jpeg import _ENTROPY_MARKER

    start = time.process_time()
    pos = 0
    while (m := _ENTROPY_MARKER.search(data, pos)) is not None:
        pos = m.end()
    return time.process_time() - start


def through_service(path: str, frames: int) -> tuple[float, float, int]:
    """
    Run `cat FILE` under CaptureService on the real reactor; return the
    daemon's CPU seconds, the child's, and the frames cached.
    """
    from twisted.internet import reactor

    from tinypilotd.video.cache import FrameCache
    from tinypilotd.video.capture import CaptureService

    cache = FrameCache()
    # A long stable_run keeps the child from being restarted at once when
    # cat finishes; the stop below ends the run.
    service = CaptureService(["cat", path], cache, min_restart_delay=60, stable_run=1e9)
    result: dict[str, float] = {}

    def check() -> None:
        if not service.restarts and cache.sequence < frames:
            reactor.callLater(0.01, check)
            return
        result["self"] = cpu(resource.getrusage(resource.RUSAGE_SELF)) - before_self
        result["frames"] = cache.sequence
        service.stopService().addCallback(lambda _: reactor.stop())

    before_self = cpu(resource.getrusage(resource.RUSAGE_SELF))
    before_children = cpu(resource.getrusage(resource.RUSAGE_CHILDREN))
    reactor.callWhenRunning(service.startService)
    reactor.callLater(0.01, check)
    reactor.run()
    children = cpu(resource.getrusage(resource.RUSAGE_CHILDREN)) - before_children
    return result["self"], children, int(result["frames"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--keep", help="use/keep the stream file at this path")
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        print("ffmpeg not found", file=sys.stderr)
        return 1
    tmp = tempfile.mkdtemp(prefix="bench-capture-")
    path = args.keep or os.path.join(tmp, "stream.mjpeg")
    try:
        if not os.path.exists(path):
            make_stream(path, args.frames)
        with open(path, "rb") as f:
            data = f.read()
        n = args.frames
        print(f"stream: {n} frames 1920x1080, {len(data) / n / 1024:.0f} KiB/frame,"
              f" {len(data) / 2**20:.1f} MiB")
        cat_pipeline(path)  # warm the page cache
        writer, reader = min(cat_pipeline(path) for _ in range(3))
        in_proc, got = min(in_process(data) for _ in range(3))
        assert got == n, got
        floor = min(scan_floor(data) for _ in range(3))
        daemon, child, cached = through_service(path, n)
        assert cached == n, cached
        print(f"{'path':<34}{'CPU s':>9}{'us/frame':>10}{'vs cat reader':>15}")
        rows = [
            ("cat FILE (writer into pipe)", writer),
            ("cat > /dev/null (pipe reader)", reader),
            ("marker regex pass alone (floor)", floor),
            ("splitter+cache in-process, 64 KiB", in_proc),
            ("CaptureService daemon side", daemon),
            ("CaptureService cat child", child),
        ]
        for label, seconds in rows:
            ratio = seconds / reader if reader > 0 else float("inf")
            print(f"{label:<34}{seconds:>9.3f}{seconds / n * 1e6:>10.1f}{ratio:>14.1f}x")
        print(f"frames/s the daemon side could ingest on one core: {n / daemon:.0f}")
        print("target: CaptureService daemon side <= 3x cat reader")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
