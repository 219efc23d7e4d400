"""
Cut an MJPEG byte stream (concatenated JPEG images) into whole frames.

A capture child writes JPEG images back to back on its stdout.  Searching for
C{FF D9} alone is not enough to find where one ends: an EXIF thumbnail in an
APP1 segment carries its own SOI and EOI, a child killed mid-frame leaves a
truncated image followed by the next one, and some devices emit junk between
images.  L{MJPEGSplitter} therefore walks the JPEG structure::

    SOI (FF D8)
    segments: FF xx, 16-bit big-endian length (counting itself), payload
              ... up to and including SOS (FF DA)
    entropy-coded data, where FF is only ever followed by 00 (a stuffed
              byte), D0-D7 (restart markers) or FF (fill); anything else is a
              real marker: EOI ends the image, SOI means the image was cut
              short, other markers (a progressive image's next DHT/SOS)
              go back to segment walking
    EOI (FF D9)

A truncated image is recognised when an image start (C{FF D8 FF}) turns up
where none can be: in entropy-coded data, or in a segment that a cut-short
length field stretched over the next image.  APP and COM segments before the
first scan may legitimately hold whole images (EXIF thumbnails), so there an
image start counts only if its EOI is not in the segment as well: an image
cut inside its own APP segment is dropped and the image whose start the
segment swallowed comes out (or is lost, if it ended inside the segment
too), never the thumbnail and never the cut header glued onto the next
image's tail.  A malformed image is dropped and the search for the next one
resumes just after its SOI, skipping thumbnails.

The hot path is C-level: segments are skipped by their length and entropy
data is searched with one compiled regular expression, so a 1080p frame costs
a few dozen Python operations however many bytes it has.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

from twisted.logger import Logger

DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024

# A marker inside entropy-coded data: FF followed by anything but a stuffed
# zero, a restart marker or another fill byte.
_ENTROPY_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_START = b"\xff\xd8\xff"  # SOI, then the first segment's marker
# Image starts and ends inside an APP or COM payload.
_BOUNDARY = re.compile(rb"\xff(?:\xd8\xff|\xd9)")
# Fill bytes and standalone markers (TEM, RSTn) between header segments.
_FILL = re.compile(rb"(?:\xff++[\x01\xd0-\xd7])*+\xff*+")
# A run of SOIs: images cut short right after their start.
_SOIS = re.compile(rb"(?:\xff\xd8)++")

_SOI = 0xD8
_EOI = 0xD9
_SOS = 0xDA
_TEM = 0x01
# Start-of-frame markers carry the image size; C4 (DHT), C8 (JPG) and CC
# (DAC) share the range but are not frames.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}

_SEEK, _HEADER, _ENTROPY = range(3)

FrameSink = Callable[[bytes, int, int], None]


class _WarningLog(Protocol):
    def warn(self, format: str, **kwargs: object) -> None: ...


class MJPEGSplitter:
    """
    Incremental MJPEG splitter: L{feed} it bytes in any chunking and it calls
    C{deliver(data, width, height)} once per complete, well-formed image.

    Bytes that are not part of an image, images cut short by the next SOI,
    images with a malformed segment or without a start-of-frame, and images
    larger than C{max_frame_size} are dropped and counted; each drop is
    reported through C{log.warn}.

    @ivar frames: images delivered.
    @ivar truncated: images dropped because a new SOI arrived first.
    @ivar corrupt: images dropped because their structure was malformed.
    @ivar oversize: images dropped because they exceeded C{max_frame_size}.
    @ivar garbage: bytes skipped outside any image.
    """

    log = Logger()

    def __init__(
        self,
        deliver: FrameSink,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        log: _WarningLog | None = None,
    ) -> None:
        self._deliver = deliver
        self._max = max_frame_size
        if log is not None:
            self.log = log  # type: ignore[assignment]
        self._buf = bytearray()
        self._state = _SEEK
        # _HEADER: offset of the next marker.  _ENTROPY: where to resume the
        # marker search.  Offsets index self._buf, whose first byte is the
        # current image's SOI unless the image is being discarded.
        self._pos = 0
        self._width = 0
        self._height = 0
        self._discarding = False
        self._scanned = False  # an SOS of the current image has been walked
        self._skip = 0  # bytes of a discarded segment still to come
        # Payload ranges of the current image's APPn and COM segments, which
        # may hold whole JPEG images of their own (EXIF thumbnails).
        self._embedded: list[tuple[int, int]] = []
        self._garbage_run = 0
        self.frames = 0
        self.truncated = 0
        self.corrupt = 0
        self.oversize = 0
        self.garbage = 0

    def feed(self, data: bytes) -> None:
        """
        Add the next chunk of the stream; deliver every image it completes.
        """
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return
            data = memoryview(data)[self._skip :]  # type: ignore[assignment]
            self._skip = 0
        self._buf += data
        self._run()
        if self._state != _SEEK and len(self._buf) > self._max:
            if not self._discarding:
                self.oversize += 1
                self._discarding = True
                self.log.warn(
                    "dropping a video frame larger than {limit} bytes",
                    limit=self._max,
                )
            self._trim_discarded()

    def _run(self) -> None:
        buf = self._buf
        while True:
            if self._state == _SEEK:
                if not self._seek():
                    return
            elif self._state == _HEADER:
                if not self._header():
                    return
            else:
                m = _ENTROPY_MARKER.search(buf, self._pos)
                if m is None:
                    # The last byte may be the FF of a marker split across
                    # chunks; look at it again next time.
                    self._pos = max(self._pos, len(buf) - 1)
                    return
                i = m.start()
                marker = buf[i + 1]
                if marker == _EOI:
                    self._finish(i + 2)
                elif marker == _SOI:
                    self._drop_truncated(i)
                else:
                    # Another table or scan (progressive image): walk it.
                    self._state = _HEADER
                    self._pos = i

    def _seek(self) -> bool:
        buf = self._buf
        i = buf.find(_START)
        if i < 0:
            # Keep a possible partial start marker.
            junk = max(0, len(buf) - 2)
            self._skip_garbage(junk)
            return False
        self._skip_garbage(i)
        self._state = _HEADER
        self._pos = 2
        self._width = self._height = 0
        self._discarding = False
        self._scanned = False
        self._embedded = []
        if self._garbage_run:
            self.log.warn(
                "skipped {count} bytes of video stream outside any JPEG image",
                count=self._garbage_run,
            )
            self._garbage_run = 0
        return True

    def _skip_garbage(self, count: int) -> None:
        if not count:
            return
        del self._buf[:count]
        self.garbage += count
        self._garbage_run += count
        if self._garbage_run > self._max:
            self.log.warn(
                "no JPEG image start in the last {count} bytes of video stream",
                count=self._garbage_run,
            )
            self._garbage_run = 0

    def _header(self) -> bool:
        """
        Walk one marker of the image header.  Return C{False} when more
        bytes are needed.
        """
        buf = self._buf
        pos = self._pos
        n = len(buf)
        if pos + 2 > n:
            return False
        if buf[pos] != 0xFF:
            self._drop_corrupt(f"no marker at offset {pos}")
            return True
        marker = buf[pos + 1]
        if marker == 0xFF or marker == _TEM or 0xD0 <= marker <= 0xD7:
            # Skip the whole run of fill bytes and standalone markers, and
            # stop on the FF of the next real marker.
            run = _FILL.match(buf, pos)
            assert run is not None
            skip = run.end()
            self._pos = skip - 1 if buf[skip - 1] == 0xFF else skip
            return True
        if marker == _SOI:
            # Each SOI but the last of a run starts an empty image.
            run = _SOIS.match(buf, pos)
            assert run is not None
            last = run.end() - 2
            self._drop_truncated(last, count=(last - pos) // 2 + 1)
            return True
        if marker == _EOI:
            self._drop_corrupt("image ended before its first scan")
            return True
        if marker == 0x00:
            self._drop_corrupt("stuffed byte outside entropy data")
            return True
        if pos + 4 > n:
            return False
        length = (buf[pos + 2] << 8) | buf[pos + 3]
        if length < 2:
            self._drop_corrupt(f"segment length {length} at offset {pos}")
            return True
        end = pos + 2 + length
        # EXIF thumbnails live in APP segments before the first scan.
        embedded = not self._scanned and (0xE0 <= marker <= 0xEF or marker == 0xFE)
        if embedded:
            # An image start in the length field: cut short right there.
            start = buf.find(_START, pos + 2, pos + 6)
        else:
            # Other segments never contain an image start: if one is there,
            # this image was cut short and its last length field claimed the
            # start of the next one.
            start = buf.find(_START, pos + 2, min(end + 2, n))
        if start >= 0:
            self._drop_truncated(start)
            return True
        if end > n:
            if self._discarding:
                # Drop what we have of this segment and the rest as it comes.
                self._skip = end - n
                del buf[:]
                self._pos = 0
                self._state = _ENTROPY if marker == _SOS else _HEADER
            return False
        if embedded:
            if end + 2 > n and 0xFF in buf[end - 2 : end]:
                return False  # an image start may straddle the segment's end
            start = self._swallowed(pos + 2, end)
            if start >= 0:
                self._drop_truncated(start)
                return True
            self._embedded.append((pos + 4, end))
        elif marker in _SOF:
            if self._width or self._height:
                self._drop_corrupt("a second start-of-frame segment")
                return True
            if length < 7:
                self._drop_corrupt(f"start-of-frame segment of {length} bytes")
                return True
            self._height = (buf[pos + 5] << 8) | buf[pos + 6]
            self._width = (buf[pos + 7] << 8) | buf[pos + 8]
            if not (self._width and self._height):
                self._drop_corrupt("start-of-frame segment with a zero size")
                return True
        self._pos = end
        if marker == _SOS:
            self._state = _ENTROPY
            self._scanned = True
        return True

    def _swallowed(self, start: int, end: int) -> int:
        """
        Find the image start that an APP or COM segment took in when its
        image was cut short inside it, if any.

        A thumbnail is a whole image, its EOI inside the segment too.  So
        the images in C{buf[start:end]} (their starts may straddle C{end})
        are matched with their ends, nested ones included; if one is left
        open, the segment ran into the next image, which starts at the
        first image start that is not a whole image of its own.

        @return: the offset of that image start, or -1.
        """
        buf = self._buf
        depth = 0
        first = -1
        for m in _BOUNDARY.finditer(buf, start, end + 2):
            i = m.start()
            if buf[i + 1] == _SOI:
                if not depth:
                    first = i
                depth += 1
            elif depth and i + 2 <= end:
                depth -= 1
        return first if depth else -1

    def _finish(self, end: int) -> None:
        buf = self._buf
        if self._discarding:
            pass
        elif end > self._max:
            self.oversize += 1
            self.log.warn(
                "dropping a video frame of {size} bytes (limit {limit})",
                size=end,
                limit=self._max,
            )
        elif not (self._width and self._height):
            self.corrupt += 1
            self.log.warn("dropping a video frame without a start-of-frame segment")
        else:
            with memoryview(buf) as view:
                data = bytes(view[:end])
            self.frames += 1
            self._deliver(data, self._width, self._height)
        del buf[:end]
        self._state = _SEEK

    def _drop_truncated(self, at: int, count: int = 1) -> None:
        """
        Drop the current image, cut short by the image starting at C{at},
        and C{count - 1} empty images before that start.
        """
        if self._discarding:
            count -= 1  # the current image was counted as oversize
        if count == 1:
            self.log.warn(
                "dropping a truncated video frame ({size} bytes before the next"
                " image started)",
                size=at,
            )
        elif count > 1:
            self.log.warn(
                "dropping {count} truncated video frames ({size} bytes before"
                " the next image started)",
                count=count,
                size=at,
            )
        self.truncated += count
        del self._buf[:at]
        self._state = _SEEK

    def _drop_corrupt(self, why: str) -> None:
        """
        Drop the current image and look for the next one right after its
        SOI: a truncated image may have had a length field claim the start
        of the next one.  Images embedded in APP and COM segments
        (thumbnails) are not candidates.
        """
        if not self._discarding:
            self.corrupt += 1
            self.log.warn("dropping a malformed video frame: {why}", why=why)
        buf = self._buf
        resume = max(2, len(buf) - 2)
        at = 2
        while (i := buf.find(_START, at)) >= 0:
            inside = [end for start, end in self._embedded if start <= i < end]
            if not inside:
                resume = i
                break
            at = inside[0]
        self._embedded = []
        del buf[:resume]
        self._state = _SEEK

    def _trim_discarded(self) -> None:
        """
        Forget the bytes of an image being discarded, keeping only what the
        parser still has to look at.
        """
        keep_from = self._pos
        self._embedded = []
        if keep_from:
            del self._buf[:keep_from]
            self._pos = 0
