"""
The virtual target's display: a desktop console, terminal windows, a paint
layer for mouse drawing and a pointer, rendered with Pillow to JPEG.
"""

from __future__ import annotations

import io
import shlex
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

DESKTOP = (24, 52, 78)
DESKTOP_TEXT = (220, 230, 240)
WINDOW_BG = (16, 16, 16)
WINDOW_TEXT = (200, 240, 200)
WINDOW_FRAME = (190, 190, 200)
TITLE_BAR = (70, 80, 110)
TITLE_TEXT = (255, 255, 255)
PAINT = (230, 40, 40)
PAINT_WIDTH = 3
TAB_STOP = 8
MAX_WINDOWS = 8
MAX_LINES = 2000

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@lru_cache(maxsize=4)
def console_font(size: int) -> Font:
    """
    A monospaced font when the system has DejaVu Sans Mono (so Tab stops line
    up), else Pillow's built-in default font at C{size}.
    """
    try:
        return ImageFont.truetype("DejaVuSansMono.ttf", size)
    except OSError:
        pass
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


class Console:
    """
    A scrollback of text lines with the cursor at the end of the last line.

    @ivar prompt: printed at the start of each input line; Backspace never
        deletes it.  A console with a prompt runs a tiny shell on Enter
        (C{echo}, C{clear}); one without just starts a new line.
    @ivar scroll: how many lines the view is scrolled back from the bottom.
    """

    def __init__(self, prompt: str = "") -> None:
        self.prompt = prompt
        self.lines: list[str] = [prompt]
        self.scroll = 0

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def type(self, text: str) -> None:
        for ch in text:
            if ch == "\n":
                self._enter()
            elif ch == "\t":
                col = len(self.lines[-1])
                self.lines[-1] += " " * (TAB_STOP - col % TAB_STOP)
            elif ch.isprintable():
                self.lines[-1] += ch
        self.scroll = 0

    def backspace(self) -> None:
        if len(self.lines[-1]) > len(self.prompt):
            self.lines[-1] = self.lines[-1][:-1]
        elif not self.prompt and len(self.lines) > 1:
            self.lines.pop()
        self.scroll = 0

    def scroll_by(self, lines: int) -> None:
        """Positive: back towards older lines (wheel up)."""
        self.scroll = max(0, min(len(self.lines) - 1, self.scroll + lines))

    def _enter(self) -> None:
        command = self.lines[-1][len(self.prompt) :]
        if self.prompt:
            self._run(command.strip())
        self.lines.append(self.prompt)
        del self.lines[:-MAX_LINES]

    def _run(self, command: str) -> None:
        try:
            argv = shlex.split(command)
        except ValueError:
            argv = command.split()
        if not argv:
            return
        if argv[0] == "echo":
            self.lines.append(" ".join(argv[1:]))
        elif argv[0] == "clear":
            self.lines.clear()


class Window:
    """A terminal window: a title bar and a console with a shell prompt."""

    def __init__(self, title: str, box: tuple[int, int, int, int]) -> None:
        self.title = title
        self.box = box
        self.console = Console(prompt="user@target:~$ ")


class Screen:
    """
    Everything the target shows.  Mutators mark the screen dirty;
    L{jpeg} re-encodes only when something changed since the last call.
    """

    def __init__(self, width: int, height: int, *, quality: int = 80, font_size: int = 16) -> None:
        self.width = width
        self.height = height
        self.quality = quality
        self.font = console_font(font_size)
        self.line_height = font_size + 4
        self.char_width = max(1, round(self.font.getlength("M")))
        self.desktop = Console()
        self.windows: list[Window] = []
        self.pointer = (width // 2, height // 2)
        self.paint = Image.new("L", (width, height), 0)
        self._paint_draw = ImageDraw.Draw(self.paint)
        self.dirty = True
        self._jpeg = b""
        self.encodes = 0

    @property
    def focus(self) -> Console:
        return self.windows[-1].console if self.windows else self.desktop

    def type(self, text: str) -> None:
        self.focus.type(text)
        self.dirty = True

    def backspace(self) -> None:
        self.focus.backspace()
        self.dirty = True

    def scroll(self, lines: int) -> None:
        self.focus.scroll_by(lines)
        self.dirty = True

    def open_terminal(self) -> Window:
        n = len(self.windows) % MAX_WINDOWS
        dx, dy = round(self.width * 0.06) + 28 * n, round(self.height * 0.08) + 28 * n
        box = (dx, dy, dx + round(self.width * 0.88), dy + round(self.height * 0.84))
        window = Window(f"Terminal {len(self.windows) + 1} - user@target: ~", box)
        self.windows.append(window)
        del self.windows[:-MAX_WINDOWS]
        self.dirty = True
        return window

    def move_pointer(self, x: int, y: int, *, drawing: bool) -> None:
        if drawing:
            self._paint_draw.line([self.pointer, (x, y)], fill=255, width=PAINT_WIDTH)
        self.pointer = (x, y)
        self.dirty = True

    def dot(self) -> None:
        """A button press without a move still leaves a mark."""
        x, y = self.pointer
        r = PAINT_WIDTH // 2
        self._paint_draw.rectangle((x - r, y - r, x + r, y + r), fill=255)
        self.dirty = True

    def render(self) -> Image.Image:
        img = Image.new("RGB", (self.width, self.height), DESKTOP)
        draw = ImageDraw.Draw(img)
        self._draw_console(draw, self.desktop, (12, 10, self.width - 12, self.height - 10), DESKTOP_TEXT)
        for window in self.windows:
            x0, y0, x1, y1 = window.box
            title_h = self.line_height + 8
            draw.rectangle((x0, y0, x1, y1), fill=WINDOW_BG, outline=WINDOW_FRAME, width=2)
            draw.rectangle((x0 + 2, y0 + 2, x1 - 2, y0 + title_h), fill=TITLE_BAR)
            draw.text((x0 + 10, y0 + 6), window.title, font=self.font, fill=TITLE_TEXT)
            self._draw_console(
                draw, window.console, (x0 + 10, y0 + title_h + 8, x1 - 10, y1 - 8), WINDOW_TEXT
            )
        img.paste(PAINT, (0, 0), self.paint)
        self._draw_pointer(draw)
        return img

    def jpeg(self) -> bytes:
        """The current screen as one JPEG; cached until the next change."""
        if self.dirty or not self._jpeg:
            buf = io.BytesIO()
            self.render().save(buf, "JPEG", quality=self.quality)
            self._jpeg = buf.getvalue()
            self.dirty = False
            self.encodes += 1
        return self._jpeg

    def _draw_console(
        self,
        draw: ImageDraw.ImageDraw,
        console: Console,
        box: tuple[int, int, int, int],
        colour: tuple[int, int, int],
    ) -> None:
        x0, y0, x1, y1 = box
        cols = max(1, (x1 - x0) // self.char_width)
        rows = max(1, (y1 - y0) // self.line_height)
        wrapped: list[str] = []
        for line in console.lines:
            wrapped.extend(line[i : i + cols] for i in range(0, max(len(line), 1), cols))
        end = len(wrapped) - console.scroll
        visible = wrapped[max(0, end - rows) : end]
        for row, text in enumerate(visible):
            draw.text((x0, y0 + row * self.line_height), text, font=self.font, fill=colour)
        if console.scroll == 0 and visible:
            last = visible[-1]
            cx = x0 + round(self.font.getlength(last)) + 1
            cy = y0 + (len(visible) - 1) * self.line_height
            draw.rectangle((cx, cy + 2, cx + self.char_width - 2, cy + self.line_height - 2), fill=colour)

    def _draw_pointer(self, draw: ImageDraw.ImageDraw) -> None:
        x, y = self.pointer
        arrow = [(0, 0), (0, 17), (4, 13), (7, 20), (10, 19), (7, 12), (12, 12)]
        draw.polygon([(x + dx, y + dy) for dx, dy in arrow], fill=(255, 255, 255), outline=(0, 0, 0))
