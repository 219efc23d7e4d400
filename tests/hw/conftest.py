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
import tomllib

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


def video_preset(path, size=None):
    """The capture command of an etc/video preset, and the frame size it
    configures (-video_size), optionally changed to `size` ("WxH")."""
    with open(path, "rb") as fh:
        argv = shlex.split(tomllib.load(fh)["video"]["command"])
    at = argv.index("-video_size") + 1
    if size:
        argv[at] = size
    width, height = argv[at].split("x")
    return shlex.join(argv), (int(width), int(height))


# The preset for raw capture devices encoded by ffmpeg, on vivid's webcam
# input (TINYPILOTD_LAB_VIDEO_SIZE=WxH picks another of vivid's sizes).
VIDEO_PRESET = os.path.join(REPO, "etc", "video", "raw-v4l2.toml")
VIDEO_COMMAND, VIDEO_SIZE = (
    video_preset(VIDEO_PRESET, os.environ.get("TINYPILOTD_LAB_VIDEO_SIZE")) if IN_LAB else ("", None))

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
