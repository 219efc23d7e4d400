"""
(6) SIGTERM while a long paste is being typed: the daemon exits cleanly
(status 0, no traceback in its log) and the target is left with every key up.
Stops the session's daemon: keep this module after every test that uses it.
"""

from hwinput import key_changes, presses
from test_hw_3_paste import EN_US, canonical, expected_presses

LONG_TEXT = "the quick brown fox jumps over the lazy dog. " * 60


def test_sigterm_during_a_long_paste_exits_cleanly_with_every_key_up(daemon, client, target, figures):
    """Start typing a 2,700-character paste, SIGTERM the daemon once the
    target has seen a few keys: it exits with status 0 promptly, the paste
    was cut short after a correct beginning, every key press the target saw
    was released, and no key is down."""
    keyboard = target.keyboard
    mouse = target.open_mouse()  # a target that reads both devices
    try:
        keyboard.drain()
        assert client.paste(LONG_TEXT, "en-US").status == 200
        client.close()
        events = keyboard.collect(lambda ev: len(presses(ev)) >= 20, timeout=30)
        assert len(presses(events)) >= 20, "the paste did not start"
        status, took = daemon.stop(timeout=30)
        events += keyboard.wait_quiet(0.5, 10)
        figures["SIGTERM during a paste -> exit (s)"] = round(took, 2)

        assert status == 0, daemon.log_tail()
        assert took < 5.0, "the daemon should exit within 2 s (more allowed under emulation)"
        log = daemon.log_text()
        assert "Traceback" not in log and "Unhandled" not in log, daemon.log_tail()
        typed = presses(events)
        figures["keys typed before the paste was cut short"] = len(typed)
        assert len(typed) < len(LONG_TEXT), "the paste finished before SIGTERM: not a test of shutdown"
        # What did go out is the text's beginning, not garbage.
        assert [(k, canonical(m)) for k, m in typed] == expected_presses(EN_US, LONG_TEXT)[:len(typed)]
        assert keyboard.keys_down() == set()
        changes = key_changes(events)
        for key in {k for k, v in changes if v == 1}:
            last = [v for k, v in changes if k == key][-1]
            assert last == 0, f"key {key} was pressed and never released"
        assert mouse.keys_down() == set()
    finally:
        target.close_mouse()
