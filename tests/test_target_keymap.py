"""
The virtual target's keyboard decoding: boot-protocol reports back into text.

The small tables first are hand fixtures in the generated files' shape
(character -> presses) for the decoder's rules; the tests named
C{test_generated_*} use the checked-in tables.
"""

from __future__ import annotations

import json

import pytest

from tinypilotd.target.keymap import LAYOUTS_DIR, KeyboardDecoder, KeyTable, presses_of

SHIFT, ALTGR, LCTRL, LALT = 0x02, 0x40, 0x01, 0x04


def p(usage: int, modifiers: int = 0, caps: bool = False) -> list[object]:
    return [usage, modifiers, caps]


EN_US = KeyTable.from_presses(
    "en-US",
    {
        "a": [p(0x04, 0, True)],
        "A": [p(0x04, SHIFT, True)],
        "b": [p(0x05, 0, True)],
        "B": [p(0x05, SHIFT, True)],
        "1": [p(0x1E)],
        "!": [p(0x1E, SHIFT)],
        " ": [p(0x2C)],
        "\n": [p(0x28)],
        "\t": [p(0x2B)],
    },
)

DE_DE = KeyTable.from_presses(
    "de-DE",
    {
        "e": [p(0x08, 0, True)],
        "E": [p(0x08, SHIFT, True)],
        "€": [p(0x08, ALTGR)],
        "@": [p(0x14, ALTGR)],
        "q": [p(0x14, 0, True)],
        "z": [p(0x1C, 0, True)],
        "y": [p(0x1D, 0, True)],
        " ": [p(0x2C)],
        "^": [p(0x35), p(0x2C)],
        "´": [p(0x2E), p(0x2C)],
        "`": [p(0x2E, SHIFT), p(0x2C)],
    },
)


def report(modifiers: int = 0, *usages: int) -> bytes:
    return bytes([modifiers, 0, *usages, *([0] * (6 - len(usages)))])


RELEASE = bytes(8)


def tap(usage: int, modifiers: int = 0) -> list[bytes]:
    return [report(modifiers, usage), RELEASE]


def typed(decoder: KeyboardDecoder, reports: list[bytes]) -> str:
    """Apply the decoded events to a line of text, as the console does."""
    text = ""
    for r in reports:
        for ev in decoder.feed(r):
            if ev.action == "text" and ev.char:
                text += ev.char
            elif ev.action == "backspace":
                text = text[:-1]
    return text


def test_plain_and_shifted_letters() -> None:
    """Usages type their level-1 character; either Shift selects level 2."""
    d = KeyboardDecoder(EN_US)
    reports = tap(0x04) + tap(0x04, SHIFT) + tap(0x05, 0x20) + tap(0x1E, SHIFT) + tap(0x1E)
    assert typed(d, reports) == "aAB!1"


def test_key_down_transitions_only() -> None:
    """A key held across reports types once; a new usage beside it types too."""
    d = KeyboardDecoder(EN_US)
    reports = [report(0, 0x04), report(0, 0x04), report(0, 0x04, 0x05), report(0, 0x05), RELEASE]
    assert typed(d, reports) == "ab"


def test_error_rollover_is_ignored() -> None:
    """A phantom (ErrorRollOver) report neither presses nor releases keys."""
    d = KeyboardDecoder(EN_US)
    reports = [report(0, 0x04), report(0, 1, 1, 1, 1, 1, 1), report(0, 0x04), RELEASE]
    assert typed(d, reports) == "a"


def test_enter_tab_backspace() -> None:
    """Enter types a newline, Tab a tab, Backspace deletes the last character."""
    d = KeyboardDecoder(EN_US)
    reports = tap(0x04) + tap(0x05) + tap(0x2A) + tap(0x28) + tap(0x2B) + tap(0x58)
    assert typed(d, reports) == "a\n\t\n"


def test_caps_lock_toggles_and_inverts_shift_for_letters_only() -> None:
    """
    Caps Lock (0x39) toggles on each press; with it on, caps-sensitive keys
    swap their Shift levels and others (digits) do not.
    """
    d = KeyboardDecoder(EN_US)
    reports = tap(0x39) + tap(0x04) + tap(0x04, SHIFT) + tap(0x1E) + tap(0x39) + tap(0x04)
    assert typed(d, reports) == "Aa1a"
    assert d.caps_lock is False
    events = d.feed(report(0, 0x39))
    assert [(e.action, e.caps_lock) for e in events] == [("caps_lock", True)]


def test_altgr_level() -> None:
    """On de-DE, RightAlt (AltGr) selects the third level: AltGr+Q is @, AltGr+E is €."""
    d = KeyboardDecoder(DE_DE)
    assert typed(d, tap(0x14, ALTGR) + tap(0x08, ALTGR) + tap(0x08) + tap(0x1C) + tap(0x1D)) == "@€ezy"


def test_dead_key_then_space_types_the_accent() -> None:
    """A dead key produces nothing by itself; followed by Space it types its accent."""
    d = KeyboardDecoder(DE_DE)
    events = d.feed(report(0, 0x35))
    assert [(e.action, e.char) for e in events] == [("dead", None)]
    d.feed(RELEASE)
    assert typed(d, tap(0x2C)) == "^"
    assert typed(d, tap(0x2E) + tap(0x2C) + tap(0x2E, SHIFT) + tap(0x2C)) == "´`"


def test_dead_key_composes_onto_a_letter() -> None:
    """A dead key followed by a letter composes (^ e -> ê, ´ E -> É); twice types the accent."""
    d = KeyboardDecoder(DE_DE)
    assert typed(d, tap(0x35) + tap(0x08) + tap(0x2E) + tap(0x08, SHIFT)) == "êÉ"
    assert typed(d, tap(0x35) + tap(0x35)) == "^"


def test_chords_are_shortcuts_not_text() -> None:
    """
    Ctrl+Alt+T asks for a terminal; other Ctrl/Alt chords (Ctrl+L) type
    nothing.
    """
    d = KeyboardDecoder(EN_US)
    events = d.feed(report(LCTRL | LALT, 0x17)) + d.feed(RELEASE) + d.feed(report(LCTRL, 0x0F))
    assert [(e.action, e.char) for e in events] == [("terminal", None), ("shortcut", None)]


def generated_tags() -> list[str]:
    return sorted(path.stem for path in LAYOUTS_DIR.glob("*.json"))


def test_generated_layouts_round_trip() -> None:
    """
    Every character every generated layout claims, typed as the paste side
    types it (with Caps Lock off, and on with Shift toggled for caps-sensitive
    presses), decodes back to exactly that character on the target; under
    Caps Lock the characters the table lists in caps_lock_shows come out as
    listed there.
    """
    tags = generated_tags()
    assert {"en-US", "en-GB", "de-DE"} <= set(tags)
    for tag in tags:
        doc = json.loads((LAYOUTS_DIR / f"{tag}.json").read_text(encoding="utf-8"))
        table = KeyTable.load(tag)
        shows = doc.get("caps_lock_shows", {})
        for caps in (False, True):
            d = KeyboardDecoder(table, caps_lock=caps)
            for ch, presses in presses_of(doc).items():
                reports = []
                for usage, modifiers, caps_sensitive in presses:
                    if caps and caps_sensitive:
                        modifiers ^= SHIFT
                    reports += tap(usage, modifiers)
                expected = shows.get(ch, ch) if caps else ch
                assert typed(d, reports) == expected, (tag, ch, caps)


def test_generated_de_de() -> None:
    """
    With the generated de-DE table: Y/Z swapped, AltGr+Q is @ and AltGr+E is
    €, ^ is a dead key that Space completes, and Caps Lock turns ß into ẞ.
    """
    d = KeyboardDecoder(KeyTable.load("de-de"))
    assert d.table.tag == "de-DE"
    assert typed(d, tap(0x1C) + tap(0x1D) + tap(0x14, ALTGR) + tap(0x08, ALTGR)) == "zy@€"
    assert [e.action for e in d.feed(report(0, 0x35))] == ["dead"]
    d.feed(RELEASE)
    assert typed(d, tap(0x2C) + tap(0x2D)) == "^ß"
    assert typed(d, tap(0x39) + tap(0x2D) + tap(0x04)) == "ẞA"


def test_generated_en_gb_hash_key() -> None:
    """On en-GB, # is its own key (Non-US #, 0x32) and Shift+3 is £."""
    d = KeyboardDecoder(KeyTable.load("en-GB"))
    assert typed(d, tap(0x32) + tap(0x20, SHIFT) + tap(0x1F, SHIFT)) == "#£\""


def test_unknown_layout_lists_the_known_ones() -> None:
    """Asking for a layout there is no table for names the ones there are."""
    with pytest.raises(LookupError, match="en-US"):
        KeyTable.load("xx-XX")
