"""
The HTTP site the REST tree is served by: no access log, and request bodies
bounded while they arrive rather than after.
"""

import io
from typing import Any

from twisted.web.server import Request, Site

#: Largest request body accepted: a 10,000-character paste of characters a
#: layout can type fits even when every one is JSON-escaped (six bytes each).
MAX_BODY = 64 * 1024


class BoundedRequest(Request):
    """
    A request whose body may be at most L{MAX_BODY} bytes.

    twisted.web stores a whole body (in a temporary file past 100 KB) before
    any resource sees the request, so a bound checked by the route would
    come too late: anyone, even without a token, could make the device store
    gigabytes.  A declared length over the bound, or a chunked body that
    grows past it, is answered 413 at once and the connection closed.
    """

    _tooLarge = False
    _received = 0

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > MAX_BODY:
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._tooLarge:
            return
        self._received += len(data)
        if self._received > MAX_BODY:
            self._refuse()
            return
        super().handleContentChunk(data)

    def process(self) -> None:
        if self._tooLarge:
            return  # answered already; the connection is closing
        super().process()

    def _refuse(self) -> None:
        self._tooLarge = True
        self.content = io.BytesIO()  # type: ignore[assignment]
        body = f"Request body too large: at most {MAX_BODY} bytes".encode("ascii")
        self.channel.transport.write(  # type: ignore[union-attr]
            b"HTTP/1.1 413 Content Too Large\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (len(body), body)
        )
        self.channel.loseConnection()


class TinyPilotSite(Site):
    """
    The REST tree's site: bounded request bodies, and no access log, so an
    operator's log gets one line per event that matters, not one per
    keystroke.
    """

    noisy = False
    requestFactory = BoundedRequest

    def log(self, request: Any) -> None:
        pass
