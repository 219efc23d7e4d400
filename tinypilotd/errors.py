"""
Exceptions that cross the boundary between the device parts and the REST tree.

The REST tree turns L{BadRequest} into a 400 and L{DeviceUnavailable} into the
seed's 500 text; everything else is a bug and is logged as one.
"""


class BadRequest(ValueError):
    """
    A client sent something we refuse.  C{str(exc)} is shown to the client as
    the text/plain body of a 400, so it must name the offending field or value.
    """


class Busy(Exception):
    """
    A device's queue holds as much work as it takes; C{str(exc)} is shown to
    the client as the text/plain body of a 503.
    """


class DeviceUnavailable(Exception):
    """
    A HID gadget device could not take a report (unplugged, unbound, not read
    by the target within the write timeout).

    @ivar path: the device path as configured, e.g. C{/dev/hidg0}.
    @ivar reason: a short operator-facing cause, e.g. C{"ESHUTDOWN"} or
        C{"timed out after 0.5s"}.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
