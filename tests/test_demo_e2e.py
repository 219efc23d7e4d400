"""
End to end: the real C{twistd tinypilot} with the demo's shape (FIFOs read
by the virtual target, which is also the capture pipeline), driven over TLS
through the sample client's flow.
"""

import io
import json
import os
import time

import pytest
import pytest_twisted
from PIL import Image
from twisted.internet import reactor
from twisted.internet.task import deferLater

from tinypilotd.testing import startDaemon

pytestmark = pytest.mark.integration

EXPECTED = 'echo "Hello, World!"\nfirefox\nhttps://paint.js.org/\n'
RECTANGLE = [(0.25, 0.25, 0), (0.25, 0.25, 1), (0.75, 0.25, 1), (0.75, 0.75, 1), (0.25, 0.75, 1), (0.25, 0.25, 1), (0.25, 0.25, 0)]


def demoConfig(run: str) -> str:
    """etc/tinypilot-demo.toml with its paths under C{run}."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(here, "etc", "tinypilot-demo.toml"), encoding="utf-8") as f:
        text = f.read()
    text = text.replace('listen = ["ssl:8443:interface=127.0.0.1"]', "listen = []")
    return text.replace("run/", run + "/")


def typed(transcript: str) -> str:
    text = []
    with open(transcript, encoding="utf-8") as f:
        for line in f:
            event = json.loads(line)
            if event["event"] == "key" and event.get("char"):
                text.append(event["char"])
    return "".join(text)


def events(transcript: str, kind: str) -> list[dict]:
    with open(transcript, encoding="utf-8") as f:
        return [e for e in map(json.loads, f) if e["event"] == kind]


def isPaint(pixel) -> bool:
    r, g, b = pixel[:3]
    return r > 160 and g < 110 and b < 110


@pytest_twisted.ensureDeferred
async def test_sample_flow_end_to_end(tmp_path):
    """
    auth; Ctrl+Alt+T; paste `echo "Hello, World!"`; Enter; paste `firefox`;
    Enter; Ctrl+L; paste the URL; Enter; the mouse rectangle 25 %→75 % with
    the button held; screenshot.  Every character arrives exactly (transcript),
    a terminal window opened, and the decoded 1280×720 screenshot shows the
    rectangle's edges where they belong and not elsewhere.
    """
    run = str(tmp_path / "run")
    os.mkdir(run)
    for name in ("keyboard", "mouse", "leds", "control"):
        os.mkfifo(os.path.join(run, f"{name}.fifo"))
    daemon = startDaemon(str(tmp_path), config=demoConfig(run))
    transcript = os.path.join(run, "transcript.jsonl")
    try:
        http = daemon.client()

        async def until(predicate, what, timeout=15.0):
            deadline = time.monotonic() + timeout
            while not predicate():
                if time.monotonic() > deadline:
                    raise AssertionError(f"timed out waiting for {what}\n{daemon.logText()}")
                await deferLater(reactor, 0.05)

        # The virtual target is started by the capture supervisor; wait for it.
        await until(lambda: os.path.exists(transcript) and events(transcript, "start"), "the virtual target")
        token = json.loads(await (await http.post(daemon.url + "/api/v1/auth")).text())["token"]
        auth = {"Authorization": f"Bearer {token}"}

        async def call(path, body):
            for attempt in range(50):
                response = await http.post(f"{daemon.url}/api/v1/{path}", json=body, headers=auth)
                text = await response.text()
                # The target opens its FIFOs a moment after it starts.
                if response.code == 500 and attempt < 49:
                    await deferLater(reactor, 0.1)
                    continue
                assert response.code == 200, (path, body, response.code, text)
                return

        await call("keystroke", {"code": "KeyT", "ctrlLeft": True, "altLeft": True})
        await call("paste", {"text": 'echo "Hello, World!"', "language": "en-US"})
        await call("keystroke", {"code": "Enter"})
        await call("paste", {"text": "firefox", "language": "en-US"})
        await call("keystroke", {"code": "Enter"})
        await call("keystroke", {"code": "KeyL", "ctrlLeft": True})
        await call("paste", {"text": "https://paint.js.org/", "language": "en-US"})
        await call("keystroke", {"code": "Enter"})
        for x, y, buttons in RECTANGLE:
            await call(
                "mouseEvent",
                {"buttons": buttons, "relativeX": x, "relativeY": y, "verticalWheelDelta": 0, "horizontalWheelDelta": 0},
            )

        await until(lambda: len(typed(transcript)) >= len(EXPECTED), "the typed text")
        await until(lambda: len(events(transcript, "button")) >= 2, "the button release")
        assert typed(transcript) == EXPECTED
        assert len(events(transcript, "window")) == 1

        await deferLater(reactor, 0.3)
        response = await http.get(daemon.url + "/api/v1/screenshot?fresh=1", headers=auth)
        assert response.code == 200
        body = await response.content()
        # The client folds Content-Length into the response length.
        assert response.length == len(body)
        image = Image.open(io.BytesIO(body)).convert("RGB")
        assert image.size == (1280, 720)
        w, h = image.size
        x0, x1, y0, y1 = int(w * 0.25), int(w * 0.75), int(h * 0.25), int(h * 0.75)
        for i in range(1, 10):
            t = i / 10
            xs, ys = int(x0 + (x1 - x0) * t), int(y0 + (y1 - y0) * t)
            assert isPaint(image.getpixel((xs, y0))), ("top edge", xs, y0)
            assert isPaint(image.getpixel((xs, y1))), ("bottom edge", xs, y1)
            assert isPaint(image.getpixel((x0, ys))), ("left edge", x0, ys)
            assert isPaint(image.getpixel((x1, ys))), ("right edge", x1, ys)
        for x, y in [(0.5, 0.5), (0.15, 0.5), (0.85, 0.5), (0.5, 0.15), (0.5, 0.85)]:
            assert not isPaint(image.getpixel((int(w * x), int(h * y)))), (x, y)
    finally:
        status = daemon.stop()
    assert status == 0, daemon.logText()
