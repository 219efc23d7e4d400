"""
(8) GET /api/v1/screenshot with the capture pipeline reading vivid's
/dev/video0 through ffmpeg: a decodable JPEG of the configured size; after the
capture child is killed the daemon restarts it and screenshots resume.
"""

import datetime
import io
import os
import signal
import time

from PIL import Image

from conftest import VIDEO_SIZE


def capture_time(response):
    return datetime.datetime.fromisoformat(
        response.headers["x-capture-time"].replace("Z", "+00:00")).timestamp()


def wait_for_screenshot(client, timeout, newer_than=None):
    """Poll until a 200 screenshot (captured after `newer_than`, if given)."""
    deadline = time.monotonic() + timeout
    statuses = []
    while time.monotonic() < deadline:
        response = client.get("/api/v1/screenshot")
        statuses.append(response.status)
        if response.status == 200 and (newer_than is None or capture_time(response) > newer_than):
            return response, statuses
        time.sleep(0.25)
    raise AssertionError(f"no new screenshot within {timeout} s; statuses seen: {sorted(set(statuses))}")


def assert_jpeg_of_configured_size(response):
    assert response.headers["content-type"] == "image/jpeg"
    assert int(response.headers["content-length"]) == len(response.body)
    assert response.headers["cache-control"] == "no-store"
    image = Image.open(io.BytesIO(response.body))
    assert image.format == "JPEG"
    image.load()  # decodes every scan: a truncated frame raises here
    assert image.size == VIDEO_SIZE


def capture_children(daemon):
    pids = []
    for pid in daemon.children():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv0 = fh.read().split(b"\0")[0]
        except OSError:
            continue
        if os.path.basename(argv0) == b"ffmpeg":
            pids.append(pid)
    return pids


def test_screenshot_is_a_decodable_jpeg_of_the_configured_size(daemon, client, figures):
    """ffmpeg encodes vivid's frames; the daemon serves the latest as a whole,
    decodable JPEG with the configured width and height."""
    response, _ = wait_for_screenshot(client, timeout=90)
    assert_jpeg_of_configured_size(response)
    again, _ = wait_for_screenshot(client, timeout=30, newer_than=capture_time(response))
    assert int(again.headers["x-frame-sequence"]) > int(response.headers["x-frame-sequence"])
    figures["screenshot size (bytes)"] = len(response.body)


def test_a_killed_capture_child_is_restarted_and_screenshots_resume(daemon, client, figures):
    """SIGKILL the ffmpeg child: the daemon starts a new one (after its
    restart delay) and serves frames captured after the kill."""
    wait_for_screenshot(client, timeout=90)
    before = capture_children(daemon)
    assert len(before) == 1, f"capture children: {before}"
    killed_at = time.time()
    os.kill(before[0], signal.SIGKILL)
    started = time.monotonic()
    response, statuses = wait_for_screenshot(client, timeout=90, newer_than=killed_at)
    assert_jpeg_of_configured_size(response)
    after = capture_children(daemon)
    assert len(after) == 1 and after != before, (before, after)
    figures["capture child killed -> new screenshot (s)"] = round(time.monotonic() - started, 1)
    figures["screenshot statuses while the capture restarted"] = sorted(set(statuses))
