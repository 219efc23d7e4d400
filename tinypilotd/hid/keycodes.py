"""
W3C C{KeyboardEvent.code} values and their USB HID keyboard-page usages.

The mapping follows the UI Events KeyboardEvent code specification
(U{https://www.w3.org/TR/uievents-code/}) and the USB HID Usage Tables,
keyboard/keypad page (0x07).  Only codes whose usage is inside the gadget's
report descriptor are listed: usages 0x04-0x91 in the six key slots, and the
eight modifier keys, which travel as bits of the report's first byte instead.
Codes the specification places on other usage pages (browser and media keys on
the consumer page, Sleep and WakeUp on the generic desktop page) and
keyboard-page usages above 0x91 (Lang3-Lang5, NumpadParenLeft, ...) cannot be
sent by this gadget and are deliberately absent, so they are refused as
unknown codes rather than silently typed as something else.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

#: The gadget descriptor's logical maximum for the key slots.
MAX_USAGE = 0x91

#: Modifier bits of byte 0 of a keyboard report.
LEFT_CTRL = 1 << 0
LEFT_SHIFT = 1 << 1
LEFT_ALT = 1 << 2
LEFT_META = 1 << 3
RIGHT_CTRL = 1 << 4
RIGHT_SHIFT = 1 << 5
RIGHT_ALT = 1 << 6
RIGHT_META = 1 << 7


def _usages() -> dict[str, int]:
    table: dict[str, int] = {}
    # Writing system keys: letters a-z are 0x04-0x1D, digits 1-9 then 0 are
    # 0x1E-0x27.
    for i, letter in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ"):
        table[f"Key{letter}"] = 0x04 + i
    for i, digit in enumerate("1234567890"):
        table[f"Digit{digit}"] = 0x1E + i
    # F1-F12 are 0x3A-0x45; F13-F24 are 0x68-0x73.
    for n in range(1, 13):
        table[f"F{n}"] = 0x3A + n - 1
    for n in range(13, 25):
        table[f"F{n}"] = 0x68 + n - 13
    # Numpad digits: 1-9 are 0x59-0x61, 0 is 0x62.
    for n in range(1, 10):
        table[f"Numpad{n}"] = 0x59 + n - 1
    table.update(
        {
            "Numpad0": 0x62,
            # Alphanumeric section, functional keys and punctuation.
            "Enter": 0x28,
            "Escape": 0x29,
            "Backspace": 0x2A,
            "Tab": 0x2B,
            "Space": 0x2C,
            "Minus": 0x2D,
            "Equal": 0x2E,
            "BracketLeft": 0x2F,
            "BracketRight": 0x30,
            # Both the US \| key (0x31) and the ISO key left of Enter (#~ on
            # en-GB, 0x32) are "Backslash" in the specification; 0x31 is what
            # a US keyboard sends and every host treats the two alike.
            "Backslash": 0x31,
            "Semicolon": 0x33,
            "Quote": 0x34,
            "Backquote": 0x35,
            "Comma": 0x36,
            "Period": 0x37,
            "Slash": 0x38,
            "CapsLock": 0x39,
            # Function section.
            "PrintScreen": 0x46,
            "ScrollLock": 0x47,
            "Pause": 0x48,
            # Control pad and arrow pad.
            "Insert": 0x49,
            "Home": 0x4A,
            "PageUp": 0x4B,
            "Delete": 0x4C,
            "End": 0x4D,
            "PageDown": 0x4E,
            "ArrowRight": 0x4F,
            "ArrowLeft": 0x50,
            "ArrowDown": 0x51,
            "ArrowUp": 0x52,
            # Numpad section.
            "NumLock": 0x53,
            "NumpadDivide": 0x54,
            "NumpadMultiply": 0x55,
            "NumpadSubtract": 0x56,
            "NumpadAdd": 0x57,
            "NumpadEnter": 0x58,
            "NumpadDecimal": 0x63,
            "NumpadEqual": 0x67,
            "NumpadComma": 0x85,
            # ISO and JIS keys, and the key next to the right Meta key.
            "IntlBackslash": 0x64,
            "ContextMenu": 0x65,
            "Power": 0x66,
            "IntlRo": 0x87,
            "KanaMode": 0x88,
            "IntlYen": 0x89,
            "Convert": 0x8A,
            "NonConvert": 0x8B,
            "Lang1": 0x90,
            "Lang2": 0x91,
            # Legacy editing keys of Sun-style keyboards.
            "Open": 0x74,
            "Help": 0x75,
            "Select": 0x77,
            "Again": 0x79,
            "Undo": 0x7A,
            "Cut": 0x7B,
            "Copy": 0x7C,
            "Paste": 0x7D,
            "Find": 0x7E,
            # Volume keys exist on the keyboard page as well as the consumer
            # page; the keyboard-page usages are the ones this gadget can send.
            "AudioVolumeMute": 0x7F,
            "AudioVolumeUp": 0x80,
            "AudioVolumeDown": 0x81,
        }
    )
    # Names older browsers emitted for the same physical keys.
    table["VolumeMute"] = table["AudioVolumeMute"]
    table["VolumeUp"] = table["AudioVolumeUp"]
    table["VolumeDown"] = table["AudioVolumeDown"]
    return table


#: C{KeyboardEvent.code} -> keyboard-page usage for every non-modifier key.
USAGES: Mapping[str, int] = MappingProxyType(_usages())

#: C{KeyboardEvent.code} -> modifier bit for the eight modifier keys.  Their
#: usages (0xE0-0xE7) never appear in the key slots of a boot keyboard report.
MODIFIER_KEYS: Mapping[str, int] = MappingProxyType(
    {
        "ControlLeft": LEFT_CTRL,
        "ShiftLeft": LEFT_SHIFT,
        "AltLeft": LEFT_ALT,
        "MetaLeft": LEFT_META,
        "ControlRight": RIGHT_CTRL,
        "ShiftRight": RIGHT_SHIFT,
        "AltRight": RIGHT_ALT,
        "MetaRight": RIGHT_META,
        # Firefox before version 118 called the Meta keys "OS".
        "OSLeft": LEFT_META,
        "OSRight": RIGHT_META,
    }
)

#: Request field -> modifier bit, for the keystroke request's flags.
MODIFIER_FIELDS: Mapping[str, int] = MappingProxyType(
    {
        "ctrlLeft": LEFT_CTRL,
        "shiftLeft": LEFT_SHIFT,
        "altLeft": LEFT_ALT,
        "metaLeft": LEFT_META,
        "ctrlRight": RIGHT_CTRL,
        "shiftRight": RIGHT_SHIFT,
        "altRight": RIGHT_ALT,
        "metaRight": RIGHT_META,
    }
)
