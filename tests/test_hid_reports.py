"""
Keystroke and mouse request parsing, the key code table, and report bytes.

The REST tree turns every L{BadRequest} into a 400 whose body is the message,
so each refusal here also checks that the message names the offending field
or code.
"""

from __future__ import annotations

import json
import math

import pytest

from tinypilotd.errors import BadRequest
from tinypilotd.hid.keycodes import MAX_USAGE, MODIFIER_FIELDS, MODIFIER_KEYS, USAGES
from tinypilotd.hid.reports import (
    Keystroke,
    MouseEvent,
    keyboard_report,
    mouse_report,
    parse_keystroke,
    parse_mouse_event,
)

# -- the key code table ------------------------------------------------------


def test_usages_fit_the_gadget_descriptor() -> None:
    """
    Every non-modifier code maps into the key slots' logical range 0x04-0x91,
    and no code is both a key and a modifier.
    """
    assert all(0x04 <= usage <= MAX_USAGE for usage in USAGES.values())
    assert not set(USAGES) & set(MODIFIER_KEYS)


@pytest.mark.parametrize(
    "code, usage",
    [
        ("KeyA", 0x04),
        ("KeyZ", 0x1D),
        ("Digit1", 0x1E),
        ("Digit0", 0x27),
        ("Enter", 0x28),
        ("Escape", 0x29),
        ("Backspace", 0x2A),
        ("Tab", 0x2B),
        ("Space", 0x2C),
        ("Minus", 0x2D),
        ("Backslash", 0x31),
        ("Semicolon", 0x33),
        ("Backquote", 0x35),
        ("Slash", 0x38),
        ("CapsLock", 0x39),
        ("F1", 0x3A),
        ("F12", 0x45),
        ("PrintScreen", 0x46),
        ("ScrollLock", 0x47),
        ("Pause", 0x48),
        ("Insert", 0x49),
        ("Delete", 0x4C),
        ("ArrowRight", 0x4F),
        ("ArrowUp", 0x52),
        ("NumLock", 0x53),
        ("NumpadDivide", 0x54),
        ("NumpadEnter", 0x58),
        ("Numpad1", 0x59),
        ("Numpad9", 0x61),
        ("Numpad0", 0x62),
        ("NumpadDecimal", 0x63),
        ("IntlBackslash", 0x64),
        ("ContextMenu", 0x65),
        ("Power", 0x66),
        ("NumpadEqual", 0x67),
        ("F13", 0x68),
        ("F24", 0x73),
        ("Help", 0x75),
        ("AudioVolumeMute", 0x7F),
        ("NumpadComma", 0x85),
        ("IntlRo", 0x87),
        ("KanaMode", 0x88),
        ("IntlYen", 0x89),
        ("Convert", 0x8A),
        ("NonConvert", 0x8B),
        ("Lang1", 0x90),
        ("Lang2", 0x91),
    ],
)
def test_code_usage(code: str, usage: int) -> None:
    """
    W3C codes map to the USB HID keyboard-page usages of the same keys.
    """
    assert parse_keystroke({"code": code}) == Keystroke(usage, 0, False)


def test_every_letter_digit_and_function_key() -> None:
    """
    All 26 letters, 10 digits and F1-F24 are known.
    """
    codes = (
        [f"Key{c}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
        + [f"Digit{d}" for d in range(10)]
        + [f"F{n}" for n in range(1, 25)]
        + [f"Numpad{d}" for d in range(10)]
    )
    assert all(code in USAGES for code in codes)
    assert len({USAGES[code] for code in codes}) == len(codes)


# -- keystrokes ----------------------------------------------------------------


def test_modifier_flags_default_to_false() -> None:
    """
    A bare code presses the key alone.
    """
    assert parse_keystroke({"code": "KeyH"}) == Keystroke(0x0B, 0, False)


@pytest.mark.parametrize("field, bit", sorted(MODIFIER_FIELDS.items()))
def test_modifier_flag_bits(field: str, bit: int) -> None:
    """
    Each modifier flag sets its own bit of the report's first byte.
    """
    assert parse_keystroke({"code": "Delete", field: True}).modifiers == bit
    assert parse_keystroke({"code": "Delete", field: False}).modifiers == 0


def test_modifier_bit_layout() -> None:
    """
    The bits are in the boot keyboard order: LCtrl, LShift, LAlt, LMeta,
    RCtrl, RShift, RAlt, RMeta.
    """
    order = ["ctrlLeft", "shiftLeft", "altLeft", "metaLeft",
             "ctrlRight", "shiftRight", "altRight", "metaRight"]  # fmt: skip
    assert [MODIFIER_FIELDS[f] for f in order] == [1 << i for i in range(8)]
    everything = parse_keystroke({"code": "KeyA", **{f: True for f in order}})
    assert everything.modifiers == 0xFF


@pytest.mark.parametrize(
    "code, bit",
    [
        ("ControlLeft", 0x01),
        ("ShiftLeft", 0x02),
        ("AltLeft", 0x04),
        ("MetaLeft", 0x08),
        ("ControlRight", 0x10),
        ("ShiftRight", 0x20),
        ("AltRight", 0x40),
        ("MetaRight", 0x80),
        ("OSLeft", 0x08),
        ("OSRight", 0x80),
    ],
)
def test_modifier_key_codes_hold(code: str, bit: int) -> None:
    """
    A modifier key is sent as its bit with usage 0 and is held; OSLeft and
    OSRight are the Meta keys.
    """
    assert parse_keystroke({"code": code}) == Keystroke(0, bit, True)
    assert parse_keystroke({"code": code, "ctrlLeft": True}) == Keystroke(
        0, bit | 0x01, True
    )


def test_unknown_fields_are_ignored() -> None:
    """
    Extra fields (a client sending C{key} as well) do not cause a 400.
    """
    assert parse_keystroke({"code": "KeyA", "key": "a", "repeat": 1}) == Keystroke(
        4, 0, False
    )


@pytest.mark.parametrize("body", [[], "KeyA", None, 3, True])
def test_keystroke_body_must_be_object(body: object) -> None:
    """
    A JSON body that is not an object is refused.
    """
    with pytest.raises(BadRequest, match="JSON object"):
        parse_keystroke(body)


def test_keystroke_code_required() -> None:
    """
    A missing code is refused, naming the field.
    """
    with pytest.raises(BadRequest, match="code"):
        parse_keystroke({"shiftLeft": True})


@pytest.mark.parametrize("code", [None, 65, ["KeyA"], {"c": 1}, True])
def test_keystroke_code_must_be_string(code: object) -> None:
    """
    A non-string code is refused, naming the field.
    """
    with pytest.raises(BadRequest, match="Field code must be a string"):
        parse_keystroke({"code": code})


@pytest.mark.parametrize(
    "code",
    ["", "KeyÄ", "keya", "Lang3", "MediaPlayPause", "BrowserBack", "Sleep", "Fn",
     "NumpadParenLeft", "IntlHash", " KeyA"],  # fmt: skip
)
def test_unknown_code(code: str) -> None:
    """
    Codes outside the table, including real W3C codes the gadget cannot send
    (consumer page, usages above 0x91), are refused and named.
    """
    with pytest.raises(BadRequest) as raised:
        parse_keystroke({"code": code})
    assert str(raised.value) == "Unknown key code: " + json.dumps(
        code, ensure_ascii=False
    )


@pytest.mark.parametrize("field", sorted(MODIFIER_FIELDS))
@pytest.mark.parametrize("value", [1, 0, "true", None, [], 1.0])
def test_modifier_flag_must_be_boolean(field: str, value: object) -> None:
    """
    Modifier flags must be JSON booleans: 1, "true" and null are refused,
    naming the field.
    """
    with pytest.raises(BadRequest) as raised:
        parse_keystroke({"code": "KeyA", field: value})
    assert f"Field {field} must be a boolean" in str(raised.value)


def test_keyboard_report_bytes() -> None:
    """
    A keyboard report is [modifiers, 0, usage, 0, 0, 0, 0, 0].
    """
    assert keyboard_report(0x42, 0x04) == bytes([0x42, 0, 0x04, 0, 0, 0, 0, 0])
    assert keyboard_report(0, 0) == bytes(8)


# -- mouse events ------------------------------------------------------------


def _mouse(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "buttons": 0,
        "relativeX": 0.0,
        "relativeY": 0.0,
        "verticalWheelDelta": 0,
        "horizontalWheelDelta": 0,
    }
    body.update(overrides)
    return body


def test_mouse_event_scaling_and_report() -> None:
    """
    X and Y are round(relative * 32767), little-endian; the vertical wheel is
    negated (browser positive = down, HID positive = up); pan is as given.
    """
    ev = parse_mouse_event(
        _mouse(buttons=5, relativeX=0.25, relativeY=1, verticalWheelDelta=1,
               horizontalWheelDelta=-1)  # fmt: skip
    )
    assert ev == MouseEvent(buttons=5, x=round(0.25 * 32767), y=32767, wheel=-1, pan=-1)
    assert mouse_report(ev) == bytes([5, 0x00, 0x20, 0xFF, 0x7F, 0xFF, 0xFF])
    assert mouse_report(parse_mouse_event(_mouse(verticalWheelDelta=-1))) == bytes(
        [0, 0, 0, 0, 0, 1, 0]
    )


def test_mouse_corners() -> None:
    """
    0 and 1 map to the ends of the 0..32767 axis; integers are accepted.
    """
    assert parse_mouse_event(_mouse(relativeX=0, relativeY=1)).x == 0
    assert parse_mouse_event(_mouse(relativeX=1.0)).x == 32767
    assert parse_mouse_event(_mouse(relativeX=0.5)).x == round(0.5 * 32767)


def test_mouse_buttons_range() -> None:
    """
    Buttons 0-31 are accepted as given.
    """
    assert parse_mouse_event(_mouse(buttons=31)).buttons == 31


def test_mouse_unknown_fields_ignored() -> None:
    """
    Extra fields do not cause a 400.
    """
    assert parse_mouse_event(_mouse(extra="x")).buttons == 0


@pytest.mark.parametrize("body", [[], "x", None, 1])
def test_mouse_body_must_be_object(body: object) -> None:
    """
    A JSON body that is not an object is refused.
    """
    with pytest.raises(BadRequest, match="JSON object"):
        parse_mouse_event(body)


@pytest.mark.parametrize(
    "field",
    ["buttons", "relativeX", "relativeY", "verticalWheelDelta", "horizontalWheelDelta"],
)
def test_mouse_fields_required(field: str) -> None:
    """
    Every mouse field is required; the missing one is named.
    """
    body = _mouse()
    del body[field]
    with pytest.raises(BadRequest, match=f"Missing required field: {field}"):
        parse_mouse_event(body)


@pytest.mark.parametrize(
    "field, value",
    [
        ("buttons", True),
        ("buttons", False),
        ("buttons", -1),
        ("buttons", 32),
        ("buttons", 1.0),
        ("buttons", "1"),
        ("buttons", None),
        ("relativeX", True),
        ("relativeX", math.nan),
        ("relativeX", math.inf),
        ("relativeX", -math.inf),
        ("relativeX", -0.01),
        ("relativeX", 1.01),
        ("relativeX", "0.5"),
        ("relativeX", None),
        ("relativeX", [0.5]),
        ("relativeY", False),
        ("relativeY", math.nan),
        ("relativeY", 2),
        ("relativeY", {}),
        ("verticalWheelDelta", 2),
        ("verticalWheelDelta", -2),
        ("verticalWheelDelta", 0.5),
        ("verticalWheelDelta", 1.0),
        ("verticalWheelDelta", True),
        ("verticalWheelDelta", "1"),
        ("horizontalWheelDelta", 2),
        ("horizontalWheelDelta", -1.0),
        ("horizontalWheelDelta", False),
        ("horizontalWheelDelta", None),
    ],
)
def test_mouse_field_invalid(field: str, value: object) -> None:
    """
    Booleans, NaN, infinities, strings, null, floats where integers are
    required, and out-of-range values are refused, naming the field.
    """
    with pytest.raises(BadRequest) as raised:
        parse_mouse_event(_mouse(**{field: value}))
    assert f"Field {field} must be" in str(raised.value)


def test_mouse_nan_from_json() -> None:
    """
    Python's JSON decoder accepts NaN; the parser still refuses it.
    """
    with pytest.raises(BadRequest, match="relativeX"):
        parse_mouse_event(json.loads(json.dumps(_mouse(relativeX=math.nan))))
