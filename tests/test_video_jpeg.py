"""
Tests for L{tinypilotd.video.jpeg}: cutting an MJPEG stream into images.

The images are real JPEG files made with Pillow when the module loads:
baseline, progressive (several scans), with restart markers, and one whose
EXIF APP1 segment carries a thumbnail with its own SOI and EOI.
"""

from __future__ import annotations

import io
import random
import struct
from functools import cache

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from tinypilotd.video.jpeg import MJPEGSplitter


def _noise(width: int, height: int, seed: int) -> Image.Image:
    # Noise makes the entropy-coded data full of stuffed FF 00 pairs.
    data = random.Random(seed).randbytes(width * height * 3)
    return Image.frombytes("RGB", (width, height), data)


def _jpeg(im: Image.Image, **kwargs: object) -> bytes:
    out = io.BytesIO()
    im.save(out, "JPEG", **kwargs)
    return out.getvalue()


def _exif_with_thumbnail(thumbnail: bytes) -> bytes:
    """
    An APP1 EXIF payload (little-endian TIFF) whose IFD1 points at a JPEG
    thumbnail, the way cameras and capture dongles embed one.
    """
    ifd1_offset = 8 + 2 + 4
    thumb_offset = ifd1_offset + 2 + 2 * 12 + 4
    tiff = (
        b"II*\x00"
        + struct.pack("<I", 8)
        + struct.pack("<HI", 0, ifd1_offset)  # IFD0: no entries, then IFD1
        + struct.pack("<H", 2)
        + struct.pack("<HHII", 0x0201, 4, 1, thumb_offset)
        + struct.pack("<HHII", 0x0202, 4, 1, len(thumbnail))
        + struct.pack("<I", 0)
        + thumbnail
    )
    return b"Exif\x00\x00" + tiff


def _segments(jpeg: bytes) -> list[tuple[int, int, int]]:
    """
    (marker, offset of its FF, end of the segment) for every header segment
    up to and including the first SOS.
    """
    out = []
    pos = 2
    while True:
        marker = jpeg[pos + 1]
        (length,) = struct.unpack(">H", jpeg[pos + 2 : pos + 4])
        out.append((marker, pos, pos + 2 + length))
        pos += 2 + length
        if marker == 0xDA:
            return out


def _sof_after_dht(jpeg: bytes) -> bytes:
    """
    The same image with its SOF0 segment moved after the DHT segments, so
    that a DHT (FF C4, inside the SOF range) comes first.
    """
    segs = _segments(jpeg)
    sof = [s for s in segs if s[0] == 0xC0]
    rest = [s for s in segs if s[0] not in (0xC0, 0xDA)]
    sos = [s for s in segs if s[0] == 0xDA]
    assert sof and sos and any(s[0] == 0xC4 for s in rest)
    header = b"".join(jpeg[a:b] for _, a, b in rest + sof + sos)
    return jpeg[:2] + header + jpeg[sos[0][2] :]


@cache
def thumbnail() -> bytes:
    return _jpeg(_noise(48, 36, 1), quality=70)


@cache
def samples() -> dict[str, tuple[bytes, int, int]]:
    exif = _exif_with_thumbnail(thumbnail())
    made = {
        "baseline": (_jpeg(_noise(64, 48, 2), quality=80), 64, 48),
        "wide": (_jpeg(_noise(300, 20, 3), quality=50), 300, 20),
        "progressive": (_jpeg(_noise(40, 30, 4), progressive=True), 40, 30),
        "restart": (_jpeg(_noise(32, 32, 5), restart_marker_blocks=1), 32, 32),
        "thumbnail": (_jpeg(_noise(64, 40, 6), quality=60, exif=exif), 64, 40),
        "solid": (_jpeg(Image.new("RGB", (16, 12), (0, 128, 255))), 16, 12),
    }
    made["dht-first"] = (_sof_after_dht(made["baseline"][0]), 64, 48)
    return made


def _pixels(jpeg: bytes) -> bytes:
    im = Image.open(io.BytesIO(jpeg))
    im.load()
    return im.tobytes()


def _collect(**kwargs: object) -> tuple[MJPEGSplitter, list[tuple[bytes, int, int]]]:
    out: list[tuple[bytes, int, int]] = []
    splitter = MJPEGSplitter(
        lambda data, w, h: out.append((data, w, h)),
        **kwargs,  # type: ignore[arg-type]
    )
    return splitter, out


def _feed(splitter: MJPEGSplitter, stream: bytes, cuts: list[int]) -> None:
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    for a, b in zip(bounds, bounds[1:], strict=False):
        splitter.feed(stream[a:b])


class _Warnings:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warn(self, format: str, **kwargs: object) -> None:
        self.lines.append(format.format(**kwargs))


names = st.sampled_from(sorted(samples()))
cuts = st.lists(st.integers(min_value=0, max_value=200_000), max_size=40)
garbage = st.binary(max_size=300).filter(lambda g: b"\xff\xd8" not in g)
relaxed = settings(max_examples=int(__import__("os").environ.get("JPEG_EXAMPLES", "150")), deadline=None,
                   suppress_health_check=[HealthCheck.too_slow])


def test_samples_are_what_the_tests_claim() -> None:
    """
    The fixtures exercise what they are meant to: Pillow decodes each to its
    stated size; the thumbnail sample holds a second SOI and an EOI before
    its end; the progressive one has several scans; the restart one has
    RST markers; the reordered one has a DHT before its SOF.
    """
    for name, (data, w, h) in samples().items():
        im = Image.open(io.BytesIO(data))
        im.load()
        assert im.size == (w, h), name
    thumb = samples()["thumbnail"][0]
    assert thumb.find(b"\xff\xd8", 2) > 0
    assert thumb.find(b"\xff\xd9") < len(thumb) - 2
    assert samples()["progressive"][0].count(b"\xff\xda") > 1
    assert b"\xff\xd0" in samples()["restart"][0]
    dht_first = samples()["dht-first"][0]
    assert dht_first.find(b"\xff\xc4") < dht_first.find(b"\xff\xc0")


def test_each_sample_whole_and_byte_by_byte() -> None:
    """
    Every sample comes out byte-identical with the size from its SOF
    segment, whether fed whole or one byte at a time: the thumbnail's EOI
    does not end the image, a DHT is not taken for a SOF, restart markers
    and progressive scans do not split it.
    """
    for name, (data, w, h) in samples().items():
        for chunk in (len(data), 1):
            splitter, out = _collect()
            for i in range(0, len(data), chunk):
                splitter.feed(data[i : i + chunk])
            assert out == [(data, w, h)], (name, chunk)
            assert (splitter.truncated, splitter.corrupt, splitter.garbage) == (0, 0, 0)


@relaxed
@given(st.lists(st.tuples(garbage, names), min_size=1, max_size=8), garbage, cuts)
def test_stream_in_any_chunking(
    frames: list[tuple[bytes, str]], tail: bytes, boundaries: list[int]
) -> None:
    """
    Images separated by arbitrary junk (anything without an SOI) and cut
    into arbitrary chunks come out exactly, in order, and the junk is
    counted as garbage.
    """
    stream = b"".join(g + samples()[n][0] for g, n in frames) + tail
    splitter, out = _collect()
    _feed(splitter, stream, boundaries)
    assert out == [samples()[n] for _, n in frames]
    assert splitter.garbage <= sum(len(g) for g, _ in frames) + len(tail)
    assert splitter.truncated == splitter.corrupt == 0


@relaxed
@given(names, st.floats(min_value=0.0, max_value=1.0, exclude_max=True), names, names, cuts)
def test_truncated_image_is_dropped(
    first: str, where: float, second: str, third: str, boundaries: list[int]
) -> None:
    """
    An image cut short anywhere and followed by more images is never
    delivered, not even in part: only the following images come out.  When
    the cut is outside the image's APP segments both of them come out; a cut
    inside an APP segment lets its length field swallow the next bytes,
    which may cost the next image or graft the cut header onto it; what
    comes out always decodes to one of the following images (or, when the
    swallowed image carried an EXIF thumbnail, to that thumbnail: a whole
    image, never a broken one).
    """
    a = samples()[first][0]
    k = 2 + int(where * (len(a) - 3))  # keep at least the SOI, lose the EOI
    b, c = samples()[second], samples()[third]
    stream = a[:k] + b[0] + c[0]
    splitter, out = _collect()
    _feed(splitter, stream, boundaries)
    in_app = any(
        start <= k < end
        for marker, start, end in _segments(a)
        if 0xE0 <= marker <= 0xEF or marker == 0xFE
    )
    if not in_app:
        assert out == [b, c]
        assert splitter.truncated + splitter.corrupt == 1
    # Whatever came out shows B or C, in that order, never A.
    wanted = [_pixels(b[0]), _pixels(c[0])]
    thumb = _pixels(thumbnail())
    for data, w, h in out:
        pixels = _pixels(data)
        assert Image.open(io.BytesIO(data)).size == (w, h)
        if in_app and pixels == thumb:
            continue
        assert pixels in wanted
        wanted = wanted[wanted.index(pixels) + 1 :]


def test_new_image_inside_entropy_data_drops_the_old_one() -> None:
    """
    An SOI in the middle of entropy-coded data (the child was restarted or
    the device lost bytes) drops the cut image as truncated and starts the
    new one there, with one warning.
    """
    a = samples()["baseline"][0]
    sos_end = _segments(a)[-1][2]
    k = (sos_end + len(a)) // 2
    log = _Warnings()
    splitter, out = _collect(log=log)
    splitter.feed(a[:k] + a)
    assert out == [samples()["baseline"]]
    assert splitter.truncated == 1
    assert len(log.lines) == 1 and "truncated" in log.lines[0]


def test_garbage_only() -> None:
    """
    A stream with no image start delivers nothing, keeps at most two bytes
    buffered, and counts what it skipped.
    """
    splitter, out = _collect()
    junk = bytes(range(256)).replace(b"\xff", b"") * 100
    for i in range(0, len(junk), 1000):
        splitter.feed(junk[i : i + 1000])
    assert out == []
    assert splitter.garbage >= len(junk) - 2
    assert len(splitter._buf) <= 2


def test_malformed_header_resyncs_at_next_image() -> None:
    """
    An image whose header walk meets a non-marker is dropped as corrupt and
    the next image is found, even though it started inside the bytes the
    broken image had claimed.
    """
    a, b = samples()["baseline"][0], samples()["wide"]
    dqt_at = _segments(a)[1][1]
    broken = a[:dqt_at] + b"\x00\x00\x00"
    log = _Warnings()
    splitter, out = _collect(log=log)
    splitter.feed(broken + b[0])
    assert out == [b]
    assert splitter.corrupt == 1
    assert "malformed" in log.lines[0]


def test_thumbnail_not_delivered_after_corruption() -> None:
    """
    When an image with an EXIF thumbnail turns out malformed after its APP1
    segment, the resync does not mistake the embedded thumbnail for a frame.
    """
    a = samples()["thumbnail"][0]
    app1_end = [s for s in _segments(a) if s[0] == 0xE1][0][2]
    broken = a[:app1_end] + b"\x12\x34"
    c = samples()["solid"]
    splitter, out = _collect()
    splitter.feed(broken + c[0])
    assert out == [c]


def test_image_without_sof_is_dropped() -> None:
    """
    A structurally complete image without a start-of-frame segment has no
    size and cannot be decoded: it is dropped as corrupt.
    """
    a = samples()["baseline"][0]
    sof = [s for s in _segments(a) if s[0] == 0xC0][0]
    no_sof = a[: sof[1]] + a[sof[2] :]
    splitter, out = _collect()
    splitter.feed(no_sof + a)
    assert out == [samples()["baseline"]]
    assert splitter.corrupt == 1


@relaxed
@given(cuts)
def test_oversize_image_dropped(boundaries: list[int]) -> None:
    """
    An image larger than max_frame_size is dropped with one log line, the
    images around it come out, and the buffer never holds much more than
    the cap plus one chunk, even when the cap falls inside a long APP1
    segment.
    """
    big = samples()["thumbnail"][0]
    small = samples()["solid"]
    cap = 1500
    app1_end = [s for s in _segments(big) if s[0] == 0xE1][0][2]
    assert len(small[0]) < cap < app1_end < len(big)
    log = _Warnings()
    splitter, out = _collect(max_frame_size=cap, log=log)
    stream = small[0] + big + small[0]
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in boundaries)})
    peak = 0
    for x, y in zip(bounds, bounds[1:], strict=False):
        splitter.feed(stream[x:y])
        peak = max(peak, len(splitter._buf) - (y - x))
    assert out == [small, small]
    assert splitter.oversize == 1
    assert peak <= cap + 4
    assert len(log.lines) == 1
    assert "dropping a video frame" in log.lines[0] and "1500" in log.lines[0]


def test_oversize_image_in_one_chunk() -> None:
    """
    An image larger than the cap that arrives in a single chunk is dropped
    with a log line naming its size and the limit.
    """
    big = samples()["baseline"][0]
    log = _Warnings()
    splitter, out = _collect(max_frame_size=len(big) - 1, log=log)
    splitter.feed(big)
    assert out == []
    assert splitter.oversize == 1
    assert log.lines == [f"dropping a video frame of {len(big)} bytes (limit {len(big) - 1})"]


@relaxed
@given(st.binary(min_size=1, max_size=2000), cuts)
def test_arbitrary_bytes_never_break_the_splitter(junk: bytes, boundaries: list[int]) -> None:
    """
    Whatever bytes come before a real image (including fake SOIs and
    absurd segment lengths), the splitter raises nothing, delivers only
    images whose SOF size is what Pillow decodes, and still finds images
    once the junk has been consumed.
    """
    a = samples()["baseline"]
    filler = b"\x00" * 70_000  # longer than any segment length the junk can claim
    stream = junk + filler + a[0]
    splitter, out = _collect()
    _feed(splitter, stream, boundaries)
    assume(out)
    assert out[-1] == a
    for data, w, h in out:
        im = Image.open(io.BytesIO(data))
        im.load()
        assert im.size == (w, h)
