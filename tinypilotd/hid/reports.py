"""
Keystroke and mouse requests: validated once at the edge, then packed into the
exact HID reports the gadget's descriptors declare.

Keyboard report (8 bytes): C{[modifiers, 0, usage, 0, 0, 0, 0, 0]}; the
release is eight zero bytes.  Mouse report (7 bytes): buttons, X and Y as
little-endian unsigned 16-bit values in 0..32767, vertical wheel and AC Pan as
signed bytes.
"""

from __future__ import annotations

import json
import struct

import attrs

from tinypilotd.errors import BadRequest
from tinypilotd.hid.keycodes import MODIFIER_FIELDS, MODIFIER_KEYS, USAGES

KEYBOARD_REPORT_SIZE = 8
MOUSE_REPORT_SIZE = 7

#: The all-keys-up keyboard report.
KEYBOARD_RELEASE = bytes(KEYBOARD_REPORT_SIZE)

#: Absolute coordinates run from 0 to this value on both axes.
MOUSE_AXIS_MAX = 32767

_MOUSE = struct.Struct("<BHHbb")


@attrs.frozen
class Keystroke:
    """
    One key press with its modifier flags, ready to become a report.

    @ivar usage: keyboard-page usage, or 0 when the code is a modifier key.
    @ivar modifiers: modifier bits (the flags, plus the key's own bit when the
        code is a modifier key).
    @ivar hold: the code is itself a modifier key: its bits stay down until
        the next keystroke, so that a client can shift-click.
    """

    usage: int
    modifiers: int
    hold: bool = False


@attrs.frozen
class MouseEvent:
    """
    One absolute mouse report's worth of state, already in HID terms.

    @ivar buttons: button bits (bit 0 left, 1 right, 2 middle, ...).
    @ivar x: 0..32767 from the left edge.
    @ivar y: 0..32767 from the top edge.
    @ivar wheel: HID vertical wheel, positive scrolls up (the browser's
        C{verticalWheelDelta} negated).
    @ivar pan: HID AC Pan, positive scrolls right.
    """

    buttons: int
    x: int
    y: int
    wheel: int = 0
    pan: int = 0

    @property
    def is_move(self) -> bool:
        """
        No wheel or pan: the report only restates buttons and position.
        """
        return self.wheel == 0 and self.pan == 0


def _require_object(obj: object) -> dict[str, object]:
    if not isinstance(obj, dict):
        raise BadRequest("Request body must be a JSON object")
    return obj


def parse_keystroke(obj: object) -> Keystroke:
    """
    Validate a decoded C{/api/v1/keystroke} body.

    @raise BadRequest: naming the missing or invalid field, or the unknown code.
    """
    body = _require_object(obj)
    if "code" not in body:
        raise BadRequest("Missing required field: code")
    code = body["code"]
    if not isinstance(code, str):
        raise BadRequest(f"Field code must be a string, not {_describe(code)}")
    modifiers = 0
    for field, bit in MODIFIER_FIELDS.items():
        flag = body.get(field, False)
        if not isinstance(flag, bool):
            raise BadRequest(
                f"Field {field} must be a boolean, not {_describe(flag)}"
            )
        if flag:
            modifiers |= bit
    if code in MODIFIER_KEYS:
        return Keystroke(usage=0, modifiers=modifiers | MODIFIER_KEYS[code], hold=True)
    usage = USAGES.get(code)
    if usage is None:
        raise BadRequest(f"Unknown key code: {_describe(code)}")
    return Keystroke(usage=usage, modifiers=modifiers, hold=False)


def parse_mouse_event(obj: object) -> MouseEvent:
    """
    Validate a decoded C{/api/v1/mouseEvent} body; every field is required.

    @raise BadRequest: naming the missing or invalid field.
    """
    body = _require_object(obj)
    buttons = _integer(body, "buttons", 0, 31)
    x = _fraction(body, "relativeX")
    y = _fraction(body, "relativeY")
    vertical = _integer(body, "verticalWheelDelta", -1, 1)
    horizontal = _integer(body, "horizontalWheelDelta", -1, 1)
    return MouseEvent(
        buttons=buttons,
        x=round(x * MOUSE_AXIS_MAX),
        y=round(y * MOUSE_AXIS_MAX),
        wheel=-vertical,
        pan=horizontal,
    )


def keyboard_report(modifiers: int, usage: int) -> bytes:
    """
    The 8-byte boot keyboard report pressing C{usage} with C{modifiers}.
    """
    return bytes((modifiers, 0, usage, 0, 0, 0, 0, 0))


def mouse_report(ev: MouseEvent) -> bytes:
    """
    The 7-byte absolute mouse report for C{ev}.
    """
    return _MOUSE.pack(ev.buttons, ev.x, ev.y, ev.wheel, ev.pan)


def _field(body: dict[str, object], name: str) -> object:
    if name not in body:
        raise BadRequest(f"Missing required field: {name}")
    return body[name]


def _integer(body: dict[str, object], name: str, low: int, high: int) -> int:
    value = _field(body, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(
            f"Field {name} must be an integer from {low} to {high},"
            f" not {_describe(value)}"
        )
    if not low <= value <= high:
        raise BadRequest(
            f"Field {name} must be an integer from {low} to {high}, not {_describe(value)}"
        )
    return value


def _fraction(body: dict[str, object], name: str) -> float:
    value = _field(body, name)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        # Also refuses NaN and infinities; math.isfinite would overflow on
        # a huge integer.
        or not 0 <= value <= 1
    ):
        raise BadRequest(
            f"Field {name} must be a number from 0 to 1, not {_describe(value)}"
        )
    return float(value)


def _describe(value: object) -> str:
    """
    A short JSON rendering of a client's value for a 400 message.
    """
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."
