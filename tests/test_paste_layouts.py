"""
Tests for the paste layout tables and paste request validation.

The oracle tests type every character of every table on a simulated Linux
target (libxkbcommon with the layout's XKB keymap and the locale's Compose
table) and compare what appears with what was asked for.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources

import pytest

from tinypilotd.errors import BadRequest
from tinypilotd.paste import _xkb
from tinypilotd.paste.layouts import (
    character_reports,
    MAX_TEXT_LENGTH,
    KeyPress,
    PasteRequest,
    find_layout,
    parse_paste,
    press_report,
    supported_tags,
)

SHIFT, ALTGR = 0x02, 0x40
SPACE, ENTER, TAB = 0x2C, 0x28, 0x2B

REQUIRED_TAGS = ["en-US", "en-GB", "de-DE"]


def _raw(tag: str) -> dict:
    path = resources.files("tinypilotd.paste") / "layouts" / f"{tag}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _xkb_missing() -> str | None:
    """Why the oracle cannot run here, or None when it can."""
    try:
        _xkb.library()
        _xkb.TargetKeyboard("us", "", "pc104", "en_US.UTF-8").close()
    except _xkb.XkbUnavailable as e:
        return (
            f"{e}: the oracle needs Debian packages libxkbcommon0, xkb-data "
            "and libx11-data"
        )
    return None


_WHY_NO_XKB = _xkb_missing()
needs_xkb = pytest.mark.skipif(_WHY_NO_XKB is not None, reason=_WHY_NO_XKB or "")


# -- the oracle ----------------------------------------------------------------


@needs_xkb
@pytest.mark.parametrize("caps_lock", [False, True], ids=["caps-off", "caps-on"])
@pytest.mark.parametrize("tag", supported_tags())
def test_oracle(tag: str, caps_lock: bool) -> None:
    """
    Every character the table claims, sent as the HID reports the keyboard
    writes for it (character_reports: Shift compensated for Caps Lock, and
    Caps Lock tapped off and on again around the few characters Shift cannot
    compensate) to libxkbcommon with the layout's XKB keymap, produces
    exactly that character and leaves Caps Lock as it was, under every
    Compose locale the table was derived for.  (XKB gives the Return key's
    text as "\\r"; a text field turns it into the line break asked for.)
    """
    layout = find_layout(tag)
    raw = _raw(tag)
    failures = []
    for locale in raw["compose_locales"]:
        with _xkb.TargetKeyboard(raw["xkb_layout"], raw["xkb_variant"],
                                 raw["xkb_model"], locale) as kb:
            for char, presses in layout.table.items():
                kb.reset()
                if caps_lock:
                    kb.toggle_caps_lock()
                    assert kb.caps_lock
                expected = "\r" if char == "\n" else char
                typed = kb.type_reports(character_reports(layout, char, caps_lock))
                if typed != expected or kb.caps_lock != caps_lock:
                    failures.append((locale, char, presses, typed, kb.caps_lock))
    assert failures == []


def test_caps_lock_exceptions_are_not_ascii() -> None:
    """
    The characters that cannot be typed in the requested case while Caps Lock
    is on are never ASCII, and en-US has none: Caps Lock compensation covers
    every ASCII character in every layout.
    """
    assert _raw("en-US")["caps_lock_shows"] == {}
    for tag in supported_tags():
        assert [c for c in _raw(tag)["caps_lock_shows"] if c.isascii()] == [], tag


def test_tables_are_well_formed() -> None:
    """
    At least twelve layouts ship; each table maps characters to one press or
    to a dead key followed by a plain Space or by itself, only ever with Shift and/or
    AltGr held, and its metadata names the XKB layout it came from.
    """
    tags = supported_tags()
    assert len(tags) >= 12
    assert set(REQUIRED_TAGS) <= set(tags)
    for tag in tags:
        layout = find_layout(tag)
        assert layout.tag == tag == _raw(tag)["tag"]
        assert layout.xkb_layout
        for char, presses in layout.table.items():
            assert len(char) == 1
            assert len(presses) in (1, 2), (tag, char)
            for p in presses:
                assert p.modifiers & ~(SHIFT | ALTGR) == 0, (tag, char)
                assert 0x04 <= p.usage <= 0x91, (tag, char)
            if len(presses) == 2:
                # A dead key, then Space or the same dead key again.
                assert presses[1] in (KeyPress(SPACE, 0, False), presses[0]), (tag, char)


@pytest.mark.parametrize("tag", supported_tags())
def test_enter_and_tab_in_every_table(tag: str) -> None:
    """\\n is Enter and \\t is Tab in every layout; other control characters are absent."""
    layout = find_layout(tag)
    assert layout.presses("\n") == (KeyPress(ENTER, 0, False),)
    assert layout.presses("\t") == (KeyPress(TAB, 0, False),)
    assert [c for c in layout.table if c.isascii() and not c.isprintable()] in (
        ["\t", "\n"],
        ["\n", "\t"],
    )


def test_ascii_complete_everywhere() -> None:
    """Every printable ASCII character can be typed in every layout."""
    ascii_text = "".join(chr(c) for c in range(0x20, 0x7F))
    for tag in supported_tags():
        assert find_layout(tag).unsupported(ascii_text) == [], tag


# -- spot checks against what the keyboards are known to do -------------------


def test_en_gb_hash_is_its_own_key() -> None:
    """
    en-GB: '#' is the ISO key left of Enter (HID 0x32, Non-US #) and '~' is
    Shift on that key; '"' is Shift+2, '@' is Shift+', '\\' is the ISO key
    beside left Shift (0x64), '£' is Shift+3.
    """
    gb = find_layout("en-GB")
    assert gb.presses("#") == (KeyPress(0x32, 0, False),)
    assert gb.presses("~") == (KeyPress(0x32, SHIFT, False),)
    assert gb.presses('"') == (KeyPress(0x1F, SHIFT, False),)
    assert gb.presses("@") == (KeyPress(0x34, SHIFT, False),)
    assert gb.presses("\\") == (KeyPress(0x64, 0, False),)
    assert gb.presses("£") == (KeyPress(0x20, SHIFT, False),)


def test_en_us_punctuation() -> None:
    """en-US is ANSI: '#' is Shift+3, '\\' is 0x31, '@' is Shift+2, letters follow Caps Lock."""
    us = find_layout("en-US")
    assert us.presses("#") == (KeyPress(0x20, SHIFT, False),)
    assert us.presses("\\") == (KeyPress(0x31, 0, False),)
    assert us.presses("@") == (KeyPress(0x1F, SHIFT, False),)
    assert us.presses("a") == (KeyPress(0x04, 0, True),)
    assert us.presses("A") == (KeyPress(0x04, SHIFT, True),)
    assert us.unsupported("é£€") == ["é", "£", "€"]


def test_de_de_dead_keys() -> None:
    """
    de-DE: '^' is the dead circumflex key (HID 0x35) then Space, '`' is
    Shift + the dead acute key (0x2E) then Space; '@' is AltGr+Q, 'ß' and 'ä'
    are their own keys, 'z' and 'y' are swapped.
    """
    de = find_layout("de-DE")
    space = KeyPress(SPACE, 0, False)
    assert de.presses("^") == (KeyPress(0x35, 0, False), space)
    assert de.presses("`") == (KeyPress(0x2E, SHIFT, False), space)
    assert de.presses("@") == (KeyPress(0x14, ALTGR, False),)
    assert de.presses("€") == (KeyPress(0x08, ALTGR, False),)
    assert de.presses("ß") == (KeyPress(0x2D, 0, False),)
    assert de.presses("ä") == (KeyPress(0x34, 0, True),)
    assert de.presses("z") == (KeyPress(0x1C, 0, True),)
    assert de.presses("y") == (KeyPress(0x1D, 0, True),)


def test_de_de_acute_accent_is_the_dead_key_twice() -> None:
    """
    de-DE: the dead acute key followed by Space gives an apostrophe in the
    default XKB Compose table, so '´' is typed as the dead key pressed twice
    (which composes '´'), and the apostrophe stays Shift+#.
    """
    de = find_layout("de-DE")
    assert de.presses("´") == (KeyPress(0x2E, 0, False), KeyPress(0x2E, 0, False))
    assert de.presses("'") == (KeyPress(0x32, SHIFT, False),)


# -- press_report --------------------------------------------------------------


def test_press_report_caps_lock_off() -> None:
    """Without Caps Lock a press is sent as it is."""
    assert press_report(KeyPress(0x04, SHIFT, True), False) == (SHIFT, 0x04)
    assert press_report(KeyPress(0x14, ALTGR, False), False) == (ALTGR, 0x14)


def test_press_report_caps_lock_on() -> None:
    """
    With Caps Lock on, a caps-sensitive press has Shift toggled (other
    modifiers kept); a press Caps Lock does not affect is sent unchanged.
    """
    assert press_report(KeyPress(0x04, 0, True), True) == (SHIFT, 0x04)
    assert press_report(KeyPress(0x04, SHIFT, True), True) == (0, 0x04)
    assert press_report(KeyPress(0x04, 0x20, True), True) == (0, 0x04)
    assert press_report(KeyPress(0x04, ALTGR, True), True) == (ALTGR | SHIFT, 0x04)
    assert press_report(KeyPress(0x04, ALTGR | SHIFT, True), True) == (ALTGR, 0x04)
    assert press_report(KeyPress(0x1F, SHIFT, False), True) == (SHIFT, 0x1F)


# -- find_layout, supported_tags -----------------------------------------------


@pytest.mark.parametrize("given", ["de-DE", "de-de", "DE-DE", "De-dE"])
def test_find_layout_case_insensitive(given: str) -> None:
    """Language tags match case-insensitively and give the one canonical layout."""
    layout = find_layout(given)
    assert layout.tag == "de-DE"
    assert layout is find_layout("de-DE")


def test_find_layout_unknown_lists_supported() -> None:
    """An unknown tag is refused with a message naming it and every supported tag."""
    with pytest.raises(BadRequest) as e:
        find_layout("xx-YY")
    message = str(e.value)
    assert "'xx-YY'" in message
    assert "language" in message
    for tag in supported_tags():
        assert tag in message


def test_supported_tags_canonical_and_sorted() -> None:
    """The tag list is sorted, canonical (language-REGION) and holds the seed's three."""
    tags = supported_tags()
    assert tags == sorted(tags)
    for tag in tags:
        lang, region = tag.split("-")
        assert lang.islower() and region.isupper()
    for tag in ["en-US", "en-GB", "de-DE", "fr-FR", "fr-BE", "fr-CH", "de-CH", "it-IT",
                "es-ES", "pt-PT", "sv-SE", "nb-NO", "da-DK", "fi-FI"]:
        assert tag in tags


def test_import_loads_no_table() -> None:
    """Importing the module reads no table (start-up time), find_layout reads one."""
    code = (
        "import tinypilotd.paste.layouts as m;"
        "print(m._load.cache_info().currsize);"
        "m.find_layout('en-US');"
        "print(m._load.cache_info().currsize)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["0", "1"]


# -- parse_paste -----------------------------------------------------------------


def _refused(obj: object) -> str:
    with pytest.raises(BadRequest) as e:
        parse_paste(obj)
    return str(e.value)


def test_parse_paste_accepts() -> None:
    """A valid request gives the text and the layout."""
    req = parse_paste({"text": "Hello, World!", "language": "en-US"})
    assert req == PasteRequest(text="Hello, World!", layout=find_layout("en-US"))


@pytest.mark.parametrize("obj", [None, [], "text", 3, ["text", "language"]])
def test_parse_paste_not_an_object(obj: object) -> None:
    """A body that is not a JSON object is refused."""
    assert "JSON object" in _refused(obj)


@pytest.mark.parametrize("field", ["text", "language"])
def test_parse_paste_missing_field(field: str) -> None:
    """A missing field is refused, naming it."""
    obj = {"text": "hi", "language": "en-US"}
    del obj[field]
    assert _refused(obj) == f"Missing required field: {field}"


@pytest.mark.parametrize("field", ["text", "language"])
@pytest.mark.parametrize("value", [None, 1, 1.5, True, [], {}])
def test_parse_paste_wrong_type(field: str, value: object) -> None:
    """A field that is not a string is refused, naming it."""
    obj = {"text": "hi", "language": "en-US", field: value}
    message = _refused(obj)
    assert message.startswith(f"{field} must be a string")


def test_parse_paste_too_long() -> None:
    """10,000 characters are accepted; 10,001 are refused, saying so."""
    assert len(parse_paste({"text": "a" * MAX_TEXT_LENGTH, "language": "en-US"}).text) == 10_000
    message = _refused({"text": "a" * (MAX_TEXT_LENGTH + 1), "language": "en-US"})
    assert "text" in message and "10000" in message and "10001" in message


def test_parse_paste_unknown_language() -> None:
    """An unknown language is refused, listing the supported ones."""
    message = _refused({"text": "hi", "language": "tlh-KL"})
    assert "'tlh-KL'" in message and "en-US, en-GB" not in message and "en-US" in message


def test_parse_paste_language_case_insensitive() -> None:
    """'de-de' selects de-DE."""
    assert parse_paste({"text": "ß", "language": "de-de"}).layout.tag == "de-DE"


def test_parse_paste_unsupported_characters_seed_form() -> None:
    """The seed's exact message: each unsupported character once, in order of first appearance."""
    message = _refused({"text": "こんにちはこんにちは", "language": "en-US"})
    assert message == "These characters are not supported: 'こ', 'ん', 'に', 'ち', 'は'"
    message = _refused({"text": "Grüße 🙂 ü", "language": "en-US"})
    assert message == "These characters are not supported: 'ü', 'ß', '🙂'"


def test_parse_paste_unsupported_control_characters() -> None:
    """Control characters other than line breaks and Tab are refused, shown escaped."""
    message = _refused({"text": "a\x07b\x1b", "language": "en-US"})
    assert message == r"These characters are not supported: '\x07', '\x1b'"


def test_parse_paste_normalises_line_breaks() -> None:
    """\\r\\n and a lone \\r both become one \\n; \\t is kept."""
    req = parse_paste({"text": "a\r\nb\rc\n\td\r\r\n", "language": "en-GB"})
    assert req.text == "a\nb\nc\n\td\n\n"


def test_parse_paste_layout_specific() -> None:
    """A character one layout types and another cannot is accepted only for the first."""
    assert parse_paste({"text": "£", "language": "en-GB"}).text == "£"
    assert _refused({"text": "£", "language": "en-US"}) == (
        "These characters are not supported: '£'"
    )
