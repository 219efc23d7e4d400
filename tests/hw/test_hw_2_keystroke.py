"""
(1) POST /api/v1/keystroke: every modifier flag and a sample of key codes
arrive at the target as the right Linux key events, and no key stays down.
"""

import pytest

from hwinput import key_changes

# KeyboardEvent.code -> the Linux key code a Linux target reports for it
# (input-event-codes.h; HID usage -> key through hid-input's table).
CODES = {
    "KeyA": 30, "KeyQ": 16, "KeyZ": 44, "KeyM": 50, "Digit1": 2, "Digit0": 11,
    "Enter": 28, "Escape": 1, "Backspace": 14, "Tab": 15, "Space": 57,
    "Minus": 12, "Equal": 13, "BracketLeft": 26, "BracketRight": 27, "Backslash": 43,
    "Semicolon": 39, "Quote": 40, "Backquote": 41, "Comma": 51, "Period": 52, "Slash": 53,
    "CapsLock": 58, "F1": 59, "F10": 68, "F11": 87, "F12": 88, "F13": 183, "F24": 194,
    "PrintScreen": 99, "ScrollLock": 70, "Pause": 119,
    "Insert": 110, "Home": 102, "PageUp": 104, "Delete": 111, "End": 107, "PageDown": 109,
    "ArrowRight": 106, "ArrowLeft": 105, "ArrowDown": 108, "ArrowUp": 103,
    "NumLock": 69, "NumpadDivide": 98, "NumpadMultiply": 55, "NumpadSubtract": 74,
    "NumpadAdd": 78, "NumpadEnter": 96, "Numpad1": 79, "Numpad5": 76, "Numpad0": 82,
    "NumpadDecimal": 83, "NumpadEqual": 117,
    "IntlBackslash": 86, "ContextMenu": 127, "IntlRo": 89, "IntlYen": 124,
    "Lang1": 122, "Lang2": 123,
}

# JSON modifier flag -> the modifier key the target reports.
FLAGS = {
    "ctrlLeft": 29, "shiftLeft": 42, "altLeft": 56, "metaLeft": 125,
    "ctrlRight": 97, "shiftRight": 54, "altRight": 100, "metaRight": 126,
}


def type_and_read(client, keyboard, code, **flags):
    """POST one keystroke and return the key changes the target saw, once
    every key is up again."""
    response = client.keystroke(code, **flags)
    assert response.status == 200, response
    events = keyboard.collect(lambda ev: any(v == 0 for _, v in key_changes(ev))
                              and not keyboard.keys_down(), timeout=5)
    return key_changes(events) + key_changes(keyboard.wait_quiet(0.05, 1))


@pytest.mark.parametrize("flag", sorted(FLAGS))
def test_each_modifier_flag_holds_its_key_around_the_press(client, target, flag):
    """With one modifier flag set, KeyA is pressed while that modifier key is
    down, then both are released."""
    keyboard = target.keyboard
    keyboard.drain()
    seen = type_and_read(client, keyboard, "KeyA", **{flag: True})
    modifier = FLAGS[flag]
    assert sorted(c for c, v in seen if v == 1) == sorted([30, modifier])
    assert sorted(c for c, v in seen if v == 0) == sorted([30, modifier])
    assert seen.index((modifier, 1)) <= seen.index((30, 1)) < seen.index((30, 0))
    assert keyboard.keys_down() == set()


def test_all_eight_modifiers_at_once(client, target):
    """All eight flags: eight modifier keys plus the key, all released."""
    keyboard = target.keyboard
    keyboard.drain()
    seen = type_and_read(client, keyboard, "KeyZ", **{f: True for f in FLAGS})
    assert sorted(c for c, v in seen if v == 1) == sorted([44, *FLAGS.values()])
    assert sorted(c for c, v in seen if v == 0) == sorted([44, *FLAGS.values()])
    assert keyboard.keys_down() == set()


def test_the_seeds_ctrl_alt_del(client, target):
    """The REST API document's example (Delete with ctrlLeft and altRight)."""
    keyboard = target.keyboard
    keyboard.drain()
    seen = type_and_read(client, keyboard, "Delete", ctrlLeft=True, altRight=True)
    assert sorted(c for c, v in seen if v == 1) == sorted([111, 29, 100])
    assert keyboard.keys_down() == set()


def test_a_sample_of_codes_reaches_the_target_as_the_right_keys(client, target, figures):
    """Each code in the sample gives exactly one press and one release of the
    expected key, in request order."""
    keyboard = target.keyboard
    keyboard.drain()
    wrong, latencies = {}, []
    for code, key in CODES.items():
        seen = type_and_read(client, keyboard, code)
        latencies.append(client.last_elapsed)
        if seen != [(key, 1), (key, 0)]:
            wrong[code] = seen
    assert wrong == {}, f"expected one press and release of the mapped key: {wrong}"
    assert keyboard.keys_down() == set()
    latencies.sort()
    figures["keystroke request->200 in the guest, median (ms)"] = round(
        1000 * latencies[len(latencies) // 2], 1)


def test_a_modifier_code_is_held_until_the_next_keystroke(client, target):
    """A keystroke whose code is a modifier key (ShiftLeft) leaves it held, so
    that a client can shift-click; the next keystroke ends with every key
    up."""
    keyboard = target.keyboard
    keyboard.drain()
    assert client.keystroke("ShiftLeft").status == 200
    keyboard.collect(lambda ev: (42, 1) in key_changes(ev), timeout=5)
    assert keyboard.keys_down() == {42}
    seen = type_and_read(client, keyboard, "KeyB")
    assert (48, 1) in seen and (48, 0) in seen
    assert keyboard.keys_down() == set()
