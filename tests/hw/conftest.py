"""
The hardware suite: the real `twistd tinypilot` against the real Linux USB
gadget (f_hid over dummy_hcd) and V4L2 (vivid) stack, judged by what a Linux
target computer sees through evdev.  It only runs inside the lab's QEMU guest:

    lab/setup && lab/run -- .venv/bin/python -m pytest -q tests/hw

Everywhere else these tests are not collected.  The modules run in file-name
order and share one daemon; test_hw_7 stops it, test_hw_8 removes the gadget.
"""

import os
import shlex
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from hwdaemon import Daemon  # noqa: E402
from hwinput import InputDevice, wait_for_gadget_inputs  # noqa: E402

IN_LAB = os.environ.get("TINYPILOTD_LAB") == "1"
if not IN_LAB:
    collect_ignore_glob = ["test_*.py"]

REPO = os.path.dirname(os.path.dirname(HERE))
GADGET_SCRIPTS = os.path.join(REPO, "etc", "usb-gadget")
GADGET_NAME = os.environ.get("TINYPILOTD_GADGET", "tinypilot")
GADGET_DIR = f"/sys/kernel/config/usb_gadget/{GADGET_NAME}"

# Long enough to tell "failed at once" from "waited for the target" apart
# even under software emulation.
WRITE_TIMEOUT = 2.0
VIDEO_SIZE = (640, 360)
VIDEO_COMMAND = os.environ.get("TINYPILOTD_LAB_VIDEO_COMMAND") or shlex.join([
    "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
    "-f", "v4l2", "-framerate", "5", "-video_size", "%dx%d" % VIDEO_SIZE, "-i", "/dev/video0",
    "-c:v", "mjpeg", "-q:v", "8", "-f", "mjpeg", "-"])

_daemons = []
_figures = {}


def gadget(action, *args, check=True):
    """Run etc/usb-gadget/tinypilot-gadget-ACTION; return the CompletedProcess."""
    script = os.path.join(GADGET_SCRIPTS, f"tinypilot-gadget-{action}")
    result = subprocess.run(["sh", script, *args], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, TINYPILOT_GADGET=GADGET_NAME))
    if check and result.returncode != 0:
        raise AssertionError(f"tinypilot-gadget-{action} exited {result.returncode}: {result.stderr}")
    return result


class Target:
    """The target computer's side of the cable: the gadget's keyboard (held
    open and grabbed for the whole session, as a desktop would hold it) and
    its mouse (opened only while a test wants the target to read it)."""

    def __init__(self):
        self.keyboard = None
        self.mouse = None

    def connect(self):
        """(Re)open the keyboard after the gadget was (re-)enumerated."""
        self.close()
        nodes = wait_for_gadget_inputs()
        self.keyboard = InputDevice(nodes["keyboard"])
        self.keyboard.settle()
        return self

    def open_mouse(self):
        self.close_mouse()
        self.mouse = InputDevice(wait_for_gadget_inputs()["mouse"])
        self.mouse.settle()
        return self.mouse

    def close_mouse(self):
        if self.mouse is not None:
            self.mouse.close()
            self.mouse = None

    def close(self):
        self.close_mouse()
        if self.keyboard is not None:
            self.keyboard.close()
            self.keyboard = None


@pytest.fixture(scope="session")
def figures():
    """Measurements worth reading in the log (printed after the tests)."""
    return _figures


@pytest.fixture(scope="session")
def workdir():
    return tempfile.mkdtemp(prefix="tinypilotd-hw.")


@pytest.fixture(scope="session")
def target():
    t = Target().connect()
    yield t
    t.close()


@pytest.fixture(scope="session")
def daemon_instance(workdir):
    """The session's daemon, not started yet (tests that stop it use this)."""
    daemon = Daemon(os.path.join(workdir, "daemon"), write_timeout=WRITE_TIMEOUT,
                    video_command=VIDEO_COMMAND)
    _daemons.append(daemon)
    yield daemon
    if daemon.running:
        daemon.stop()


@pytest.fixture
def daemon(daemon_instance, target, figures):
    """The running daemon (started at first use, with the keyboard already
    grabbed so that nothing it types reaches the guest's console)."""
    if not daemon_instance.running:
        daemon_instance.start()
        figures.setdefault("daemon start to first token (s)", round(daemon_instance.started_in, 2))
    return daemon_instance


@pytest.fixture
def client(daemon):
    c = daemon.client()
    yield c
    c.close()


def pytest_terminal_summary(terminalreporter, exitstatus):
    if _figures:
        terminalreporter.section("lab figures")
        for name, value in _figures.items():
            terminalreporter.write_line(f"{name}: {value}")
    if exitstatus != 0:
        for daemon in _daemons:
            terminalreporter.section(f"daemon log ({daemon.log})")
            terminalreporter.write_line(daemon.log_tail(200) or "(empty)")
