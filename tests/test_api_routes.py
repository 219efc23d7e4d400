"""
The REST tree in memory, through StubTreq: every status the API promises,
with fakes standing in for the keyboard, mouse and frame cache.
"""

import json
import uuid

import attrs
import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed

from tinypilotd.api.app import MAX_BODY, TinyPilotAPI
from tinypilotd.api.tokens import TokenStore
from tinypilotd.errors import Busy, DeviceUnavailable
from tinypilotd.security.license import LicenseState
from tinypilotd.video.cache import Frame

CA = b"-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n"


class FakeKeyboard:
    def __init__(self):
        self.keystrokes = []
        self.pastes = []
        self.fail = None
        self.pending = None
        self.busy = False

    def keystroke(self, ks):
        if self.fail:
            raise DeviceUnavailable(self.fail, "ENOENT")
        self.keystrokes.append(ks)
        if self.pending is not None:
            return self.pending
        return succeed(None)

    def paste(self, request):
        if self.busy:
            raise Busy("The keyboard is busy: 100000 characters are still waiting to be typed")
        self.pastes.append(request)


class FakeMouse:
    def __init__(self):
        self.events = []
        self.fail = None

    def send(self, ev):
        if self.fail:
            d = Deferred()
            d.errback(DeviceUnavailable(self.fail, "ESHUTDOWN"))
            return d
        self.events.append(ev)
        return succeed(None)


class FakeFrames:
    def __init__(self, frame=None):
        self.frame = frame
        self.freshAsked = []
        self.pending = None

    def screenshot(self, fresh=False):
        self.freshAsked.append(fresh)
        if self.pending is not None:
            return self.pending
        return succeed(self.frame)


@attrs.define
class Device:
    api: TinyPilotAPI
    keyboard: FakeKeyboard
    mouse: FakeMouse
    frames: FakeFrames
    tokens: TokenStore
    treq: StubTreq


def makeDevice(tmp_path, *, required=False, password=False, maxTokens=10_000, frame=None):
    keyboard, mouse, frames = FakeKeyboard(), FakeMouse(), FakeFrames(frame)
    tokens = TokenStore(maxTokens)
    licence = LicenseState(str(tmp_path), [], "device-1", required=required)
    api = TinyPilotAPI(
        tokens=tokens,
        licence=licence,
        passwordRequired=password,
        keyboard=keyboard,
        mouse=mouse,
        frames=frames,
        caPEM=CA,
    )
    return Device(api, keyboard, mouse, frames, tokens, StubTreq(api.resource()))


@pytest.fixture
def device(tmp_path):
    return makeDevice(tmp_path)


async def token(device):
    response = await device.treq.post("https://tinypilot/api/v1/auth")
    return json.loads(await response.content())["token"]


async def post(device, path, body, tok=None, contentType="application/json"):
    headers = {}
    if tok is not None:
        headers["Authorization"] = f"Bearer {tok}"
    if contentType is not None:
        headers["Content-Type"] = contentType
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await device.treq.post(f"https://tinypilot/api/v1/{path}", data=data, headers=headers)
    return response.code, response.headers, await response.content()


@pytest_twisted.ensureDeferred
async def test_auth_issues_uuid4_token_as_json(device):
    """POST /api/v1/auth with no body answers 200 application/json {"token": uuid4}."""
    response = await device.treq.post("https://tinypilot/api/v1/auth")
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type") == ["application/json"]
    body = json.loads(await response.content())
    assert list(body) == ["token"]
    assert uuid.UUID(body["token"]).version == 4


@pytest_twisted.ensureDeferred
async def test_new_token_does_not_invalidate_older(device):
    """Both an old and a new token work; they differ."""
    first, second = await token(device), await token(device)
    assert first != second
    for tok in (first, second):
        code, _, _ = await post(device, "keystroke", {"code": "KeyA"}, tok)
        assert code == 200
    assert len(device.keyboard.keystrokes) == 2


@pytest_twisted.ensureDeferred
async def test_auth_with_origin_is_forbidden(device):
    """A token request carrying an Origin header is refused with 403 text/plain (CSRF)."""
    response = await device.treq.post("https://tinypilot/api/v1/auth", headers={"Origin": "https://evil.example"})
    assert response.code == 403
    assert response.headers.getRawHeaders("content-type") == ["text/plain; charset=utf-8"]
    assert b"Origin" in await response.content()
    assert len(device.tokens) == 0


@pytest_twisted.ensureDeferred
async def test_token_bound(tmp_path):
    """Past max_tokens the auth endpoint answers 503 with a reason, and old tokens keep working."""
    device = makeDevice(tmp_path, maxTokens=3)
    tokens = [await token(device) for _ in range(3)]
    response = await device.treq.post("https://tinypilot/api/v1/auth")
    assert response.code == 503
    assert b"Too many API tokens" in await response.content()
    code, _, _ = await post(device, "keystroke", {"code": "KeyA"}, tokens[0])
    assert code == 200


@pytest.mark.parametrize("path,method", [("screenshot", "GET"), ("keystroke", "POST"), ("mouseEvent", "POST"), ("paste", "POST")])
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer 4e77f593-a8e0-4262-8a32-911110087060", "Basic dXNlcjpwYXNz", "Bearer", ""],
)
@pytest_twisted.ensureDeferred
async def test_routes_need_a_known_bearer_token(device, path, method, authorization):
    """Missing or unknown tokens get 401 with WWW-Authenticate: Bearer and a text reason; nothing reaches a device."""
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = await device.treq.request(
        method, f"https://tinypilot/api/v1/{path}", data=b'{"code": "KeyA"}', headers=headers
    )
    assert response.code == 401
    assert response.headers.getRawHeaders("www-authenticate")[0].startswith("Bearer")
    assert response.headers.getRawHeaders("content-type") == ["text/plain; charset=utf-8"]
    assert b"token" in await response.content()
    assert device.keyboard.keystrokes == [] and device.keyboard.pastes == []


@pytest.mark.parametrize("path,method", [("auth", "POST"), ("screenshot", "GET"), ("keystroke", "POST"), ("mouseEvent", "POST"), ("paste", "POST")])
@pytest_twisted.ensureDeferred
async def test_password_mode_closes_the_api(tmp_path, path, method):
    """With [auth] password_required every /api/v1 route answers 403 explaining why."""
    device = makeDevice(tmp_path, password=True)
    response = await device.treq.request(method, f"https://tinypilot/api/v1/{path}")
    assert response.code == 403
    assert b"password" in await response.content()


@pytest.mark.parametrize("path,method", [("auth", "POST"), ("screenshot", "GET"), ("keystroke", "POST"), ("mouseEvent", "POST"), ("paste", "POST")])
@pytest_twisted.ensureDeferred
async def test_unlicensed_device_closes_the_api(tmp_path, path, method):
    """With a licence required and none activated, every /api/v1 route (auth too) answers 403 naming the licence."""
    device = makeDevice(tmp_path, required=True)
    response = await device.treq.request(method, f"https://tinypilot/api/v1/{path}")
    assert response.code == 403
    assert b"Automation Licence" in await response.content()


@pytest_twisted.ensureDeferred
async def test_ca_certificate_is_public(tmp_path):
    """GET /ca.crt serves the CA PEM without a token, even when the API is closed."""
    device = makeDevice(tmp_path, required=True)
    response = await device.treq.get("https://tinypilot/ca.crt")
    assert response.code == 200
    assert await response.content() == CA


@pytest_twisted.ensureDeferred
async def test_unknown_path_and_wrong_method(device):
    """An unknown path is a text/plain 404; a wrong method is a 405 with Allow."""
    response = await device.treq.get("https://tinypilot/api/v1/nothing")
    assert response.code == 404
    assert response.headers.getRawHeaders("content-type") == ["text/plain; charset=utf-8"]
    response = await device.treq.get("https://tinypilot/api/v1/keystroke")
    assert response.code == 405
    assert "POST" in response.headers.getRawHeaders("allow")[0]


@pytest.mark.parametrize("path", ["keystroke", "mouseEvent", "paste"])
@pytest.mark.parametrize(
    "body,contentType,expected",
    [
        (b"{not json", "application/json", b"not valid JSON"),
        (b"[1, 2]", "application/json", b"JSON object"),
        (b'"text"', "application/json", b"JSON object"),
        (b'{"code": NaN}', "application/json", b"NaN"),
        (b'{"code": "KeyA"}', "text/plain", b"Content-Type"),
        (b'{"code": "KeyA"}', None, b"Content-Type"),
        (b"\xff\xfe", "application/json", b"not valid JSON"),
        ('{"code": "KeyA"}'.encode("utf-16"), "application/json", b"not UTF-8"),
        (b"[" * 30000 + b"]" * 30000, "application/json", b"nested too deeply"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_bodies_are_400(device, path, body, contentType, expected):
    """Bodies that are not a JSON object, or have the wrong Content-Type, get 400 with a reason."""
    tok = await token(device)
    code, headers, content = await post(device, path, body, tok, contentType)
    assert code == 400
    assert headers.getRawHeaders("content-type") == ["text/plain; charset=utf-8"]
    assert expected in content


@pytest.mark.parametrize("path", ["keystroke", "mouseEvent", "paste"])
@pytest_twisted.ensureDeferred
async def test_oversized_body_is_413(device, path):
    """A body over 64 KiB is refused with 413 before it is parsed."""
    tok = await token(device)
    body = json.dumps({"text": "a" * MAX_BODY, "language": "en-US"}).encode()
    code, _, content = await post(device, path, body, tok)
    assert code == 413
    assert device.keyboard.pastes == []


@pytest_twisted.ensureDeferred
async def test_keystroke_reaches_keyboard(device):
    """A valid keystroke is parsed and handed to the keyboard; 200 with an empty body."""
    tok = await token(device)
    code, _, content = await post(device, "keystroke", {"code": "Delete", "ctrlLeft": True, "altRight": True}, tok)
    assert (code, content) == (200, b"")
    [ks] = device.keyboard.keystrokes
    assert ks.usage == 0x4C and ks.modifiers == 0x01 | 0x40


@pytest_twisted.ensureDeferred
async def test_keystroke_validation_is_400(device):
    """An unknown code or a non-boolean modifier is a 400 naming it."""
    tok = await token(device)
    code, _, content = await post(device, "keystroke", {"code": "KeyNope"}, tok)
    assert code == 400 and b"KeyNope" in content
    code, _, content = await post(device, "keystroke", {"code": "KeyA", "shiftLeft": "yes"}, tok)
    assert code == 400 and b"shiftLeft" in content
    assert device.keyboard.keystrokes == []


@pytest_twisted.ensureDeferred
async def test_keystroke_failure_is_seed_500(device):
    """A keyboard that cannot be reached answers the seed's exact 500 text with the configured path."""
    tok = await token(device)
    device.keyboard.fail = "/dev/hidg0"
    code, headers, content = await post(device, "keystroke", {"code": "KeyA"}, tok)
    assert code == 500
    assert headers.getRawHeaders("content-type") == ["text/plain; charset=utf-8"]
    assert content == b"Failed to forward keystroke: could not access /dev/hidg0 (is cable connected?)"


@pytest_twisted.ensureDeferred
async def test_mouse_event_reaches_mouse_and_fails_as_seed(device):
    """A mouse event is scaled and handed on; a failure is the seed's 500 text."""
    tok = await token(device)
    event = {"buttons": 1, "relativeX": 0.5, "relativeY": 1.0, "verticalWheelDelta": 1, "horizontalWheelDelta": -1}
    code, _, _ = await post(device, "mouseEvent", event, tok)
    assert code == 200
    [ev] = device.mouse.events
    assert (ev.buttons, ev.x, ev.y, ev.wheel, ev.pan) == (1, 16384, 32767, -1, -1)
    device.mouse.fail = "/run/mouse.fifo"
    code, _, content = await post(device, "mouseEvent", event, tok)
    assert code == 500
    assert content == b"Failed to forward mouse event: could not access /run/mouse.fifo (is cable connected?)"


@pytest_twisted.ensureDeferred
async def test_mouse_validation_is_400(device):
    """A missing or out-of-range mouse field is a 400 naming the field."""
    tok = await token(device)
    code, _, content = await post(device, "mouseEvent", {"buttons": 0, "relativeX": 2, "relativeY": 0, "verticalWheelDelta": 0, "horizontalWheelDelta": 0}, tok)
    assert code == 400 and b"relativeX" in content
    code, _, content = await post(device, "mouseEvent", {"buttons": 0, "relativeX": 0, "relativeY": 0, "verticalWheelDelta": 0}, tok)
    assert code == 400 and b"horizontalWheelDelta" in content


@pytest_twisted.ensureDeferred
async def test_paste_queues_and_refuses_untypeable(device):
    """A paste is validated and queued (200); untypeable characters are the seed's 400 and nothing is queued."""
    tok = await token(device)
    code, _, _ = await post(device, "paste", {"text": "Hello, World!", "language": "en-US"}, tok)
    assert code == 200
    assert [p.text for p in device.keyboard.pastes] == ["Hello, World!"]
    code, _, content = await post(device, "paste", {"text": "こんにちは", "language": "en-US"}, tok)
    assert code == 400
    assert content.decode() == "These characters are not supported: 'こ', 'ん', 'に', 'ち', 'は'"
    code, _, content = await post(device, "paste", {"text": "x", "language": "tlh-QO"}, tok)
    assert code == 400 and b"en-US" in content
    assert len(device.keyboard.pastes) == 1


@pytest_twisted.ensureDeferred
async def test_screenshot_204_without_frame(device):
    """No frame: 204 with an empty body."""
    tok = await token(device)
    response = await device.treq.get("https://tinypilot/api/v1/screenshot", headers={"Authorization": f"Bearer {tok}"})
    assert response.code == 204
    assert await response.content() == b""


@pytest_twisted.ensureDeferred
async def test_screenshot_serves_frame_with_headers(tmp_path):
    """A frame is served as image/jpeg with Content-Length, no-store and its capture time; ?fresh=1 is passed on."""
    frame = Frame(data=b"\xff\xd8jpeg\xff\xd9", captured_at=1764880000.25, sequence=7, width=2, height=1)
    device = makeDevice(tmp_path, frame=frame)
    tok = await token(device)
    response = await device.treq.get("https://tinypilot/api/v1/screenshot?fresh=1", headers={"Authorization": f"Bearer {tok}"})
    assert response.code == 200
    assert await response.content() == frame.data
    h = response.headers
    assert h.getRawHeaders("content-type") == ["image/jpeg"]
    # StubTreq folds Content-Length into the response length.
    assert response.length == len(frame.data)
    assert h.getRawHeaders("cache-control") == ["no-store"]
    assert h.getRawHeaders("x-capture-time") == ["2025-12-04T20:26:40.250Z"]
    assert h.getRawHeaders("x-frame-sequence") == ["7"]
    assert device.frames.freshAsked == [True]


@pytest_twisted.ensureDeferred
async def test_screenshot_fresh_waits_for_the_frame(tmp_path):
    """?fresh=1 answers when the frame cache's Deferred fires, not before."""
    frame = Frame(data=b"\xff\xd8new\xff\xd9", captured_at=0.0, sequence=9, width=1, height=1)
    device = makeDevice(tmp_path)
    device.frames.pending = Deferred()
    tok = await token(device)
    answer = device.treq.get("https://tinypilot/api/v1/screenshot?fresh=1", headers={"Authorization": f"Bearer {tok}"})
    got = []
    answer.addCallback(got.append)
    device.treq.flush()
    assert got == []
    device.frames.pending.callback(frame)
    device.treq.flush()
    [response] = got
    assert response.code == 200
    assert await response.content() == frame.data


@pytest_twisted.ensureDeferred
async def test_screenshot_wrong_method_is_405(device):
    """POST on the screenshot is a text/plain 405 with Allow: GET."""
    tok = await token(device)
    code, headers, _ = await post(device, "screenshot", {}, tok)
    assert code == 405
    assert headers.getRawHeaders("allow") == ["GET"]
    assert headers.getRawHeaders("content-type") == ["text/plain; charset=utf-8"]


@pytest.mark.parametrize(
    "path,body,field",
    [
        ("mouseEvent", b'{"buttons": 0, "relativeX": 1' + b"1" * 400 + b', "relativeY": 0, "verticalWheelDelta": 0, "horizontalWheelDelta": 0}', b"relativeX"),
        ("mouseEvent", b'{"buttons": 1' + b"1" * 400 + b', "relativeX": 0, "relativeY": 0, "verticalWheelDelta": 0, "horizontalWheelDelta": 0}', b"buttons"),
        ("keystroke", b'{"code": "\\ud800"}', b"ud800"),
        ("keystroke", b'{"code": "KeyA", "shiftLeft": "\\udfff"}', b"shiftLeft"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_hostile_values_are_400_not_500(device, path, body, field):
    """Huge integers and lone surrogates in fields are a 400 naming the field, never an internal error."""
    tok = await token(device)
    code, _, content = await post(device, path, body, tok)
    assert code == 400, content
    assert field in content
    assert len(content) < 200


@pytest_twisted.ensureDeferred
async def test_paste_when_keyboard_busy_is_503(device):
    """A paste the keyboard's backlog cannot take is a 503 with Retry-After and the reason."""
    tok = await token(device)
    device.keyboard.busy = True
    code, headers, content = await post(device, "paste", {"text": "hi", "language": "en-US"}, tok)
    assert code == 503
    assert headers.getRawHeaders("retry-after") == ["10"]
    assert b"busy" in content
