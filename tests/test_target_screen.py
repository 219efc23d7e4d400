"""
The virtual target's display: consoles, the terminal window, mouse drawing,
and the JPEG it encodes.
"""

from __future__ import annotations

import io

from PIL import Image

from tinypilotd.target.screen import DESKTOP, TITLE_BAR, Console, Screen


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img.convert("RGB")


def is_paint(pixel: tuple[int, int, int]) -> bool:
    r, g, b = pixel
    return r > 150 and g < 110 and b < 110


def draw_rectangle(screen: Screen, x0: int, y0: int, x1: int, y1: int) -> None:
    screen.move_pointer(x0, y0, drawing=False)
    screen.dot()
    for x, y in ((x1, y0), (x1, y1), (x0, y1), (x0, y0)):
        screen.move_pointer(x, y, drawing=True)
    screen.move_pointer(x1 + 40, y1 + 40, drawing=False)  # pointer out of the way


def test_rectangle_edges_in_decoded_jpeg() -> None:
    """
    Lines drawn with the button down appear in the encoded JPEG exactly on
    the rectangle's edges (25 %/25 % to 75 %/75 % of 1280x720), and nowhere
    inside or outside it.
    """
    screen = Screen(1280, 720)
    draw_rectangle(screen, 320, 180, 960, 540)
    img = decode(screen.jpeg())
    assert img.size == (1280, 720)
    for t in (0.1, 0.3, 0.5, 0.7, 0.9):
        x = round(320 + t * 640)
        y = round(180 + t * 360)
        assert is_paint(img.getpixel((x, 180))), ("top", x)
        assert is_paint(img.getpixel((x, 540))), ("bottom", x)
        assert is_paint(img.getpixel((320, y))), ("left", y)
        assert is_paint(img.getpixel((960, y))), ("right", y)
        assert not is_paint(img.getpixel((x, 360))), ("inside", x)
        assert not is_paint(img.getpixel((x, 100))), ("above", x)
        assert not is_paint(img.getpixel((160, y))), ("left of", y)


def test_moves_without_button_do_not_draw() -> None:
    """Moving the pointer with no button down leaves no paint behind."""
    screen = Screen(320, 240)
    screen.move_pointer(10, 120, drawing=False)
    screen.move_pointer(300, 120, drawing=False)
    screen.move_pointer(300, 10, drawing=False)
    img = decode(screen.jpeg())
    assert not any(is_paint(img.getpixel((x, 120))) for x in range(20, 280, 10))


def test_pointer_is_visible_where_it_is() -> None:
    """The pointer is drawn (white arrow) at its absolute position."""
    screen = Screen(320, 240)
    screen.move_pointer(100, 50, drawing=False)
    img = decode(screen.jpeg())
    assert min(img.getpixel((102, 58))) > 200
    assert img.getpixel((60, 200)) != img.getpixel((102, 58))


def test_jpeg_is_cached_until_something_changes() -> None:
    """An unchanged screen is not re-encoded: the same bytes come back."""
    screen = Screen(320, 240)
    first = screen.jpeg()
    assert screen.jpeg() is first
    assert screen.encodes == 1
    screen.type("x")
    assert screen.jpeg() != first
    assert screen.encodes == 2


def test_terminal_window_takes_the_text() -> None:
    """
    Ctrl+Alt+T's window opens with a title bar; text typed afterwards goes
    into it (with a prompt and a tiny shell that runs echo), not the desktop.
    """
    screen = Screen(1280, 720)
    screen.type("before\n")
    window = screen.open_terminal()
    screen.type('echo "Hello, World!"\nfirefox\n')
    assert screen.desktop.lines == ["before", ""]
    assert window.console.lines == [
        'user@target:~$ echo "Hello, World!"',
        "Hello, World!",
        "user@target:~$ firefox",
        "user@target:~$ ",
    ]
    img = decode(screen.jpeg())
    x0, y0, x1, _ = window.box
    bar = img.getpixel(((x0 + x1) // 2, y0 + 6))
    assert all(abs(a - b) < 24 for a, b in zip(bar, TITLE_BAR, strict=True)), bar
    assert img.getpixel((5, 700)) != bar
    assert all(abs(a - b) < 24 for a, b in zip(img.getpixel((5, 700)), DESKTOP, strict=True))


def test_console_editing() -> None:
    """Backspace deletes (never the prompt), Tab goes to the next 8-column stop."""
    c = Console(prompt="$ ")
    c.type("ab\tc")
    assert c.lines == ["$ ab    c"]
    for _ in range(20):
        c.backspace()
    assert c.lines == ["$ "]
    d = Console()
    d.type("x\n")
    d.backspace()
    d.backspace()
    assert d.lines == [""]


def test_wheel_scrolls_back_and_typing_returns() -> None:
    """Scrolling moves the view back through older lines, bounded; typing snaps to the bottom."""
    c = Console()
    c.type("\n".join(str(i) for i in range(50)))
    c.scroll_by(3)
    assert c.scroll == 3
    c.scroll_by(-10)
    assert c.scroll == 0
    c.scroll_by(1000)
    assert c.scroll == 49
    c.type("z")
    assert c.scroll == 0
