"""
The REST tree: C{/api/v1/*} as the TinyPilot REST API specifies it, plus the
device's public CA certificate at C{/ca.crt}.

Every C{/api/v1} route passes the same gate, in this order: password mode
(403), licence (403), token (401, except C{/auth}); then its body is read as
JSON (413, 400) and handed, already validated, to the device part behind it.
Errors are C{text/plain; charset=utf-8} bodies, as in the specification.
"""

import datetime
import json
from typing import Any, Callable, NoReturn, Protocol, TypeVar

from klein import Klein
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from werkzeug.exceptions import MethodNotAllowed, NotFound

from tinypilotd.api.site import MAX_BODY
from tinypilotd.api.tokens import TokenStore, TooManyTokens
from tinypilotd.errors import BadRequest, Busy, DeviceUnavailable
from tinypilotd.hid.reports import Keystroke, MouseEvent, parse_keystroke, parse_mouse_event
from tinypilotd.paste.layouts import PasteRequest, parse_paste
from tinypilotd.security.license import LicenseState
from tinypilotd.video.cache import Frame

T = TypeVar("T")

PASSWORD_MODE = (
    "The REST API is unavailable while TinyPilot requires a username and "
    "password; turn off password authentication ([auth] password_required) "
    "to use it."
)
UNLICENSED = (
    "The REST API requires an active TinyPilot Automation Licence; activate "
    "one on the device with tinypilot-activate-license."
)


class KeyboardLike(Protocol):
    def keystroke(self, ks: Keystroke) -> "Deferred[None]": ...

    def paste(self, request: PasteRequest) -> None: ...


class MouseLike(Protocol):
    def send(self, ev: MouseEvent) -> "Deferred[None]": ...


class FramesLike(Protocol):
    def screenshot(self, fresh: bool = False) -> "Deferred[Frame | None]": ...


class HTTPError(Exception):
    """
    Answer the request with C{code} and a text/plain C{message}.
    """

    def __init__(self, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}


def _text(request: IRequest, code: int, message: str) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    # A message may quote a client's string with lone surrogates in it.
    return message.encode("utf-8", "backslashreplace")


def _rejectConstant(name: str) -> NoReturn:
    raise BadRequest(f"request body is not valid JSON: {name} is not a JSON value")


def _readJSON(request: IRequest) -> dict[str, Any]:
    """
    The request body as a JSON object.

    @raise HTTPError: 413 for a body over L{MAX_BODY}, 400 for a wrong
        Content-Type, a body that is not JSON, or JSON that is not an object.
    """
    length = request.getHeader(b"content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        raise HTTPError(413, f"Request body too large: at most {MAX_BODY} bytes")
    contentType = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if contentType != b"application/json":
        raise HTTPError(400, "Content-Type must be application/json")
    body = request.content.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise HTTPError(413, f"Request body too large: at most {MAX_BODY} bytes")
    try:
        # JSON is UTF-8 (RFC 8259); json.loads would also guess UTF-16/32.
        obj = json.loads(body.decode("utf-8"), parse_constant=_rejectConstant)
    except BadRequest as e:
        raise HTTPError(400, str(e)) from None
    except UnicodeDecodeError:
        raise HTTPError(400, "request body is not valid JSON: it is not UTF-8") from None
    except ValueError as e:
        raise HTTPError(400, f"request body is not valid JSON: {e}") from None
    except RecursionError:
        raise HTTPError(400, "request body is not valid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise HTTPError(400, "request body must be a JSON object")
    return obj


def _captureTime(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TinyPilotAPI:
    """
    The Klein application; its collaborators are passed in, so tests can give
    it fakes and the daemon gives it the real device parts.
    """

    app = Klein()
    log = Logger()

    def __init__(
        self,
        *,
        tokens: TokenStore,
        licence: LicenseState,
        passwordRequired: bool,
        keyboard: KeyboardLike,
        mouse: MouseLike,
        frames: FramesLike | None,
        caPEM: bytes,
    ) -> None:
        self._tokens = tokens
        self._licence = licence
        self._passwordRequired = passwordRequired
        self._keyboard = keyboard
        self._mouse = mouse
        self._frames = frames
        self._caPEM = caPEM

    def resource(self) -> Resource:
        """
        The root resource: Klein's tree, with the screenshot served by a leaf
        of its own in front of it (see L{_ScreenshotResource}).
        """
        return _Root(self.app.resource(), _ScreenshotResource(self))

    # The gate every /api/v1 route passes.

    def _gate(self, request: IRequest, needsToken: bool = True) -> None:
        if self._passwordRequired:
            raise HTTPError(403, PASSWORD_MODE)
        if not self._licence.allows():
            raise HTTPError(403, UNLICENSED)
        if not needsToken:
            return
        header = request.getHeader(b"authorization")
        if header is None:
            raise HTTPError(
                401,
                "Missing API token: send Authorization: Bearer <token>, from POST /api/v1/auth",
                {"WWW-Authenticate": 'Bearer realm="tinypilot"'},
            )
        scheme, _, token = header.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not self._tokens.valid(token.strip()):
            raise HTTPError(
                401,
                "Invalid API token: tokens are valid until the daemon restarts; get a new one from POST /api/v1/auth",
                {"WWW-Authenticate": 'Bearer realm="tinypilot", error="invalid_token"'},
            )

    # Errors.

    @app.handle_errors(HTTPError)
    def _httpError(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        for name, value in error.headers.items():
            request.setHeader(name, value)
        return _text(request, error.code, error.message)

    @app.handle_errors(BadRequest)
    def _badRequest(self, request: IRequest, failure: Failure) -> bytes:
        return _text(request, 400, str(failure.value))

    @app.handle_errors(NotFound)
    def _notFound(self, request: IRequest, failure: Failure) -> bytes:
        return _text(request, 404, f"Not found: {request.path.decode('latin-1')}")

    @app.handle_errors(MethodNotAllowed)
    def _methodNotAllowed(self, request: IRequest, failure: Failure) -> bytes:
        allowed = failure.value.valid_methods or []
        request.setHeader(b"allow", ", ".join(allowed).encode("ascii"))
        return _text(request, 405, f"Method {request.method.decode('latin-1')} not allowed; use {' or '.join(allowed)}")

    @app.handle_errors(Exception)
    def _bug(self, request: IRequest, failure: Failure) -> bytes:
        if failure.check(CancelledError):
            return b""
        self.log.failure("bug while answering {method} {path}", failure, method=request.method, path=request.path)
        return _text(request, 500, "Internal error; the device's log has the details")

    # Routes.

    @app.route("/ca.crt", methods=["GET"])
    def caCertificate(self, request: IRequest) -> bytes:
        request.setHeader(b"content-type", b"application/x-pem-file")
        request.setHeader(b"content-disposition", b'attachment; filename="tinypilot-ca.crt"')
        return self._caPEM

    @app.route("/api/v1/auth", methods=["POST"])
    def auth(self, request: IRequest) -> bytes:
        self._gate(request, needsToken=False)
        if request.getHeader(b"origin") is not None:
            raise HTTPError(
                403,
                "API tokens are not issued to requests that carry an Origin header "
                "(a browser page could be forging them); call the API from a script",
            )
        try:
            token = self._tokens.issue()
        except TooManyTokens:
            self.log.warn(
                "refused an API token to {client}: {count} tokens are live, the most "
                "this daemon keeps; restart it to revoke them all",
                client=request.getClientAddress(),
                count=len(self._tokens),
            )
            raise HTTPError(
                503,
                f"Too many API tokens issued ({self._tokens.maxTokens}); restart the "
                "TinyPilot daemon to revoke them, then request a new one",
            ) from None
        self.log.info(
            "issued API token #{count} to {client}",
            count=len(self._tokens),
            client=getattr(request.getClientAddress(), "host", "?"),
        )
        body = json.dumps({"token": token}).encode("ascii")
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"content-length", b"%d" % len(body))
        return body

    @staticmethod
    async def _forward(what: str, send: Callable[[T], "Deferred[None]"], value: T) -> bytes:
        """
        Hand a parsed request to its device and answer 200 once it is on the
        wire, or the specification's 500 naming the device.
        """
        try:
            await send(value)
        except DeviceUnavailable as e:
            raise HTTPError(500, f"Failed to forward {what}: could not access {e.path} (is cable connected?)") from None
        return b""

    @app.route("/api/v1/keystroke", methods=["POST"])
    async def keystroke(self, request: IRequest) -> bytes:
        self._gate(request)
        return await self._forward("keystroke", self._keyboard.keystroke, parse_keystroke(_readJSON(request)))

    @app.route("/api/v1/mouseEvent", methods=["POST"])
    async def mouseEvent(self, request: IRequest) -> bytes:
        self._gate(request)
        return await self._forward("mouse event", self._mouse.send, parse_mouse_event(_readJSON(request)))

    @app.route("/api/v1/paste", methods=["POST"])
    def paste(self, request: IRequest) -> bytes:
        self._gate(request)
        pasted = parse_paste(_readJSON(request))
        try:
            self._keyboard.paste(pasted)
        except Busy as e:
            raise HTTPError(503, str(e), {"Retry-After": "10"}) from None
        return b""


class _ScreenshotResource(Resource):
    """
    C{GET /api/v1/screenshot}, the one route clients poll at a high rate for
    a large body, as a plain twisted.web leaf: the same gate as every other
    route, then the frame's bytes written as they are, without the routing
    and coroutine layers a Klein route adds per request (measured: about a
    third of the time of a screenshot served through Klein).
    """

    isLeaf = True

    def __init__(self, api: TinyPilotAPI) -> None:
        super().__init__()
        self._api = api

    def render_GET(self, request: IRequest) -> bytes | int:
        try:
            self._api._gate(request)
        except HTTPError as e:
            return self._api._httpError(request, Failure(e))
        fresh = request.args.get(b"fresh", [b"0"])[0].lower() in (b"1", b"true", b"yes")
        frames = self._api._frames
        if frames is None:
            return self._send(request, None)
        d = frames.screenshot(fresh=fresh)
        result: list[Frame | None] = []
        d.addCallback(result.append)
        if result:
            return self._send(request, result[0])
        # Waiting for a fresh frame (at most a second): answer when it comes,
        # forget the wait if the client goes away first.
        finished = request.notifyFinish()  # type: ignore[attr-defined]
        finished.addErrback(lambda _: d.cancel())
        d.addCallback(lambda _: self._finish(request, result[0]))
        d.addErrback(lambda f: f.trap(CancelledError))
        return NOT_DONE_YET

    def _finish(self, request: IRequest, frame: Frame | None) -> None:
        body = self._send(request, frame)
        if body:
            request.write(body)
        request.finish()

    @staticmethod
    def _send(request: IRequest, frame: Frame | None) -> bytes:
        if frame is None:
            request.setResponseCode(204)
            return b""
        request.setHeader(b"content-type", b"image/jpeg")
        request.setHeader(b"content-length", b"%d" % len(frame.data))
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-capture-time", _captureTime(frame.captured_at).encode("ascii"))
        request.setHeader(b"x-frame-sequence", b"%d" % frame.sequence)
        return frame.data

    def render(self, request: IRequest) -> bytes | int:
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET")
            return _text(request, 405, f"Method {request.method.decode('latin-1')} not allowed; use GET")
        return self.render_GET(request)


class _Root(Resource):
    """
    Dispatch C{/api/v1/screenshot} to its leaf and everything else to Klein,
    leaving the request's path untouched for Klein.
    """

    isLeaf = True

    def __init__(self, klein: Resource, screenshot: Resource) -> None:
        super().__init__()
        self._klein = klein
        self._screenshot = screenshot

    def render(self, request: IRequest) -> bytes | int:
        if request.path == b"/api/v1/screenshot":
            return self._screenshot.render(request)
        return self._klein.render(request)
