"""
A simulated target keyboard: libxkbcommon through ctypes.

Used only by C{tools/gen_layouts.py} (to derive the layout tables) and by the
test suite (to prove them).  The daemon never imports this module: the device
needs no XKB at run time.

A L{TargetKeyboard} is what a Linux desktop does with the keyboard we
emulate: HID usages become evdev keycodes (the kernel's C{hid-input} mapping
below), evdev keycodes become keysyms under an XKB keymap (libxkbcommon with
xkeyboard-config), and dead keys go through the locale's Compose table, as an
input method would.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterable

# HID keyboard-page usage -> Linux evdev keycode, usages 0x00..0x91: the USB HID
# Usage Tables' keyboard page as the kernel maps it (drivers/hid/hid-input.c,
# hid_keyboard[]).  0 = no key.  Note that 0x31 (Backslash, ANSI) and 0x32
# (Non-US #, ISO) are the same evdev key, KEY_BACKSLASH.
HID_TO_EVDEV: tuple[int, ...] = (
    # fmt: off
    0,   0,   0,   0,  30,  48,  46,  32,  18,  33,  34,  35,  23,  36,  37,  38,  # 0x00
    50,  49,  24,  25,  16,  19,  31,  20,  22,  47,  17,  45,  21,  44,   2,   3,  # 0x10
    4,   5,   6,   7,   8,   9,  10,  11,  28,   1,  14,  15,  57,  12,  13,  26,  # 0x20
    27,  43,  43,  39,  40,  41,  51,  52,  53,  58,  59,  60,  61,  62,  63,  64,  # 0x30
    65,  66,  67,  68,  87,  88,  99,  70, 119, 110, 102, 104, 111, 107, 109, 106,  # 0x40
    105, 108, 103,  69,  98,  55,  74,  78,  96,  79,  80,  81,  75,  76,  77,  71,  # 0x50
    72,  73,  82,  83,  86, 127, 116, 117, 183, 184, 185, 186, 187, 188, 189, 190,  # 0x60
    191, 192, 193, 194, 134, 138, 130, 132, 128, 129, 131, 137, 133, 135, 136, 113,  # 0x70
    115, 114,   0,   0,   0, 121,   0,  89,  93, 124,  92,  94,  95,   0,   0,   0,  # 0x80
    122, 123,                                                                        # 0x90
    # fmt: on
)

# evdev keycodes of the keys the simulated keyboard presses itself.
KEY_LEFTSHIFT = 42
KEY_RIGHTALT = 100
KEY_CAPSLOCK = 58
KEY_SPACE = 57

# HID modifier bits (byte 0 of a boot keyboard report) -> evdev modifier keys.
MODIFIER_KEYS: dict[int, int] = {
    0x01: 29,  # LeftCtrl
    0x02: KEY_LEFTSHIFT,
    0x04: 56,  # LeftAlt
    0x08: 125,  # LeftMeta
    0x10: 97,  # RightCtrl
    0x20: 54,  # RightShift
    0x40: KEY_RIGHTALT,  # AltGr
    0x80: 126,  # RightMeta
}

_EVDEV_OFFSET = 8  # XKB keycode = evdev keycode + 8
_KEY_UP, _KEY_DOWN = 0, 1
_COMPOSE_NOTHING, _COMPOSE_COMPOSING, _COMPOSE_COMPOSED, _COMPOSE_CANCELLED = range(4)
_STATE_MODS_LOCKED = 1 << 2


class XkbUnavailable(Exception):
    """libxkbcommon (or the xkeyboard-config data) cannot be loaded here."""


class _RuleNames(ctypes.Structure):
    _fields_ = [
        ("rules", ctypes.c_char_p),
        ("model", ctypes.c_char_p),
        ("layout", ctypes.c_char_p),
        ("variant", ctypes.c_char_p),
        ("options", ctypes.c_char_p),
    ]


_lib: ctypes.CDLL | None = None


def library() -> ctypes.CDLL:
    """
    Load libxkbcommon once and declare the functions we call.

    @raise XkbUnavailable: the shared library is not installed.
    """
    global _lib
    if _lib is not None:
        return _lib
    name = ctypes.util.find_library("xkbcommon") or "libxkbcommon.so.0"
    try:
        lib = ctypes.CDLL(name)
    except OSError as e:
        raise XkbUnavailable(f"cannot load libxkbcommon ({name}): {e}") from e
    p, u32, i, sz = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_size_t
    buf = ctypes.c_char_p
    sigs: dict[str, tuple[object, list[object]]] = {
        "xkb_context_new": (p, [i]),
        "xkb_context_unref": (None, [p]),
        "xkb_keymap_new_from_names": (p, [p, ctypes.POINTER(_RuleNames), i]),
        "xkb_keymap_unref": (None, [p]),
        "xkb_state_new": (p, [p]),
        "xkb_state_unref": (None, [p]),
        "xkb_state_update_key": (i, [p, u32, i]),
        "xkb_state_key_get_one_sym": (u32, [p, u32]),
        "xkb_state_key_get_utf8": (i, [p, u32, buf, sz]),
        "xkb_state_mod_name_is_active": (i, [p, buf, i]),
        "xkb_keysym_get_name": (i, [u32, buf, sz]),
        "xkb_compose_table_new_from_locale": (p, [p, buf, i]),
        "xkb_compose_table_unref": (None, [p]),
        "xkb_compose_state_new": (p, [p, i]),
        "xkb_compose_state_unref": (None, [p]),
        "xkb_compose_state_reset": (None, [p]),
        "xkb_compose_state_feed": (i, [p, u32]),
        "xkb_compose_state_get_status": (i, [p]),
        "xkb_compose_state_get_utf8": (i, [p, buf, sz]),
    }
    for fname, (restype, argtypes) in sigs.items():
        fn = getattr(lib, fname)
        fn.restype = restype
        fn.argtypes = argtypes
    _lib = lib
    return lib


def keysym_name(sym: int) -> str:
    """The XKB name of a keysym, e.g. C{"dead_circumflex"}."""
    out = ctypes.create_string_buffer(64)
    library().xkb_keysym_get_name(sym, out, len(out))
    return out.value.decode()


class TargetKeyboard:
    """
    One keyboard plugged into a simulated Linux target: an XKB keymap, its
    state (held modifiers, Caps Lock) and a Compose state for dead keys.

    @ivar typed: the text produced so far.
    """

    def __init__(self, layout: str, variant: str = "", model: str = "pc105",
                 locale: str = "en_US.UTF-8") -> None:
        lib = library()
        self._lib = lib
        self._ctx = lib.xkb_context_new(0)
        if not self._ctx:
            raise XkbUnavailable("xkb_context_new failed")
        names = _RuleNames(b"evdev", model.encode(), layout.encode(),
                           variant.encode(), b"")
        self._keymap = lib.xkb_keymap_new_from_names(self._ctx, ctypes.byref(names), 0)
        if not self._keymap:
            raise XkbUnavailable(f"no XKB keymap for layout={layout!r} variant={variant!r}")
        self._compose_table = lib.xkb_compose_table_new_from_locale(
            self._ctx, locale.encode(), 0)
        if not self._compose_table:
            raise XkbUnavailable(f"no Compose table for locale {locale!r}")
        self._state = None
        self._compose = None
        self.reset()

    def close(self) -> None:
        lib = self._lib
        lib.xkb_compose_state_unref(self._compose)
        lib.xkb_state_unref(self._state)
        lib.xkb_compose_table_unref(self._compose_table)
        lib.xkb_keymap_unref(self._keymap)
        lib.xkb_context_unref(self._ctx)

    def __enter__(self) -> TargetKeyboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self) -> None:
        """Release everything: no key down, Caps Lock off, nothing composing."""
        lib = self._lib
        if self._state is not None:
            lib.xkb_state_unref(self._state)
            lib.xkb_compose_state_unref(self._compose)
        self._state = lib.xkb_state_new(self._keymap)
        self._compose = lib.xkb_compose_state_new(self._compose_table, 0)
        self.typed = ""

    # -- inspection ------------------------------------------------------------

    def keysym(self, evdev: int) -> int:
        """The keysym C{evdev} would produce now (Caps Lock transformation applied)."""
        return self._lib.xkb_state_key_get_one_sym(self._state, evdev + _EVDEV_OFFSET)

    def held_keysym(self, modifiers: int, usage: int) -> int:
        """The keysym of C{usage} while C{modifiers} are held (state left as it was)."""
        mods = [key for bit, key in sorted(MODIFIER_KEYS.items()) if modifiers & bit]
        for m in mods:
            self._lib.xkb_state_update_key(self._state, m + _EVDEV_OFFSET, _KEY_DOWN)
        sym = self.keysym(HID_TO_EVDEV[usage])
        for m in reversed(mods):
            self._lib.xkb_state_update_key(self._state, m + _EVDEV_OFFSET, _KEY_UP)
        return sym

    def has_altgr(self) -> bool:
        """Whether Right Alt is AltGr (ISO_Level3_Shift) in this keymap."""
        return keysym_name(self.keysym(KEY_RIGHTALT)) == "ISO_Level3_Shift"

    @property
    def caps_lock(self) -> bool:
        return bool(self._lib.xkb_state_mod_name_is_active(
            self._state, b"Lock", _STATE_MODS_LOCKED))

    @property
    def composing(self) -> bool:
        status = self._lib.xkb_compose_state_get_status(self._compose)
        return status == _COMPOSE_COMPOSING

    # -- events ------------------------------------------------------------------

    def key(self, evdev: int, down: bool) -> None:
        """
        One evdev key event, handled like a client does: on key down the
        keysym (from the state before this key) goes through Compose; the text
        is the composed string, or the key's own UTF-8 when nothing composes.
        """
        lib = self._lib
        code = evdev + _EVDEV_OFFSET
        if down:
            sym = lib.xkb_state_key_get_one_sym(self._state, code)
            out = ctypes.create_string_buffer(64)
            lib.xkb_compose_state_feed(self._compose, sym)
            status = lib.xkb_compose_state_get_status(self._compose)
            if status == _COMPOSE_COMPOSED:
                lib.xkb_compose_state_get_utf8(self._compose, out, len(out))
                lib.xkb_compose_state_reset(self._compose)
            elif status == _COMPOSE_CANCELLED:
                lib.xkb_compose_state_reset(self._compose)
            elif status == _COMPOSE_NOTHING:
                lib.xkb_state_key_get_utf8(self._state, code, out, len(out))
            self.typed += out.value.decode()
        lib.xkb_state_update_key(self._state, code, _KEY_DOWN if down else _KEY_UP)

    def tap(self, evdev: int) -> None:
        self.key(evdev, True)
        self.key(evdev, False)

    def toggle_caps_lock(self) -> None:
        self.tap(KEY_CAPSLOCK)

    def report(self, modifiers: int, usage: int) -> None:
        """
        One HID keyboard report followed by the all-released report, as the
        kernel turns them into evdev events: modifiers down, key down, key
        up, modifiers up.
        """
        mods = [key for bit, key in sorted(MODIFIER_KEYS.items()) if modifiers & bit]
        for m in mods:
            self.key(m, True)
        self.tap(HID_TO_EVDEV[usage])
        for m in reversed(mods):
            self.key(m, False)

    def type_reports(self, reports: Iterable[tuple[int, int]]) -> str:
        """Send C{(modifiers, usage)} reports; return the text they produced."""
        before = len(self.typed)
        for modifiers, usage in reports:
            self.report(modifiers, usage)
        return self.typed[before:]
