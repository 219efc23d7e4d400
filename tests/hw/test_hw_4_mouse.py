"""
(3) POST /api/v1/mouseEvent: corners and centre, each button and both wheels
reach the target with the right values and signs; (4) a target that is not
reading the mouse makes mouse events fail with the seed's 500 within the
write timeout, while every other endpoint keeps answering promptly.
"""

import threading
import time

import pytest

from conftest import WRITE_TIMEOUT
from hwinput import (
    ABS_X, ABS_Y, BTN_EXTRA, BTN_LEFT, BTN_MIDDLE, BTN_RIGHT, BTN_SIDE, EV_KEY, EV_REL,
    REL_HWHEEL, REL_HWHEEL_HI_RES, REL_WHEEL, REL_WHEEL_HI_RES, gadget_inputs, openers)

MOUSE_FAILED = "Failed to forward mouse event: could not access /dev/hidg1 (is cable connected?)"


@pytest.fixture
def mouse(target):
    """The target reads the mouse for the length of the test."""
    device = target.open_mouse()
    yield device
    target.close_mouse()


def position(mouse):
    """Where the target's input core has the pointer: (ABS_X, ABS_Y)."""
    return mouse.absinfo(ABS_X)[0], mouse.absinfo(ABS_Y)[0]


def send(client, **event):
    response = client.mouse(**event)
    assert response.status == 200, response
    return response


def test_corners_and_centre_land_on_the_right_absolute_coordinates(client, mouse):
    """relativeX/Y 0, 1 and 0.5 become ABS_X/ABS_Y 0, 32767 and 16384 on the
    target (the sample client's four corners, then the centre)."""
    for x, y in ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.5, 0.5)):
        want = (round(x * 32767), round(y * 32767))
        send(client, x=x, y=y)
        mouse.collect(lambda ev, want=want: position(mouse) == want, timeout=5)
        assert position(mouse) == want, (x, y)
    mouse.drain()


@pytest.mark.parametrize("buttons, button", [
    (1, BTN_LEFT), (2, BTN_RIGHT), (4, BTN_MIDDLE), (8, BTN_SIDE), (16, BTN_EXTRA)])
def test_each_button_presses_and_releases_the_right_button(client, mouse, buttons, button):
    """MouseEvent.buttons bit -> the matching BTN_* press, then its release."""
    mouse.drain()
    send(client, buttons=buttons)
    send(client, buttons=0)
    events = mouse.collect(lambda ev: (EV_KEY, button, 0) in [(e.type, e.code, e.value) for e in ev],
                           timeout=5)
    keys = [(e.code, e.value) for e in events if e.type == EV_KEY]
    assert keys == [(button, 1), (button, 0)]
    assert mouse.keys_down() == set()


@pytest.mark.parametrize("vertical, horizontal, axis, value", [
    (1, 0, REL_WHEEL, -1),     # browser: scroll down -> HID wheel -1
    (-1, 0, REL_WHEEL, 1),
    (0, 1, REL_HWHEEL, 1),     # scroll right -> AC Pan +1
    (0, -1, REL_HWHEEL, -1),
])
def test_wheels_arrive_with_the_right_sign(client, mouse, vertical, horizontal, axis, value):
    """verticalWheelDelta is negated (HID: positive = up), horizontal is not;
    hid-generic reports them as REL_WHEEL / REL_HWHEEL (+ hi-res)."""
    mouse.drain()
    send(client, vertical=vertical, horizontal=horizontal)
    hi_res = {REL_WHEEL: REL_WHEEL_HI_RES, REL_HWHEEL: REL_HWHEEL_HI_RES}[axis]
    events = mouse.collect(lambda ev: any(e.type == EV_REL for e in ev), timeout=5)
    events += mouse.wait_quiet(0.2, 2)
    rel = sorted((e.code, e.value) for e in events if e.type == EV_REL)
    assert rel == sorted([(axis, value), (hi_res, 120 * value)])


def test_a_target_not_reading_the_mouse_gives_the_seeds_500_within_the_write_timeout(
        daemon, client, target, figures):
    """Nobody on the target opens the mouse's event device, so usbhid does not
    poll it and the gadget's queue fills: a mouse event then fails with the
    seed's 500 text no later than the write timeout (plus emulation slack),
    while keystroke, auth and screenshot requests answer promptly meanwhile;
    once the target reads the mouse again, mouse events work again."""
    target.close_mouse()
    assert openers(gadget_inputs()["mouse"]) == []
    slack = 1.5

    # Fill the gadget's queue: the first reports are accepted, then one fails.
    failure = None
    for i in range(6):
        response = client.mouse(x=i / 10, y=0.25)
        assert response.elapsed < WRITE_TIMEOUT + slack, response
        if response.status != 200:
            failure = response
            break
    assert failure is not None, "every mouse event succeeded although the target never read one"
    assert failure.status == 500
    assert failure.text == MOUSE_FAILED
    assert failure.headers["content-type"].startswith("text/plain")
    figures["mouse 500 with the target not reading (s)"] = round(failure.elapsed, 2)

    # Again, and meanwhile the rest of the API answers at once.
    pending = {}

    def blocked_mouse_event():
        other = daemon.client()
        try:
            pending["response"] = other.mouse(buttons=1, x=0.9, y=0.9)
        finally:
            other.close()

    thread = threading.Thread(target=blocked_mouse_event)
    thread.start()
    time.sleep(0.3)
    target.keyboard.drain()
    others = {
        "keystroke": client.keystroke("KeyX"),
        "auth": client.post("/api/v1/auth"),
        "screenshot": client.get("/api/v1/screenshot"),
        "keystroke again": client.keystroke("KeyY"),
    }
    still_pending = thread.is_alive()
    thread.join(WRITE_TIMEOUT + 10)
    assert not thread.is_alive()
    for name, response in others.items():
        assert response.status in (200, 204), (name, response)
        assert response.elapsed < WRITE_TIMEOUT / 2, (name, response)
    assert still_pending, "the blocked mouse event had finished before the other requests"
    assert pending["response"].status == 500 and pending["response"].text == MOUSE_FAILED
    assert pending["response"].elapsed < WRITE_TIMEOUT + slack
    figures["other requests while the mouse was blocked, slowest (s)"] = round(
        max(r.elapsed for r in others.values()), 3)
    target.keyboard.wait_quiet(0.2, 3)
    assert target.keyboard.keys_down() == set()

    # The target starts reading: the stale queue drains, mouse events work.
    mouse = target.open_mouse()
    try:
        time.sleep(0.3)
        mouse.drain()
        deadline = time.monotonic() + 10
        while True:
            response = client.mouse(x=0.125, y=0.75)
            if response.status == 200 or time.monotonic() > deadline:
                break
        assert response.status == 200, response
        want = (round(0.125 * 32767), round(0.75 * 32767))
        mouse.collect(lambda ev: position(mouse) == want, timeout=5)
        assert position(mouse) == want
        assert mouse.keys_down() == set()
    finally:
        target.close_mouse()
