#!/usr/bin/env python3
"""
Generate tinypilotd/paste/layouts/<tag>.json from xkeyboard-config.

Re-run after changing LAYOUTS below or upgrading xkb-data:

    python3 tools/gen_layouts.py            # rewrite the tables
    python3 tools/gen_layouts.py --check    # exit 1 if a table would change

Needs libxkbcommon0, xkb-data and libx11-data (the Compose tables) installed;
the daemon itself needs none of them.  The output is sorted and stable, so
regenerating on the same xkb-data gives no diff.

How a table is derived, for each layout:

1. Keys: the HID usages a PC keyboard of that shape has for text (letters,
   digits, punctuation, Space; plus the ISO key 0x64 on ISO keyboards, where
   the key left of Enter is sent as 0x32 "Non-US #"; on ANSI as 0x31).
2. Each key is pressed with no modifier, Shift, AltGr (Right Alt, when the
   keymap makes it ISO_Level3_Shift) and Shift+AltGr, in a fresh XKB state,
   and the text it produces is recorded.  A key whose keysym is a dead_* key
   produces nothing on its own; it is followed by Space, or pressed twice
   (de-DE's dead acute composes an apostrophe with Space but '´' with
   itself), and the result of the Compose table is the character (only when
   every locale in compose_locales agrees).
3. Caps Lock: each press is repeated with Caps Lock locked.  If it still
   gives the character, caps_sensitive is false; if the press with Shift
   toggled gives it, caps_sensitive is true (press_report toggles Shift).
   If neither does, XKB offers no single press for that character while Caps
   Lock is on: the table keeps caps_sensitive false and records, under
   "caps_lock_shows", what the target shows instead (e.g. fr-FR 'é' -> 'É').
4. Each character keeps one way to type it, the first in this order: works
   under Caps Lock, a plain press before a dead key, fewest modifiers, lowest
   modifier bits, lowest usage.
5. "\\n" is Enter (0x28) and "\\t" is Tab (0x2B) in every table.
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinypilotd.paste._xkb import TargetKeyboard, keysym_name  # noqa: E402

OUT_DIR = ROOT / "tinypilotd" / "paste" / "layouts"

SHIFT = 0x02  # LeftShift
ALTGR = 0x40  # RightAlt

# The Compose table most locales use; a dead-key character is claimed only if
# this table and the layout's own locale both compose it.
DEFAULT_LOCALE = "en_US.UTF-8"


class LayoutSpec(NamedTuple):
    tag: str  # IETF language tag
    layout: str  # XKB layout
    variant: str  # XKB variant
    iso: bool  # ISO keyboard (105 keys) rather than ANSI (104 keys)
    locale: str  # the locale a native target runs


LAYOUTS: tuple[LayoutSpec, ...] = (
    LayoutSpec("en-US", "us", "", False, "en_US.UTF-8"),
    LayoutSpec("en-GB", "gb", "", True, "en_GB.UTF-8"),
    LayoutSpec("de-DE", "de", "", True, "de_DE.UTF-8"),
    LayoutSpec("de-CH", "ch", "", True, "de_CH.UTF-8"),
    LayoutSpec("fr-FR", "fr", "", True, "fr_FR.UTF-8"),
    LayoutSpec("fr-BE", "be", "", True, "fr_BE.UTF-8"),
    LayoutSpec("fr-CH", "ch", "fr", True, "fr_CH.UTF-8"),
    LayoutSpec("it-IT", "it", "", True, "it_IT.UTF-8"),
    LayoutSpec("es-ES", "es", "", True, "es_ES.UTF-8"),
    LayoutSpec("pt-PT", "pt", "", True, "pt_PT.UTF-8"),
    LayoutSpec("sv-SE", "se", "", True, "sv_SE.UTF-8"),
    LayoutSpec("nb-NO", "no", "", True, "nb_NO.UTF-8"),
    LayoutSpec("da-DK", "dk", "", True, "da_DK.UTF-8"),
    LayoutSpec("fi-FI", "fi", "", True, "fi_FI.UTF-8"),
)

ENTER, TAB, SPACE = 0x28, 0x2B, 0x2C
ANSI_BACKSLASH, ISO_HASH, ISO_EXTRA = 0x31, 0x32, 0x64


def text_usages(iso: bool) -> list[int]:
    """The HID usages of the keys that type text on this keyboard shape."""
    usages = list(range(0x04, 0x28))  # a..z, 1..0
    usages += [SPACE] + list(range(0x2D, 0x31)) + list(range(0x33, 0x39))
    usages += [ISO_HASH, ISO_EXTRA] if iso else [ANSI_BACKSLASH]
    return sorted(usages)


class Press(NamedTuple):
    usage: int
    modifiers: int
    caps_sensitive: bool


class Way(NamedTuple):
    """One way of typing a character, with what we need to rank it."""

    presses: tuple[Press, ...]
    caps_ok: bool  # some press sequence gives the character under Caps Lock
    caps_shows: str  # what the target shows under Caps Lock when not caps_ok

    def rank(self) -> tuple[int, int, int, int, int]:
        first = self.presses[0]
        return (
            0 if self.caps_ok else 1,
            len(self.presses),
            bin(first.modifiers).count("1"),
            first.modifiers,
            first.usage,
        )


def typeable(text: str) -> bool:
    return len(text) == 1 and unicodedata.category(text) not in ("Cc", "Cs", "Co", "Cn")


def produce(kbs: list[TargetKeyboard], reports: list[tuple[int, int]], caps: bool) -> str | None:
    """Type C{reports} on fresh keyboards; the text if every keyboard agrees."""
    results = set()
    for kb in kbs:
        kb.reset()
        if caps:
            kb.toggle_caps_lock()
        results.add(kb.type_reports(reports))
    return results.pop() if len(results) == 1 else None


def ways_for_key(kbs: list[TargetKeyboard], usage: int, modifiers: int) -> list[tuple[str, Way]]:
    """
    How (and whether) pressing C{usage} with C{modifiers} types a character:
    one way for an ordinary key, up to two for a dead key (then Space, or
    twice).
    """
    kb = kbs[0]
    kb.reset()
    if not keysym_name(kb.held_keysym(modifiers, usage)).startswith("dead_"):
        tails: list[tuple[tuple[int, int], ...]] = [()]
    else:
        tails = [((0, SPACE),), ((modifiers, usage),)]
    ways = []
    for tail in tails:
        found = _way(kbs, usage, modifiers, tail)
        if found is not None:
            ways.append(found)
    return ways


def _way(kbs: list[TargetKeyboard], usage: int, modifiers: int, tail: tuple[tuple[int, int], ...]) -> tuple[str, Way] | None:
    reports = [(modifiers, usage), *tail]
    char = produce(kbs, reports, caps=False)
    if char is None or not typeable(char):
        return None

    def presses(caps_sensitive: bool) -> tuple[Press, ...]:
        first = Press(usage, modifiers, caps_sensitive)
        # A dead key pressed twice is compensated like its first press.
        rest = tuple(first if (m, u) == (modifiers, usage) else Press(u, m, False) for m, u in tail)
        return (first, *rest)

    shown = produce(kbs, reports, caps=True)
    if shown == char:
        return char, Way(presses(False), True, "")
    toggled = [(m ^ SHIFT if (m, u) == (modifiers, usage) else m, u) for m, u in reports]
    if produce(kbs, toggled, caps=True) == char:
        return char, Way(presses(True), True, "")
    return char, Way(presses(False), False, shown or "")


def derive(spec: LayoutSpec) -> dict[str, object]:
    """The table for one layout, as the JSON document we check in."""
    model = "pc105" if spec.iso else "pc104"
    locales = sorted({DEFAULT_LOCALE, spec.locale})
    kbs = [TargetKeyboard(spec.layout, spec.variant, model, loc) for loc in locales]
    try:
        combos = [0, SHIFT]
        if kbs[0].has_altgr():
            combos += [ALTGR, SHIFT | ALTGR]
        best: dict[str, Way] = {}
        for usage in text_usages(spec.iso):
            for modifiers in combos:
                for char, way in ways_for_key(kbs, usage, modifiers):
                    if char not in best or way.rank() < best[char].rank():
                        best[char] = way
    finally:
        for kb in kbs:
            kb.close()
    chars = {c: [list(p) for p in w.presses] for c, w in best.items()}
    chars["\n"] = [[ENTER, 0, False]]
    chars["\t"] = [[TAB, 0, False]]
    caps_lock_shows = {c: w.caps_shows for c, w in best.items() if not w.caps_ok}
    return {
        "tag": spec.tag,
        "xkb_layout": spec.layout,
        "xkb_variant": spec.variant,
        "xkb_model": model,
        "compose_locales": locales,
        "chars": chars,
        "caps_lock_shows": caps_lock_shows,
    }


def render(doc: dict[str, object]) -> str:
    """Stable JSON: sorted by code point, one character per line, [usage, modifiers, caps]."""
    head = {k: v for k, v in doc.items() if k not in ("chars", "caps_lock_shows")}
    lines = ["{"]
    for key, value in head.items():
        lines.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)},")
    for section in ("chars", "caps_lock_shows"):
        table = doc[section]
        assert isinstance(table, dict)
        entries = [
            f"    {json.dumps(c, ensure_ascii=False)}: {json.dumps(table[c], ensure_ascii=False)}"
            for c in sorted(table)
        ]
        lines.append(f"  {json.dumps(section)}: {{")
        lines.append(",\n".join(entries))
        lines.append("  }," if section == "chars" else "  }")
    lines.append("}")
    return "\n".join(line for line in lines if line) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="only report tables that would change; exit 1 if any")
    parser.add_argument("tags", nargs="*", help="only these layouts (default: all)")
    args = parser.parse_args(argv)
    specs = [s for s in LAYOUTS if not args.tags or s.tag in args.tags]
    stale = []
    OUT_DIR.mkdir(exist_ok=True)
    for spec in specs:
        doc = derive(spec)
        text = render(doc)
        path = OUT_DIR / f"{spec.tag}.json"
        chars = doc["chars"]
        assert isinstance(chars, dict)
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old == text:
            status = "unchanged"
        elif args.check:
            status = "STALE"
            stale.append(spec.tag)
        else:
            path.write_text(text, encoding="utf-8")
            status = "written"
        print(f"{spec.tag}: {len(chars)} characters, {status}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
