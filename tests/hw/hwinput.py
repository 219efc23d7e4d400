"""
What the target computer sees: the gadget's input devices on the guest's USB
host side, read through evdev (stdlib only; x86-64 struct layouts).

Nothing here uses tinypilotd: the suite judges the daemon by what the real
usbhid/hid-generic drivers make of its reports.
"""

import collections
import errno
import itertools
import fcntl
import glob
import os
import select
import struct
import threading
import time

EV_SYN, EV_KEY, EV_REL, EV_ABS, EV_MSC, EV_LED = 0x00, 0x01, 0x02, 0x03, 0x04, 0x11
SYN_REPORT, SYN_DROPPED = 0, 3
ABS_X, ABS_Y = 0x00, 0x01
REL_HWHEEL, REL_WHEEL, REL_WHEEL_HI_RES, REL_HWHEEL_HI_RES = 0x06, 0x08, 0x0B, 0x0C
LED_NUML, LED_CAPSL, LED_SCROLLL = 0, 1, 2
BTN_LEFT, BTN_RIGHT, BTN_MIDDLE, BTN_SIDE, BTN_EXTRA = 0x110, 0x111, 0x112, 0x113, 0x114
BTN_FORWARD, BTN_BACK, BTN_TASK = 0x115, 0x116, 0x117
KEY_CAPSLOCK, KEY_SPACE = 58, 57
KEY_MAX = 0x2FF

# Linux key codes of the eight modifier keys, in HID modifier-bit order.
MODIFIER_KEYS = {
    29: "LeftCtrl", 42: "LeftShift", 56: "LeftAlt", 125: "LeftMeta",
    97: "RightCtrl", 54: "RightShift", 100: "RightAlt", 126: "RightMeta",
}

_EVENT = struct.Struct("llHHi")   # struct input_event
_ABSINFO = struct.Struct("6i")    # value, minimum, maximum, fuzz, flat, resolution

GADGET_VENDOR, GADGET_PRODUCT = "1d6b", "0104"


def _ioc(direction, number, size):
    return (direction << 30) | (size << 16) | (ord("E") << 8) | number


_WRITE, _READ = 1, 2
EVIOCGRAB = _ioc(_WRITE, 0x90, 4)
EVIOCSCLOCKID = _ioc(_WRITE, 0xA0, 4)
_KEY_BYTES = KEY_MAX // 8 + 1
EVIOCGKEY = _ioc(_READ, 0x18, _KEY_BYTES)


def _read_text(path):
    with open(path) as fh:
        return fh.read().strip()


def gadget_inputs():
    """{"keyboard": "/dev/input/eventN", "mouse": ...} for the gadget as the
    target enumerated it; told apart by their capabilities (LEDs, absolute
    axes), not by their order."""
    found = {}
    for sysfs in glob.glob("/sys/class/input/event*"):
        try:
            ids = (_read_text(sysfs + "/device/id/vendor"), _read_text(sysfs + "/device/id/product"))
            capabilities = int(_read_text(sysfs + "/device/capabilities/ev"), 16)
        except OSError:
            continue
        node = "/dev/input/" + os.path.basename(sysfs)
        if ids != (GADGET_VENDOR, GADGET_PRODUCT) or not os.path.exists(node):
            continue
        if capabilities & (1 << EV_LED):
            found["keyboard"] = node
        elif capabilities & (1 << EV_ABS):
            found["mouse"] = node
    return found


def wait_for_gadget_inputs(present=True, timeout=15.0):
    """Wait until the target has (or, present=False, no longer has) both
    input devices; return gadget_inputs() then."""
    deadline = time.monotonic() + timeout
    while True:
        found = gadget_inputs()
        if (len(found) == 2) == present and (present or not found):
            return found
        if time.monotonic() > deadline:
            state = "appear" if present else "go away"
            raise AssertionError(f"the gadget's input devices did not {state} in {timeout} s: {found}")
        time.sleep(0.02)


def openers(node):
    """PIDs of processes that have `node` open (the target's "is anyone
    reading this device")."""
    pids = []
    for fd in glob.glob("/proc/[0-9]*/fd/*"):
        try:
            if os.readlink(fd) == node:
                pids.append(int(fd.split("/")[2]))
        except OSError:
            continue
    return sorted(set(pids))


class Event:
    __slots__ = ("type", "code", "value", "time", "frame")

    def __init__(self, type, code, value, time, frame=0):
        self.type, self.code, self.value, self.time, self.frame = type, code, value, time, frame

    def __repr__(self):
        return f"Event({self.type:#x}, {self.code}, {self.value})"


class InputDevice:
    """One /dev/input/eventN, opened non-blocking and (by default) grabbed, so
    that the guest's own console never acts on what the daemon types (and so
    that its keyboard handler cannot set the LEDs behind the test's back).

    A thread drains the device into memory as fast as events come: evdev
    keeps only 64 events per reader (about six typed characters) and drops
    the rest (SYN_DROPPED) if a reader falls behind, and the daemon types as
    fast as the target reads.  A test that lost events fails saying so.

    Opening the device is what makes usbhid poll the gadget's endpoint; usbhid
    drops input for 50 ms after an open, so wait a little before relying on
    events (see settle()).
    """

    def __init__(self, node, grab=True):
        self.node = node
        self.fd = os.open(node, os.O_RDWR | os.O_NONBLOCK)
        self.opened_at = time.monotonic()
        fcntl.ioctl(self.fd, EVIOCSCLOCKID, struct.pack("i", time.CLOCK_MONOTONIC))
        if grab:
            fcntl.ioctl(self.fd, EVIOCGRAB, 1)
        self.dropped = 0
        self._arrived = collections.deque()   # filled by the pump thread
        self._changed = threading.Condition()
        self._gone = False                    # the device was unplugged
        self._stopping = False
        self._frame = []                      # events of the frame in progress
        self._frames_seen = 0
        self._pump = threading.Thread(target=self._pump_events, name=f"evdev {node}", daemon=True)
        self._pump.start()

    def _pump_events(self):
        while not self._stopping:
            if not select.select([self.fd], [], [], 0.1)[0]:
                continue
            try:
                data = os.read(self.fd, _EVENT.size * 512)
            except BlockingIOError:
                continue
            except OSError as e:
                if e.errno not in (errno.ENODEV, errno.EBADF):
                    raise
                with self._changed:
                    self._gone = True
                    self._changed.notify_all()
                return
            events = []
            for offset in range(0, len(data), _EVENT.size):
                sec, usec, etype, code, value = _EVENT.unpack_from(data, offset)
                events.append(Event(etype, code, value, sec + usec / 1e6))
            with self._changed:
                self._arrived.extend(events)
                self._changed.notify_all()

    def close(self):
        if self.fd is not None:
            self._stopping = True
            self._pump.join()
            os.close(self.fd)
            self.fd = None

    def settle(self):
        """Wait out usbhid's post-open quiet period, then forget what came."""
        left = self.opened_at + 0.15 - time.monotonic()
        if left > 0:
            time.sleep(left)
        self.drain()

    def keys_down(self):
        """Key codes the target's input core considers pressed right now."""
        bits = fcntl.ioctl(self.fd, EVIOCGKEY, bytes(_KEY_BYTES))
        return {i * 8 + b for i, byte in enumerate(bits) for b in range(8) if byte >> b & 1}

    def absinfo(self, axis):
        """(value, minimum, maximum) of an absolute axis."""
        raw = fcntl.ioctl(self.fd, _ioc(_READ, 0x40 + axis, _ABSINFO.size), bytes(_ABSINFO.size))
        return _ABSINFO.unpack(raw)[:3]

    def has(self, event_type, code):
        """Whether the device declares an event code (EVIOCGBIT)."""
        size = KEY_MAX // 8 + 1
        bits = fcntl.ioctl(self.fd, _ioc(_READ, 0x20 + event_type, size), bytes(size))
        return bool(bits[code // 8] >> (code % 8) & 1)

    def set_led(self, led, on):
        """Act as the target's OS setting a keyboard LED: the HID driver sends
        the gadget an output report (read from /dev/hidg0 on the device)."""
        os.write(self.fd, _EVENT.pack(0, 0, EV_LED, led, int(on)) + _EVENT.pack(0, 0, EV_SYN, SYN_REPORT, 0))

    def _take(self, deadline):
        """Wait until events arrive (at most until `deadline`), then return
        the events of every frame completed so far, EV_MSC and key
        autorepeats left out; None if nothing arrived in time."""
        with self._changed:
            while not self._arrived:
                left = deadline - time.monotonic()
                if left <= 0 or self._gone:
                    return None
                self._changed.wait(left)
            arrived = list(self._arrived)
            self._arrived.clear()
        done = []
        for event in arrived:
            if event.type == EV_SYN:
                if event.code == SYN_REPORT:
                    done += self._frame
                    self._frame = []
                    self._frames_seen += 1
                elif event.code == SYN_DROPPED:
                    self.dropped += 1
            elif event.type != EV_MSC and not (event.type == EV_KEY and event.value == 2):
                event.frame = self._frames_seen
                self._frame.append(event)
        if self.dropped:
            raise AssertionError(f"{self.node}: the test's reader fell behind and the kernel "
                                 f"dropped events (SYN_DROPPED x{self.dropped})")
        return done

    def drain(self):
        """Forget every event that has arrived so far."""
        time.sleep(0.01)
        while self._take(time.monotonic()) is not None:
            pass
        self._frame = []

    def collect(self, done, timeout=5.0):
        """Collect events until done(events) is true or the time is up; return
        the events either way (the caller's assertion says what was missing).
        done() is asked once per batch of arrivals, not once per event."""
        events = []
        deadline = time.monotonic() + timeout
        while not done(events):
            got = self._take(deadline)
            if got is None:
                break
            events += got
        return events

    def wait_quiet(self, quiet=0.3, timeout=10.0):
        """Collect events until none came for `quiet` seconds."""
        events = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self._take(min(deadline, time.monotonic() + quiet))
            if got is None:
                break
            events += got
        return events


def key_changes(events):
    """[(code, value)] of the key events, in order."""
    return [(e.code, e.value) for e in events if e.type == EV_KEY]


def presses(events):
    """What was typed, as [(key code, frozenset of held modifier names)], one
    entry per non-modifier key press, in order.

    Events come in frames (one per HID report); within a frame the modifier
    changes apply to the key pressed in the same frame.
    """
    held, typed = set(), []
    keys = [e for e in events if e.type == EV_KEY]
    for _, group in itertools.groupby(keys, key=lambda e: e.frame):
        frame = list(group)
        for e in frame:
            if e.code in MODIFIER_KEYS:
                (held.add if e.value else held.discard)(MODIFIER_KEYS[e.code])
        for e in frame:
            if e.code not in MODIFIER_KEYS and e.value == 1:
                typed.append((e.code, frozenset(held)))
    return typed
