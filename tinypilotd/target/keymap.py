"""
Keyboard reports back into text, as the target's operating system would.

The paste side of the daemon owns the layout tables (character -> key
presses, generated from XKB).  The virtual target reads the same tables in
reverse: a key going down at a given Shift/AltGr level produces the character
the table says that press types, and a dead key followed by Space produces the
character whose two-press sequence that is.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import attrs

# Modifier bits of byte 0 of a keyboard report.
LEFT_CTRL, LEFT_SHIFT, LEFT_ALT, LEFT_META = 0x01, 0x02, 0x04, 0x08
RIGHT_CTRL, RIGHT_SHIFT, RIGHT_ALT, RIGHT_META = 0x10, 0x20, 0x40, 0x80
CTRL = LEFT_CTRL | RIGHT_CTRL
SHIFT = LEFT_SHIFT | RIGHT_SHIFT
ALTGR = RIGHT_ALT
META = LEFT_META | RIGHT_META

# Keyboard-page usages the target treats as editing keys, whatever the layout.
USAGE_T = 0x17
USAGE_ENTER = 0x28
USAGE_BACKSPACE = 0x2A
USAGE_TAB = 0x2B
USAGE_SPACE = 0x2C
USAGE_CAPS_LOCK = 0x39
USAGE_KEYPAD_ENTER = 0x58
ERROR_ROLL_OVER = 0x01

LAYOUTS_DIR = Path(__file__).resolve().parent.parent / "paste" / "layouts"

# Spacing accents (what a dead key followed by Space types) -> the combining
# mark that accent puts on a base letter.
_COMBINING = {
    "^": "\u0302",
    "\u02c6": "\u0302",
    "`": "\u0300",
    "\u00b4": "\u0301",
    "'": "\u0301",
    "~": "\u0303",
    "\u02dc": "\u0303",
    "\u00a8": "\u0308",
    '"': "\u0308",
    "\u00b0": "\u030a",
    "\u02da": "\u030a",
    "\u00b8": "\u0327",
    "\u02c7": "\u030c",
    "\u02d8": "\u0306",
    "\u02dd": "\u030b",
    "\u02db": "\u0328",
    "\u02d9": "\u0307",
    "\u00af": "\u0304",
}

Level = tuple[int, bool, bool]  # (usage, shift, altgr)
Press = Sequence[object] | Mapping[str, object]  # [usage, modifiers, caps_sensitive]


def level_of(usage: int, modifiers: int) -> Level:
    """
    The table key of a press: its usage and whether Shift and AltGr are held.
    Left and right Shift are the same level.
    """
    return (usage, bool(modifiers & SHIFT), bool(modifiers & ALTGR))


@attrs.frozen
class Entry:
    """
    What one press types: C{char}, and whether Caps Lock swaps it with the
    press's other Shift level.
    """

    char: str
    caps_sensitive: bool


@attrs.frozen
class KeyTable:
    """
    A layout read in reverse.

    @ivar tag: the layout's IETF tag, e.g. C{"de-DE"}.
    @ivar singles: one press -> the character it types.
    @ivar dead: the first press of a two-press sequence -> (second press ->
        character).  A press that types a character by itself is never dead.
    @ivar caps_shows: characters that Caps Lock turns into something no
        Shift level gives (de-DE C{ß} -> C{ẞ}, fr-FR C{é} -> C{É}): what the
        target shows instead, C{""} for nothing typeable.
    """

    tag: str
    singles: Mapping[Level, Entry]
    dead: Mapping[Level, Mapping[Level, str]]
    caps_shows: Mapping[str, str] = attrs.field(factory=dict)

    @classmethod
    def from_presses(
        cls,
        tag: str,
        table: Mapping[str, Iterable[Press]],
        caps_shows: Mapping[str, str] | None = None,
    ) -> KeyTable:
        """
        Build the reverse table from the forward one: each character mapped to
        its list of presses, each press C{[usage, modifiers, caps_sensitive]}
        as in the generated files (or a mapping with those keys, the fields
        of the paste side's C{KeyPress}).  Where two characters share a
        press, the first one listed wins.
        """
        singles: dict[Level, Entry] = {}
        dead: dict[Level, dict[Level, str]] = {}
        for char, presses in table.items():
            seq = [_press_fields(p) for p in presses]
            if len(seq) == 1:
                usage, modifiers, caps = seq[0]
                singles.setdefault(level_of(usage, modifiers), Entry(char, caps))
            elif len(seq) == 2:
                first = level_of(seq[0][0], seq[0][1])
                second = level_of(seq[1][0], seq[1][1])
                dead.setdefault(first, {}).setdefault(second, char)
        for level in singles:
            dead.pop(level, None)
        # Enter and Tab are in every generated table; hand fixtures may omit them.
        singles.setdefault((USAGE_ENTER, False, False), Entry("\n", False))
        singles.setdefault((USAGE_TAB, False, False), Entry("\t", False))
        return cls(tag=tag, singles=singles, dead=dead, caps_shows=dict(caps_shows or {}))

    @classmethod
    def load(cls, tag: str, directory: Path = LAYOUTS_DIR) -> KeyTable:
        """
        Read C{<directory>/<tag>.json}, the file the paste side generates.
        The tag is matched case-insensitively against the file names.

        @raise LookupError: no such layout; the message lists those there are.
        """
        files = sorted(directory.glob("*.json"))
        for path in files:
            if path.stem.lower() == tag.lower():
                with path.open(encoding="utf-8") as f:
                    doc = json.load(f)
                return cls.from_presses(path.stem, presses_of(doc), doc.get("caps_lock_shows"))
        available = ", ".join(p.stem for p in files) or "none"
        raise LookupError(f"no layout {tag!r} in {directory} (available: {available})")

    def lookup(self, usage: int, modifiers: int, caps_lock: bool) -> Entry | None:
        """
        What a press types, Caps Lock applied: for a caps-sensitive press
        with Caps Lock on, the character of the other Shift level; for one
        listed in C{caps_shows}, what Caps Lock turns it into.
        """
        level = level_of(usage, modifiers)
        entry = self.singles.get(level)
        if entry is None or not caps_lock:
            return entry
        if entry.caps_sensitive:
            other = self.singles.get((usage, not level[1], level[2]))
            if other is not None:
                return other
        if entry.char in self.caps_shows:
            shown = self.caps_shows[entry.char]
            return Entry(shown, False) if shown else None
        return entry


def _press_fields(press: Press) -> tuple[int, int, bool]:
    if isinstance(press, Mapping):
        return int(press["usage"]), int(press.get("modifiers", 0)), bool(press.get("caps_sensitive"))  # type: ignore[call-overload]
    usage, modifiers, *rest = press
    return int(usage), int(modifiers), bool(rest[0]) if rest else False  # type: ignore[call-overload]


def presses_of(doc: Mapping[str, object]) -> Mapping[str, Iterable[Press]]:
    """The character -> presses mapping of a layout file (its C{"chars"})."""
    chars = doc.get("chars")
    if not isinstance(chars, Mapping):
        raise ValueError("layout file has no 'chars' object")
    return chars


@attrs.frozen
class KeyEvent:
    """
    One key going down, as the target's operating system saw it.

    @ivar char: the text it produced (C{"\\n"} for Enter, C{"\\t"} for Tab),
        or C{None}.
    @ivar action: C{"text"}, C{"backspace"}, C{"caps_lock"}, C{"dead"} (a dead
        key waiting for its second press), C{"terminal"} (Ctrl+Alt+T),
        C{"shortcut"} (any other Ctrl/Alt/Meta chord) or C{"none"} (a key
        that types nothing on this layout).
    """

    usage: int
    modifiers: int
    char: str | None
    action: str
    caps_lock: bool


class KeyboardDecoder:
    """
    Turns a stream of 8-byte boot-protocol reports into L{KeyEvent}s by
    diffing consecutive reports, as a USB host does.

    @ivar caps_lock: the host's Caps Lock state, toggled by usage 0x39.
    """

    def __init__(self, table: KeyTable, *, caps_lock: bool = False) -> None:
        self.table = table
        self.caps_lock = caps_lock
        self._down: tuple[int, ...] = ()
        self._pending_dead: tuple[Level, int, int] | None = None

    def feed(self, report: bytes) -> list[KeyEvent]:
        """
        Take one report; return the events of the keys it pressed, in report
        order.  Released keys produce nothing.  A report with ErrorRollOver
        (too many keys) is ignored, as hosts do.
        """
        if len(report) != 8:
            raise ValueError(f"keyboard report must be 8 bytes, got {len(report)}")
        modifiers = report[0]
        usages = tuple(u for u in report[2:] if u)
        if ERROR_ROLL_OVER in usages:
            return []
        pressed = [u for u in usages if u not in self._down]
        self._down = usages
        return [self._press(u, modifiers) for u in pressed]

    def _press(self, usage: int, modifiers: int) -> KeyEvent:
        def event(char: str | None, action: str) -> KeyEvent:
            return KeyEvent(usage, modifiers, char, action, self.caps_lock)

        if usage == USAGE_CAPS_LOCK:
            self.caps_lock = not self.caps_lock
            return event(None, "caps_lock")
        chord = modifiers & (CTRL | LEFT_ALT | META)
        if chord:
            self._pending_dead = None
            if (modifiers & CTRL) and (modifiers & (LEFT_ALT | RIGHT_ALT)) and usage == USAGE_T:
                return event(None, "terminal")
            return event(None, "shortcut")
        if usage == USAGE_BACKSPACE:
            self._pending_dead = None
            return event(None, "backspace")
        if usage == USAGE_KEYPAD_ENTER:
            usage = USAGE_ENTER
        level = level_of(usage, modifiers)
        if self._pending_dead is not None:
            return event(self._complete_dead(level, usage, modifiers), "text")
        if level in self.table.dead:
            self._pending_dead = (level, usage, modifiers)
            return event(None, "dead")
        entry = self.table.lookup(usage, modifiers, self.caps_lock)
        if entry is None:
            return event(None, "none")
        return event(entry.char, "text")

    def _complete_dead(self, level: Level, usage: int, modifiers: int) -> str | None:
        """
        The text of a dead key followed by this press: the table's sequence
        (dead key + Space -> the accent itself), the same dead key twice ->
        the accent, an accent composed onto a letter (C{^} then C{e} ->
        C{ê}), else the accent followed by whatever the press types.
        """
        assert self._pending_dead is not None
        dead_level = self._pending_dead[0]
        self._pending_dead = None
        sequences = self.table.dead[dead_level]
        if level in sequences:
            return sequences[level]
        accent = sequences.get((USAGE_SPACE, False, False))
        if accent is None and sequences:
            accent = next(iter(sequences.values()))
        if level == dead_level:
            return accent
        if level in self.table.dead:
            self._pending_dead = (level, usage, modifiers)
            return accent
        entry = self.table.lookup(usage, modifiers, self.caps_lock)
        base = entry.char if entry is not None else ""
        if accent is None:
            return base or None
        mark = _COMBINING.get(accent)
        if mark and base:
            composed = unicodedata.normalize("NFC", base + mark)
            if len(composed) == 1:
                return composed
        return accent + base
