"""
(5) Cable pulled (the gadget unbound from its UDC): keystrokes and mouse
events fail with the seed's 500 at once, not after the write timeout; plugged
back in, the next keystroke works without restarting the daemon, and the
target has no key left down.
"""

import os
import time

from conftest import WRITE_TIMEOUT, gadget
from hwinput import key_changes, wait_for_gadget_inputs

KEYSTROKE_FAILED = "Failed to forward keystroke: could not access /dev/hidg0 (is cable connected?)"
MOUSE_FAILED = "Failed to forward mouse event: could not access /dev/hidg1 (is cable connected?)"


def test_unplugged_fails_at_once_and_replugged_works_without_a_restart(daemon, client, target, figures):
    """Hold Shift (a modifier keystroke), pull the cable: 500s within half the
    write timeout; plug it back: the next keystroke is typed, and afterwards
    no key is down on the target."""
    pid = daemon.process.pid
    target.keyboard.drain()
    assert client.keystroke("ShiftLeft").status == 200
    target.keyboard.collect(lambda ev: (42, 1) in key_changes(ev), timeout=5)
    assert target.keyboard.keys_down() == {42}

    target.close()
    gadget("unbind")
    wait_for_gadget_inputs(present=False)
    assert not os.path.exists("/dev/hidg0")

    for _ in range(2):  # the fd the daemon had, then whatever it does next
        response = client.keystroke("KeyA")
        assert (response.status, response.text) == (500, KEYSTROKE_FAILED)
        assert response.elapsed < WRITE_TIMEOUT / 2, response
    response = client.mouse(x=0.5, y=0.5)
    assert (response.status, response.text) == (500, MOUSE_FAILED)
    assert response.elapsed < WRITE_TIMEOUT / 2, response
    figures["keystroke 500 with the cable pulled (s)"] = round(response.elapsed, 3)
    assert client.post("/api/v1/auth").status == 200

    replugged = time.monotonic()
    gadget("bind")
    target.connect()  # waits for the target to enumerate the gadget again
    figures["re-plug to enumerated (s)"] = round(time.monotonic() - replugged, 2)

    keyboard = target.keyboard
    response = client.keystroke("KeyB")
    assert response.status == 200, response
    events = keyboard.collect(lambda ev: (48, 0) in key_changes(ev), timeout=5)
    events += keyboard.wait_quiet(0.3, 3)
    assert (48, 1) in key_changes(events) and (48, 0) in key_changes(events)
    assert keyboard.keys_down() == set()

    mouse = target.open_mouse()
    try:
        assert client.mouse(x=0.25, y=0.25).status == 200
        assert client.mouse(x=0.75, y=0.25, buttons=0).status == 200
        mouse.collect(lambda ev: mouse.absinfo(0)[0] == round(0.75 * 32767), timeout=5)
        assert mouse.absinfo(0)[0] == round(0.75 * 32767)
        assert mouse.keys_down() == set()
    finally:
        target.close_mouse()
    assert daemon.running and daemon.process.pid == pid
