"""
(9, first half) The gadget that etc/usb-gadget/tinypilot-gadget-up made at
boot has exactly the descriptors the daemon's reports assume, and the target
received them intact.
"""

import glob
import os
import stat
import struct

from conftest import GADGET_DIR
from hwinput import (
    ABS_X, ABS_Y, BTN_EXTRA, BTN_LEFT, BTN_MIDDLE, BTN_RIGHT, BTN_SIDE, EV_ABS, EV_KEY, EV_LED,
    EV_REL, LED_CAPSL, LED_NUML, LED_SCROLLL, REL_HWHEEL, REL_WHEEL, InputDevice,
    gadget_inputs)

# What the writer assumes (the contract): a keyboard report is
# [modifiers, 0, 6 usages], an output report is 1 LED byte; a mouse report is
# struct.pack("<BHHbb", buttons, x, y, wheel, pan).
KEYBOARD_REPORT = 8
KEYBOARD_OUTPUT_REPORT = 1
MOUSE_REPORT = struct.calcsize("<BHHbb")

# The descriptors, as TinyPilot's own gadget declares them.
KEYBOARD_DESCRIPTOR = bytes.fromhex(
    "05 01 09 06 a1 01"
    " 05 08 19 01 29 03 15 00 25 01 75 01 95 03 91 02  09 4b 95 01 91 02  95 04 91 01"
    " 05 07 19 e0 29 e7 95 08 81 02  75 08 95 01 81 01  19 00 29 91 26 ff 00 95 06 81 00"
    " c0")
MOUSE_DESCRIPTOR = bytes.fromhex(
    "05 01 09 02 a1 01"
    " 05 09 19 01 29 08 15 00 25 01 95 08 75 01 81 02"
    " 05 01 09 30 09 31 16 00 00 26 ff 7f 75 10 95 02 81 02"
    " 09 38 15 81 25 7f 75 08 95 01 81 06"
    " 05 0c 0a 38 02 15 81 25 7f 75 08 95 01 81 06"
    " c0")


def read_bytes(path):
    with open(path, "rb") as fh:
        return fh.read()


def read_text(path):
    with open(path) as fh:
        return fh.read().strip()


def report_bits(descriptor):
    """{"Input": bits, "Output": bits, ...} per report of a descriptor
    without report IDs, from its main items' Report Size x Report Count."""
    totals, size, count, i = {}, 0, 0, 0
    names = {0x8: "Input", 0x9: "Output", 0xB: "Feature"}
    while i < len(descriptor):
        prefix = descriptor[i]
        length = (0, 1, 2, 4)[prefix & 3]
        value = int.from_bytes(descriptor[i + 1:i + 1 + length], "little")
        kind, tag = (prefix >> 2) & 3, prefix >> 4
        assert not (kind == 1 and tag == 0x8), "unexpected Report ID"
        if kind == 1 and tag == 0x7:
            size = value
        elif kind == 1 and tag == 0x9:
            count = value
        elif kind == 0 and tag in names:
            totals[names[tag]] = totals.get(names[tag], 0) + size * count
        i += 1 + length
    return totals


def test_descriptors_parse_to_the_report_sizes_the_writer_uses():
    """The expected descriptors themselves describe 8-byte keyboard reports
    with a 1-byte LED report and 7-byte mouse reports (guards the constants
    this suite compares against)."""
    assert report_bits(KEYBOARD_DESCRIPTOR) == {"Output": 8 * KEYBOARD_OUTPUT_REPORT,
                                                 "Input": 8 * KEYBOARD_REPORT}
    assert report_bits(MOUSE_DESCRIPTOR) == {"Input": 8 * MOUSE_REPORT}


def test_configfs_holds_the_contract_descriptors():
    """Each function's report_desc is byte for byte the expected descriptor
    (so it arrived in one write()), with matching report_length, and the
    boot-keyboard protocol/subclass on the keyboard only."""
    keyboard = f"{GADGET_DIR}/functions/hid.keyboard"
    mouse = f"{GADGET_DIR}/functions/hid.mouse"
    assert read_bytes(f"{keyboard}/report_desc") == KEYBOARD_DESCRIPTOR
    assert read_bytes(f"{mouse}/report_desc") == MOUSE_DESCRIPTOR
    assert read_text(f"{keyboard}/report_length") == str(KEYBOARD_REPORT)
    assert read_text(f"{mouse}/report_length") == str(MOUSE_REPORT)
    assert (read_text(f"{keyboard}/protocol"), read_text(f"{keyboard}/subclass")) == ("1", "1")
    assert (read_text(f"{mouse}/protocol"), read_text(f"{mouse}/subclass")) == ("0", "0")
    assert read_text(f"{GADGET_DIR}/idVendor") == "0x1d6b"
    assert read_text(f"{GADGET_DIR}/idProduct") == "0x0104"
    linked = {n for n in os.listdir(f"{GADGET_DIR}/configs/c.1")
              if os.path.islink(f"{GADGET_DIR}/configs/c.1/{n}")}
    assert linked == {"hid.keyboard", "hid.mouse"}


def test_hidg0_is_the_keyboard_and_hidg1_the_mouse():
    """The device nodes the daemon opens by default belong to the right
    functions (configfs 'dev' = the node's major:minor)."""
    for node, function in (("/dev/hidg0", "hid.keyboard"), ("/dev/hidg1", "hid.mouse")):
        st = os.stat(node)
        assert stat.S_ISCHR(st.st_mode)
        assert read_text(f"{GADGET_DIR}/functions/{function}/dev") == \
            f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


def test_the_target_received_the_same_descriptors():
    """The target's HID core holds exactly the two descriptors configfs has:
    nothing was truncated or split on the way."""
    seen = sorted(read_bytes(path) for path in
                  glob.glob("/sys/bus/hid/devices/*:1D6B:0104.*/report_descriptor"))
    assert seen == sorted([KEYBOARD_DESCRIPTOR, MOUSE_DESCRIPTOR])


def test_the_target_sees_a_keyboard_with_leds_and_an_absolute_mouse_with_wheels(target):
    """hid-generic made of them what the daemon's reports need: LEDs on the
    keyboard; ABS_X/ABS_Y 0..32767, both wheels and five buttons on the
    mouse."""
    keyboard = target.keyboard
    for led in (LED_NUML, LED_CAPSL, LED_SCROLLL):
        assert keyboard.has(EV_LED, led)
    assert keyboard.has(EV_KEY, 30)  # KEY_A
    mouse = InputDevice(gadget_inputs()["mouse"], grab=False)
    try:
        assert mouse.absinfo(ABS_X)[1:] == (0, 32767)
        assert mouse.absinfo(ABS_Y)[1:] == (0, 32767)
        assert mouse.has(EV_REL, REL_WHEEL) and mouse.has(EV_REL, REL_HWHEEL)
        for button in (BTN_LEFT, BTN_RIGHT, BTN_MIDDLE, BTN_SIDE, BTN_EXTRA):
            assert mouse.has(EV_KEY, button)
        assert mouse.has(EV_ABS, ABS_X)
    finally:
        mouse.close()


def test_the_writer_builds_reports_of_report_length():
    """The daemon's own report builders make reports exactly as long as the
    gadget's report_length (a short report would be dropped by the target)."""
    from tinypilotd.hid.reports import MouseEvent, keyboard_report, mouse_report

    assert len(keyboard_report(0x02, 0x04)) == int(read_text(f"{GADGET_DIR}/functions/hid.keyboard/report_length"))
    event = MouseEvent(buttons=1, x=32767, y=0, wheel=-1, pan=1)
    assert len(mouse_report(event)) == int(read_text(f"{GADGET_DIR}/functions/hid.mouse/report_length"))
