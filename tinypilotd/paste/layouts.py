"""
Keyboard layouts as data: which key presses type which character.

The tables in C{layouts/<tag>.json} are generated from xkeyboard-config by
C{tools/gen_layouts.py} and checked in; this module only reads them, lazily
and once per layout, so importing it costs nothing at daemon start.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING

import attrs

from tinypilotd.errors import BadRequest

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

MAX_TEXT_LENGTH = 10_000

_LEFT_SHIFT = 0x02
#: The Caps Lock key's HID usage.
CAPS_LOCK_USAGE = 0x39
_ANY_SHIFT = 0x02 | 0x20  # LeftShift | RightShift


@attrs.frozen
class KeyPress:
    """
    One key press (and release) on the HID keyboard.

    @ivar usage: HID keyboard-page usage of the key.
    @ivar modifiers: modifier bits held with it (bit1 LeftShift, bit6 AltGr...).
    @ivar caps_sensitive: Caps Lock inverts the effect of Shift for this
        press, so with Caps Lock on it must be sent with Shift toggled.
    """

    usage: int
    modifiers: int
    caps_sensitive: bool


@attrs.frozen
class Layout:
    """
    A keyboard layout: the presses that type each character it supports.

    @ivar tag: canonical IETF language tag, e.g. C{"de-DE"}.
    @ivar xkb_layout: the XKB layout the table was derived from, e.g. C{"ch"}.
    @ivar xkb_variant: the XKB variant, e.g. C{"fr"}; C{""} for the default.
    @ivar table: character -> presses (one press, or a dead key then Space or itself again).
    @ivar caps_lock_breaks: characters that Caps Lock changes in a way Shift
        cannot undo (C{é} on fr-FR shows C{É} with or without Shift); they
        are typed with Caps Lock switched off around them.
    """

    tag: str
    xkb_layout: str
    xkb_variant: str
    table: Mapping[str, tuple[KeyPress, ...]] = attrs.field(eq=False, repr=False)
    caps_lock_breaks: frozenset[str] = attrs.field(eq=False, repr=False, default=frozenset())

    def presses(self, char: str) -> tuple[KeyPress, ...]:
        """
        The presses that type C{char}: one, or two (a dead key, then Space or the
        same dead key again).

        @raise KeyError: this layout cannot type C{char}.
        """
        return self.table[char]

    def unsupported(self, text: str) -> list[str]:
        """The characters of C{text} this layout cannot type, each once, in order."""
        table = self.table
        return list(dict.fromkeys(c for c in text if c not in table))


def press_report(press: KeyPress, caps_lock: bool) -> tuple[int, int]:
    """
    The C{(modifiers, usage)} to send for C{press} given the target's Caps
    Lock state: with Caps Lock on, a caps-sensitive press has Shift toggled,
    so the target still shows the requested case.
    """
    modifiers = press.modifiers
    if caps_lock and press.caps_sensitive:
        if modifiers & _ANY_SHIFT:
            modifiers &= ~_ANY_SHIFT
        else:
            modifiers |= _LEFT_SHIFT
    return modifiers, press.usage


def character_reports(layout: Layout, char: str, caps_lock: bool) -> tuple[tuple[int, int], ...]:
    """
    The C{(modifiers, usage)} presses, each to be followed by the all-up
    report, that make the target show exactly C{char} given its Caps Lock
    state.  Usually L{press_report} of each press; for a character in
    L{Layout.caps_lock_breaks} while Caps Lock is on, Caps Lock is tapped off
    before it and back on after it, so the target ends as it was.

    @raise KeyError: the layout cannot type C{char}.
    """
    presses = layout.presses(char)
    if caps_lock and char in layout.caps_lock_breaks:
        tap = (0, CAPS_LOCK_USAGE)
        return (tap, *(press_report(p, False) for p in presses), tap)
    return tuple(press_report(p, caps_lock) for p in presses)


def _layout_files() -> Traversable:
    return resources.files(__package__) / "layouts"


@functools.cache
def _tags_by_folded_name() -> dict[str, str]:
    names = (f.name for f in _layout_files().iterdir())
    return {
        name[: -len(".json")].casefold(): name[: -len(".json")]
        for name in names
        if name.endswith(".json")
    }


def supported_tags() -> list[str]:
    """The IETF tags of every layout we ship, sorted."""
    return sorted(_tags_by_folded_name().values())


@functools.cache
def _load(tag: str) -> Layout:
    doc = json.loads((_layout_files() / f"{tag}.json").read_text(encoding="utf-8"))
    table = {
        char: tuple(KeyPress(usage, modifiers, caps) for usage, modifiers, caps in presses)
        for char, presses in doc["chars"].items()
    }
    return Layout(
        tag=doc["tag"],
        xkb_layout=doc["xkb_layout"],
        xkb_variant=doc["xkb_variant"],
        table=MappingProxyType(table),
        caps_lock_breaks=frozenset(doc["caps_lock_shows"]),
    )


def find_layout(tag: str) -> Layout:
    """
    The layout for an IETF tag, matched case-insensitively (C{de-de} is C{de-DE}).

    @raise BadRequest: no such layout; the message lists the supported tags.
    """
    canonical = _tags_by_folded_name().get(tag.casefold())
    if canonical is None:
        raise BadRequest(
            f"language: unsupported keyboard language {tag!r}; "
            f"supported: {', '.join(supported_tags())}"
        )
    return _load(canonical)


@attrs.frozen
class PasteRequest:
    """
    A validated paste: every character of C{text} is in C{layout}.

    @ivar text: the text to type, line breaks normalised to C{"\\n"}.
    """

    text: str
    layout: Layout


def _describe(char: str) -> str:
    return f"'{char}'" if char.isprintable() else repr(char)


def _required_string(obj: dict[object, object], field: str) -> str:
    if field not in obj:
        raise BadRequest(f"Missing required field: {field}")
    value = obj[field]
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be a string, not {type(value).__name__}")
    return value


def parse_paste(obj: object) -> PasteRequest:
    """
    Validate the JSON body of C{POST /api/v1/paste}.

    @raise BadRequest: the body is not an object; C{text} or C{language} is
        missing or not a string; C{text} is longer than 10,000 characters;
        the language is unknown; or the layout cannot type some characters
        (the seed's C{These characters are not supported: 'こ', 'ん'}).
    """
    if not isinstance(obj, dict):
        raise BadRequest("request body must be a JSON object with text and language")
    text = _required_string(obj, "text")
    language = _required_string(obj, "language")
    if len(text) > MAX_TEXT_LENGTH:
        raise BadRequest(
            f"text is too long: {len(text)} characters (at most {MAX_TEXT_LENGTH})"
        )
    layout = find_layout(language)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    missing = layout.unsupported(text)
    if missing:
        raise BadRequest(
            "These characters are not supported: " + ", ".join(map(_describe, missing))
        )
    return PasteRequest(text=text, layout=layout)
