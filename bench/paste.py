#!/usr/bin/env python3
"""
Paste throughput: characters per second typed by C{Keyboard.paste} into a
FIFO drained by a separate reader process (standing in for a target that
collects every report at once).

Queues several 10,000-character pastes (the API's maximum) of mixed text,
so the figure includes Shift, AltGr and dead-key characters, and measures
from the first C{paste()} to the reader having received the last report.
Target: at least 5,000 characters/s (the daemon must never be what limits a
target polling at 1 kHz, which takes 500 characters/s at 2 reports each).

    python bench/paste.py [--pastes 5] [--layout en-US] [--layout de-DE]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The target: opens the FIFO read-write (so the daemon's open never sees
# ENXIO and the reader never sees end-of-file), reads until it has the byte
# count given on its command line, then prints when the last byte arrived.
READER = r"""
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
want = int(sys.argv[2])
got = 0
print("ready", flush=True)
while got < want:
    got += len(os.read(fd, 1 << 16))
print(time.monotonic(), flush=True)
"""


def sample_text(layout: object, length: int, seed: int) -> str:
    """
    Prose-like text from the characters the layout can type: mostly
    lower-case letters and spaces, some capitals, digits, punctuation,
    and whatever else the layout offers (AltGr, dead keys), plus newlines.
    """
    table = sorted(layout.table)  # type: ignore[attr-defined]
    lower = [c for c in table if c.isalpha() and c.islower() and c.isascii()]
    upper = [c for c in table if c.isalpha() and c.isupper() and c.isascii()]
    other = [c for c in table if not (c.isascii() and c.isalnum()) and c not in "\n\t "]
    digits = [c for c in table if c.isdigit()]
    rng = random.Random(seed)
    out = []
    for _ in range(length):
        r = rng.random()
        if r < 0.70:
            out.append(rng.choice(lower))
        elif r < 0.83:
            out.append(" ")
        elif r < 0.88:
            out.append(rng.choice(upper))
        elif r < 0.91:
            out.append(rng.choice(digits))
        elif r < 0.99:
            out.append(rng.choice(other))
        else:
            out.append("\n")
    return "".join(out)


def run(tag: str, pastes: int) -> tuple[int, int, float]:
    from twisted.internet import reactor
    from twisted.logger import globalLogPublisher

    from tinypilotd.hid.keyboard import Keyboard
    from tinypilotd.paste.layouts import PasteRequest, find_layout

    layout = find_layout(tag)
    texts = [sample_text(layout, 10_000, seed) for seed in range(pastes)]
    reports = sum(2 * len(layout.presses(c)) for text in texts for c in text)
    chars = sum(len(t) for t in texts)

    work = tempfile.mkdtemp(prefix="tp-paste-")
    path = os.path.join(work, "hidg0")
    os.mkfifo(path)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, path, str(reports * 8)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None
    assert reader.stdout.readline().strip() == "ready"

    keyboard = Keyboard(path, reactor=reactor)
    finished: list[float] = []

    def observe(event: dict) -> None:
        if "pasted" in event.get("log_format", ""):
            finished.append(time.monotonic())
            if len(finished) == pastes:
                reactor.stop()

    globalLogPublisher.addObserver(observe)
    started: list[float] = []

    def go() -> None:
        keyboard.startService()
        started.append(time.monotonic())
        for text in texts:
            keyboard.paste(PasteRequest(text=text, layout=layout))

    reactor.callWhenRunning(go)
    reactor.run()
    globalLogPublisher.removeObserver(observe)
    last_byte = float(reader.stdout.readline())
    reader.wait(10)
    os.unlink(path)
    os.rmdir(work)
    return chars, reports, max(last_byte, finished[-1]) - started[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pastes", type=int, default=5)
    parser.add_argument("--layout", action="append")
    args = parser.parse_args()
    tags = args.layout or ["en-US"]
    if len(tags) > 1:
        # One reactor per process: run each layout in a child.
        for tag in tags:
            subprocess.run(
                [sys.executable, __file__, "--pastes", str(args.pastes), "--layout", tag],
                check=True,
            )
        return
    chars, reports, elapsed = run(tags[0], args.pastes)
    print(
        f"paste {tags[0]}: {chars} characters ({reports} reports) into a FIFO"
        f" in {elapsed:.3f} s: {chars / elapsed:,.0f} characters/s,"
        f" {reports / elapsed:,.0f} reports/s (target >= 5,000 characters/s)"
    )


if __name__ == "__main__":
    main()
