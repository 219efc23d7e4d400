"""
(2) POST /api/v1/paste types en-US and de-DE samples as a PC keyboard with
that layout would, and (7) still types the requested case while the target
has Caps Lock on.

The expected key sequences are written out here by hand from the physical
layouts (Linux key codes, Shift/AltGr), independently of the daemon's tables.
"""

import time

from hwinput import KEY_CAPSLOCK, LED_CAPSL, presses

SHIFT, ALTGR = frozenset({"Shift"}), frozenset({"AltGr"})
NONE = frozenset()
SPACE, ENTER, TAB = 57, 28, 15

_LETTERS = dict(zip("abcdefghijklmnopqrstuvwxyz",
                    [30, 48, 46, 32, 18, 33, 34, 35, 23, 36, 37, 38, 50, 49, 24, 25, 16, 19,
                     31, 20, 22, 47, 17, 45, 21, 44], strict=True))
_DIGITS = dict(zip("1234567890", range(2, 12), strict=True))


def _letters(table):
    keys = {}
    for ch, key in table.items():
        keys[ch] = [(key, NONE)]
        keys[ch.upper()] = [(key, SHIFT)]
    return keys


# US QWERTY (en-US).
EN_US = {**_letters(_LETTERS), **{d: [(k, NONE)] for d, k in _DIGITS.items()},
         " ": [(SPACE, NONE)], "\n": [(ENTER, NONE)], "\t": [(TAB, NONE)]}
for (unshifted, shifted), key in [("`~", 41), ("-_", 12), ("=+", 13), ("[{", 26), ("]}", 27),
                                  ("\\|", 43), (";:", 39), ("'\"", 40), (",<", 51), (".>", 52),
                                  ("/?", 53)]:
    EN_US[unshifted] = [(key, NONE)]
    EN_US[shifted] = [(key, SHIFT)]
for ch, digit in zip("!@#$%^&*()", "1234567890", strict=True):
    EN_US[ch] = [(_DIGITS[digit], SHIFT)]

# German T1 (de-DE): Y and Z swapped, umlauts, AltGr symbols, dead ^ and `.
DE_DE = {**_letters({**_LETTERS, "y": 44, "z": 21}),
         **{d: [(k, NONE)] for d, k in _DIGITS.items()},
         **_letters({"ä": 40, "ö": 39, "ü": 26}),
         " ": [(SPACE, NONE)], "\n": [(ENTER, NONE)], "\t": [(TAB, NONE)],
         "ß": [(12, NONE)], "?": [(12, SHIFT)],
         "+": [(27, NONE)], "*": [(27, SHIFT)], "~": [(27, ALTGR)],
         "#": [(43, NONE)], "'": [(43, SHIFT)],
         ",": [(51, NONE)], ";": [(51, SHIFT)], ".": [(52, NONE)], ":": [(52, SHIFT)],
         "-": [(53, NONE)], "_": [(53, SHIFT)],
         "<": [(86, NONE)], ">": [(86, SHIFT)], "|": [(86, ALTGR)],
         "@": [(16, ALTGR)], "€": [(18, ALTGR)], "µ": [(50, ALTGR)],
         "{": [(8, ALTGR)], "[": [(9, ALTGR)], "]": [(10, ALTGR)], "}": [(11, ALTGR)],
         "\\": [(12, ALTGR)],
         "°": [(41, SHIFT)],
         "^": [(41, NONE), (SPACE, NONE)],     # dead circumflex, then Space
         "`": [(13, SHIFT), (SPACE, NONE)]}    # dead grave, then Space
for ch, digit in zip("!\"§$%&/()=", "1234567890", strict=True):
    DE_DE[ch] = [(_DIGITS[digit], SHIFT)]

EN_US_SAMPLE = "Hello, World! ~`!@#$%^&*()_+-=[]{}\\|;:'\",.<>/? 0189\tZq\n"
DE_DE_SAMPLE = "Größe: Äpfel & Öl? zyZY ß@€{[]}\\|<>#'+*~°§\"µ_;^ `x\n"


def canonical(modifiers):
    """Either Shift is Shift; AltGr is Right Alt (the contract)."""
    names = {"LeftShift": "Shift", "RightShift": "Shift", "RightAlt": "AltGr"}
    return frozenset(names.get(m, m) for m in modifiers)


def expected_presses(table, text):
    return [press for ch in text for press in table[ch]]


def typed_presses(keyboard, count, timeout):
    """Read the target's keyboard until `count` key presses arrived and all
    keys are up again (or the time is up)."""
    events = keyboard.collect(lambda ev: len(presses(ev)) >= count and not keyboard.keys_down(),
                              timeout=timeout)
    events += keyboard.wait_quiet(0.3, 2)
    return [(key, canonical(mods)) for key, mods in presses(events)]


def paste_and_read(client, keyboard, text, language):
    keyboard.drain()
    started = time.monotonic()
    response = client.paste(text, language)
    assert response.status == 200, response
    count = len(expected_presses(EN_US if language == "en-US" else DE_DE, text))
    typed = typed_presses(keyboard, count, timeout=15 + 0.2 * len(text))
    return typed, time.monotonic() - started


def test_paste_en_us_sample_types_the_us_key_sequence(client, target, figures):
    """Every character of the en-US sample arrives as its US-layout key with
    the right Shift state, in order, and no key stays down."""
    typed, took = paste_and_read(client, target.keyboard, EN_US_SAMPLE, "en-US")
    assert typed == expected_presses(EN_US, EN_US_SAMPLE)
    assert target.keyboard.keys_down() == set()
    figures["paste en-US sample (%d chars) until typed (s)" % len(EN_US_SAMPLE)] = round(took, 2)


def test_paste_de_de_sample_types_the_german_key_sequence(client, target):
    """The de-DE sample: swapped Y/Z, umlauts, AltGr (Right Alt) symbols and
    the dead keys ^ and ` followed by Space."""
    typed, _ = paste_and_read(client, target.keyboard, DE_DE_SAMPLE, "de-DE")
    assert typed == expected_presses(DE_DE, DE_DE_SAMPLE)
    assert target.keyboard.keys_down() == set()


def text_on_a_us_target(typed, caps_lock):
    """What a US-layout target with the given initial Caps Lock state shows
    for these presses (Caps Lock inverts Shift for letters; a Caps Lock press
    toggles it)."""
    reverse = {(key, mods): ch for ch, ((key, mods),) in EN_US.items()
               if ch.lower() == ch or not ch.isalpha()}
    out = []
    for key, mods in typed:
        if key == KEY_CAPSLOCK:
            caps_lock = not caps_lock
            continue
        shifted = "Shift" in mods
        ch = reverse.get((key, NONE if ch_is_letter(key) else mods))
        if ch is None:
            ch = reverse.get((key, mods), f"<{key}{sorted(mods)}>")
        if ch_is_letter(key):
            ch = ch.upper() if shifted != caps_lock else ch
        out.append(ch)
    return "".join(out)


def ch_is_letter(key):
    return key in _LETTERS.values()


def set_caps_lock(target, on):
    """The target turns its Caps Lock LED on or off; give the daemon time to
    read the LED report from /dev/hidg0."""
    target.keyboard.set_led(LED_CAPSL, on)
    time.sleep(1.0)
    target.keyboard.drain()


def test_paste_types_the_requested_case_while_the_target_has_caps_lock_on(client, target):
    """With the target's Caps Lock LED on, pasted text still shows the
    requested case on the target; with it off again, too."""
    text = "Hello, World! aBc XyZ"
    set_caps_lock(target, True)
    try:
        typed, _ = paste_and_read(client, target.keyboard, text, "en-US")
        assert text_on_a_us_target(typed, caps_lock=True) == text
    finally:
        set_caps_lock(target, False)
    typed, _ = paste_and_read(client, target.keyboard, text, "en-US")
    assert text_on_a_us_target(typed, caps_lock=False) == text
    assert target.keyboard.keys_down() == set()
