"""
Tests for the capture presets in etc/video/: each is a config snippet the
daemon can use as it stands.
"""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path

PRESETS = Path(__file__).resolve().parent.parent / "etc" / "video"


def test_every_preset_is_a_video_command() -> None:
    """
    Each .toml preset parses, holds only a [video] command, and that command
    splits into an argv for ffmpeg or ustreamer-dump writing to stdout.
    """
    found = sorted(p.name for p in PRESETS.glob("*.toml"))
    assert found == ["raw-v4l2.toml", "testpattern.toml", "usb-mjpeg.toml", "ustreamer.toml"]
    for path in PRESETS.glob("*.toml"):
        config = tomllib.loads(path.read_text())
        assert list(config) == ["video"] and list(config["video"]) == ["command"], path
        argv = shlex.split(config["video"]["command"])
        assert argv[0] in ("ffmpeg", "ustreamer-dump"), path
        assert argv[-1] == "-", path
        if argv[0] == "ffmpeg":
            assert argv[argv.index("-f", argv.index("-i")) + 1] == "mjpeg", path
            assert "-nostats" in argv, path  # no \r progress lines in the log


def test_readme_names_every_preset() -> None:
    """
    The presets' README documents each preset file.
    """
    readme = (PRESETS / "README.rst").read_text()
    for path in PRESETS.glob("*.toml"):
        assert f"``{path.name}``" in readme
