"""
(9, second half) tinypilot-gadget-down removes the gadget cleanly (nothing
left in configfs, device nodes gone, the UDC free, the target's devices gone),
is harmless when there is nothing to remove, and tinypilot-gadget-up builds
an identical, working gadget again (and refuses to build a second one).
Runs after the daemon has stopped (test_hw_7).
"""

import glob
import os

from conftest import GADGET_DIR, gadget
from hwinput import InputDevice, key_changes, wait_for_gadget_inputs
from test_hw_1_gadget import KEYBOARD_DESCRIPTOR, MOUSE_DESCRIPTOR


def udc_function():
    """What each UDC is bound to ('' = nothing)."""
    out = {}
    for path in glob.glob("/sys/class/udc/*/function"):
        with open(path) as fh:
            out[path.split("/")[4]] = fh.read().strip()
    return out


def test_gadget_down_removes_everything_and_up_restores_a_working_gadget(daemon_instance, target):
    """down: no gadget directory, no /dev/hidg*, UDC unbound, target devices
    gone; down again: no error; up with a UDC that does not exist: fails and
    leaves nothing behind; up: same descriptors, enumerated, and a report
    written to /dev/hidg0 reaches the target; up twice: refused."""
    if daemon_instance.running:
        daemon_instance.stop()
    target.close()

    gadget("down")
    assert not os.path.exists(GADGET_DIR)
    assert glob.glob("/dev/hidg*") == []
    assert set(udc_function().values()) <= {""}
    wait_for_gadget_inputs(present=False)
    assert gadget("down").returncode == 0

    failed = gadget("up", "no-such-udc", check=False)
    assert failed.returncode != 0
    assert not os.path.exists(GADGET_DIR), "a failed tinypilot-gadget-up left its gadget behind"

    gadget("up")
    assert open(f"{GADGET_DIR}/functions/hid.keyboard/report_desc", "rb").read() == KEYBOARD_DESCRIPTOR
    assert open(f"{GADGET_DIR}/functions/hid.mouse/report_desc", "rb").read() == MOUSE_DESCRIPTOR
    nodes = wait_for_gadget_inputs()
    keyboard = InputDevice(nodes["keyboard"])
    try:
        keyboard.settle()
        with open("/dev/hidg0", "wb", buffering=0) as hidg0:
            hidg0.write(bytes([0, 0, 0x04, 0, 0, 0, 0, 0]))   # A down
            hidg0.write(bytes(8))                               # all up
        events = keyboard.collect(lambda ev: (30, 0) in key_changes(ev), timeout=5)
        assert key_changes(events) == [(30, 1), (30, 0)]
    finally:
        keyboard.close()

    second = gadget("up", check=False)
    assert second.returncode != 0 and "exists already" in second.stderr
    assert os.path.exists("/dev/hidg0") and os.path.exists("/dev/hidg1")
