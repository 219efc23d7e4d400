"""
Tests for L{tinypilotd.video.jpeg}: cutting an MJPEG stream into images.

The images are real JPEG files made with Pillow when the module loads:
baseline, progressive (several scans), with restart markers, and one whose
EXIF APP1 segment carries a thumbnail with its own SOI and EOI, and one with
a 3 KiB ICC profile (APP2) and a comment (COM).
"""

from __future__ import annotations

import io
import random
import struct
from functools import cache

import pytest
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
        "annotated": (
            _jpeg(_noise(24, 16, 7), icc_profile=bytes(range(256)) * 12, comment=b"cam 1"),
            24,
            16,
        ),
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
    markers = [m for m, _, _ in _segments(samples()["annotated"][0])]
    assert 0xE2 in markers and 0xFE in markers


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
    delivered, not even in part: only the following images come out,
    byte for byte.  When the cut is outside the image's APP and COM
    segments both of them come out; a cut inside one lets its length field
    swallow the next bytes, which may cost an image that ended inside the
    segment, but never delivers a thumbnail or the cut header grafted onto
    the next image.
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
    assert out in ([b, c], [c], [])


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


def _app_segments(jpeg: bytes) -> list[tuple[int, int]]:
    """(offset of its FF, end) of each APP and COM segment before the first scan."""
    return [(a, b) for m, a, b in _segments(jpeg) if 0xE0 <= m <= 0xEF or m == 0xFE]


def _with_thumbnail(jpeg: bytes) -> bytes:
    """The image with an EXIF APP1 segment holding a thumbnail after its SOI."""
    payload = _exif_with_thumbnail(thumbnail())
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def test_cut_inside_app_segment_ending_on_next_sof() -> None:
    """
    An image with an EXIF thumbnail, cut inside its APP1 segment just where
    the segment's length reaches the next image's start-of-frame, is
    dropped: the next image comes out whole and alone, not its tail after
    the cut header (which has no quantisation tables to decode with).
    """
    a = _with_thumbnail(samples()["wide"][0])
    b = samples()["baseline"]
    app1_end = _app_segments(a)[0][1]
    sof = [s for s in _segments(b[0]) if s[0] == 0xC0][0][1]
    k = app1_end - sof
    assert _app_segments(a)[0][0] < k
    for chunk in (len(a) + 2 * len(b[0]), 1):
        splitter, out = _collect()
        _feed(splitter, a[:k] + b[0] + b[0], list(range(0, 10_000, chunk)))
        assert out == [b, b], chunk


def test_cut_just_before_the_end_of_app0() -> None:
    """
    An image cut two bytes before the end of its JFIF APP0 segment is
    dropped and the next image comes out byte for byte, rather than the
    cut header grafted onto it.
    """
    b = samples()["baseline"]
    app0_end = _app_segments(b[0])[0][1]
    for back in range(1, 6):
        splitter, out = _collect()
        splitter.feed(b[0][: app0_end - back] + b[0])
        assert out == [b], back


def test_cut_inside_a_thumbnail() -> None:
    """
    An image cut inside the thumbnail in its APP1 segment is dropped; the
    thumbnail never comes out, and the next image, itself carrying a
    thumbnail, comes out whole.
    """
    a = samples()["thumbnail"]
    [(_, app1_start, app1_end)] = [s for s in _segments(a[0]) if s[0] == 0xE1]
    thumb_at = a[0].index(b"\xff\xd8", 2)
    assert app1_start < thumb_at < app1_end
    for k in range(thumb_at, app1_end, 97):
        splitter, out = _collect()
        splitter.feed(a[0][:k] + a[0] + a[0])
        assert out == [a, a], k


def test_junk_after_cut_entropy_data_hides_no_image() -> None:
    """
    An image cut short in its entropy-coded data and followed by junk that
    looks like an APP or COM marker with a long length does not make the
    splitter skip the images inside that length: after the first scan, an
    APP or COM segment cannot hold a thumbnail.
    """
    a = samples()["wide"][0]
    small = samples()["solid"]
    cut = a[: (_segments(a)[-1][2] + len(a)) // 2]
    for junk in (b"\xff\xe5\xff\xff", b"\xff\xfe\x40\x00", b"\xff\xe1\x00\x10"):
        splitter, out = _collect()
        splitter.feed(cut + junk + small[0] * 20)
        assert out == [small] * 20, junk


def test_app_segment_cut_in_its_length_field() -> None:
    """
    An image cut right after an APP or COM marker, so that the next image's
    SOI is read as the segment's length, costs only itself, even though
    that length would span the next images.
    """
    a = samples()["annotated"][0]
    small = samples()["solid"]
    for start, _ in _app_segments(a):
        for k in (start + 2, start + 3):
            splitter, out = _collect()
            splitter.feed(a[:k] + small[0] * 100)
            assert out == [small] * 100, k


def _cut_points(jpeg: bytes) -> tuple[list[tuple[int, int]], int]:
    """The APP and COM ranges of an image, and where its first scan's data starts."""
    return _app_segments(jpeg), _segments(jpeg)[-1][2]


junk = st.binary(max_size=40).filter(lambda g: b"\xff\xd8" not in g and b"\xff\xd9" not in g)
markers = st.sampled_from([b"", b"\xff\xe1", b"\xff\xe5", b"\xff\xfe", b"\xff\xc4"])
pieces = st.tuples(
    names,
    st.booleans(),  # thumbnail added
    st.sampled_from(["whole", "whole", "in-app", "anywhere"]),
    st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    st.tuples(markers, junk).map(lambda t: t[0] + t[1]),
)


@relaxed
@given(st.lists(pieces, min_size=1, max_size=8), cuts)
def test_cut_images_never_come_out(
    frames: list[tuple[str, bool, str, float, bytes]], boundaries: list[int]
) -> None:
    """
    In a stream of images some of which are cut short (often inside an APP
    or COM segment, the thumbnail's included) and followed by junk without
    an image start or end, every image that comes out is one of the whole
    images sent, byte for byte and in order, and Pillow decodes it to the
    size the splitter reports.  A whole image comes out at least when the
    image before it came out, or was cut outside its APP and COM segments
    and followed by no junk, or was cut after its first scan began (once
    enough of the stream has followed to complete a segment the cut image
    began).
    """
    stream = b""
    sent: list[tuple[bytes, int, int]] = []
    must: list[tuple[bytes, int, int]] = []  # sent images that must come out
    previous_counts = True
    for name, thumb, how, where, after in frames:
        data, w, h = samples()[name]
        if thumb and name != "thumbnail":
            data = _with_thumbnail(data)
        apps, scan = _cut_points(data)
        if how == "whole":
            stream += data + after
            sent.append((data, w, h))
            if previous_counts:
                must.append((data, w, h))
            continue
        if how == "in-app":
            a, b = apps[int(where * len(apps))]
            k = a + int(where * len(apps) % 1 * (b - a))
        else:
            k = 2 + int(where * (len(data) - 3))
        # Junk must not finish an SOI or EOI that the cut left open.
        assume(not (data[k - 1] == 0xFF and after[:1] in (b"\xd8", b"\xd9")))
        stream += data[:k] + after
        in_app = any(a <= k < b for a, b in apps)
        previous_counts = k >= scan or (not in_app and not after)
    # The stream goes on: an APP segment that swallowed images is judged
    # once all of it has arrived.
    stream += bytes(70_000)
    splitter, out = _collect()
    _feed(splitter, stream, boundaries)
    rest = sent
    for data, w, h in out:
        assert (data, w, h) in rest
        rest = rest[rest.index((data, w, h)) + 1 :]
        im = Image.open(io.BytesIO(data))
        im.load()
        assert im.size == (w, h)
    for frame in must:
        assert frame in out


def _count_walks(splitter: MJPEGSplitter, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the splitter's header walking steps: [steps]."""
    steps = [0]
    header = splitter._header

    def counting() -> bool:
        steps[0] += 1
        return header()

    monkeypatch.setattr(splitter, "_header", counting)
    return steps


@pytest.mark.parametrize("filler", [b"\xff", b"\xff\xd0", b"\xff\xff\x01"])
def test_fill_bytes_cost_no_step_each(filler: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A megabyte of fill bytes, restart markers or TEM markers before a header
    segment is skipped in a handful of steps per chunk, not one Python step
    per byte, and the image still comes out whole.
    """
    a, w, h = samples()["baseline"]
    dqt = _segments(a)[1][1]
    padded = a[:dqt] + filler * (1024 * 1024 // len(filler)) + a[dqt:]
    splitter, out = _collect()
    steps = _count_walks(splitter, monkeypatch)
    _feed(splitter, padded, list(range(0, len(padded), 65536)))
    assert out == [(padded, w, h)]
    assert steps[0] < 200


def test_run_of_image_starts_is_cheap(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A megabyte of repeated SOIs (empty images) before a real image costs a
    handful of steps and one log line per chunk, counts every empty image
    as truncated, and the real image comes out.
    """
    a = samples()["baseline"]
    count = 512 * 1024
    stream = b"\xff\xd8" * count + a[0]
    log = _Warnings()
    splitter, out = _collect(log=log)
    steps = _count_walks(splitter, monkeypatch)
    chunks = list(range(0, len(stream), 65536)) + [len(stream) - len(a[0]) + 1]
    _feed(splitter, stream, chunks)
    assert out == [a]
    assert splitter.truncated == count
    assert steps[0] < 200
    assert len(log.lines) <= len(chunks)
    assert all("truncated video frame" in line for line in log.lines)
