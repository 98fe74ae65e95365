"""The sending side: the live pipeline's output handed to the event loop.

The pipeline (its own threads) ends in one of two stand-ins for a sink:

- ``FrameSlot``: keeps the last few AvatarFrames; every ``AvatarVideoTrack`` (one per
  peer) takes the newest due one when aiortc asks for a frame, at most ``fps`` a second
  (in a call with voice a frame is due at one steady latency after its capture, so that
  the voice, held back by it, meets the lips).
  ``recv()`` only converts pixels: rendering never runs on the event loop.
- ``LandmarkTap``: stands in for renderer, compositor and sink at once: it keeps the
  driven landmarks, skips rendering, and at send time (in sending order, which the
  codec's prediction needs) encodes a packet and hands it to ``on_packet``.

``stamp``/``read_stamp`` write and read a frame number as big black/white blocks, which
survive VP8, so tests and benchmarks can match a received frame to its capture time.
"""

from __future__ import annotations

import asyncio
import fractions
import threading
import time
from collections import deque
from collections.abc import Callable

import av
import numpy as np
from aiortc import MediaStreamTrack

from ..framing import Placement
from ..pacing import SteadyLatency
from ..pipeline import RECENT_FRAMES
from ..types import AvatarFrame, Landmarks
from .codec import LandmarkEncoder

VIDEO_CLOCK = 90000
TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
STAMP_BITS = 16
STAMP_BLOCK = 12  # px
_GUARD = (1, 0)  # a white then a black block before the bits: a frame without them is unstamped
KEPT_FRAMES = 8  # frames a FrameSlot keeps for its readers (the newest due one is sent)


def stamp(image: np.ndarray, number: int) -> None:
    """Write ``number`` (mod 2**16) into the top-left corner of ``image`` in place."""
    bits = list(_GUARD) + [(number >> (STAMP_BITS - 1 - i)) & 1 for i in range(STAMP_BITS)]
    b = STAMP_BLOCK
    for i, bit in enumerate(bits):
        image[0:b, i * b:(i + 1) * b] = 255 if bit else 0


def read_stamp(image: np.ndarray) -> int | None:
    """The number ``stamp`` wrote, or None if the corner does not hold one."""
    b = STAMP_BLOCK
    n = len(_GUARD) + STAMP_BITS
    if image.shape[0] < b or image.shape[1] < n * b:
        return None
    levels = [float(image[b // 4:3 * b // 4, i * b + b // 4:(i + 1) * b - b // 4].mean())
              for i in range(n)]
    if any(40 < v < 215 for v in levels):
        return None
    bits = [int(v >= 128) for v in levels]
    if tuple(bits[:len(_GUARD)]) != _GUARD:
        return None
    value = 0
    for bit in bits[len(_GUARD):]:
        value = (value << 1) | bit
    return value


class FrameSlot:
    """A hand-off from the pipeline thread to event-loop readers.

    ``send`` (the pipeline's sink call) adds the frame and wakes waiting readers;
    ``stamp_frames`` writes each frame's seq into its corner (tests, benchmarks).

    ``pace`` (a call with voice): each frame is due ``hold_ms()`` after its capture
    (``pacing.SteadyLatency``), so the picture leaves at one steady latency and the
    voice, held back by that latency, stays on the lips; a frame ready later than that is
    due at once. Without it (no voice) a frame is due when it is ready, the least latency.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, stamp_frames: bool = False,
                 pace: bool = False) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._frames: deque[tuple[int, AvatarFrame]] = deque(maxlen=KEPT_FRAMES)
        self._version = 0
        self._waiters: set[asyncio.Event] = set()
        self.stamp_frames = stamp_frames
        self.pace = pace
        self.steady = SteadyLatency()  # capture -> in the slot
        self.sent_at: dict[int, int] = {}  # seq -> t_capture_ns, last 512 (stamped runs)
        self.frames_in = 0
        self.closed = False
        self.first_capture: Callable[[AvatarFrame], None] | None = None  # first frame's hook

    def send(self, frame: AvatarFrame) -> None:
        if self.frames_in == 0 and self.first_capture is not None:
            self.first_capture(frame)
        if self.stamp_frames:
            frame.image = frame.image.copy()
            stamp(frame.image, frame.seq)
            self.sent_at[frame.seq & 0xFFFF] = frame.t_capture_ns
            if len(self.sent_at) > 512:
                del self.sent_at[next(iter(self.sent_at))]
        with self._lock:
            self._version += 1
            self._frames.append((self._version, frame))
            self.frames_in += 1
        self.steady.ready((time.monotonic_ns() - frame.t_capture_ns) / 1e6)
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        for event in self._waiters:
            event.set()

    def hold_ms(self) -> float:
        """How long after its capture a frame is due (0 without ``pace``)."""
        return self.steady.hold_ms() if self.pace else 0.0

    def latest(self) -> tuple[int, AvatarFrame | None]:
        with self._lock:
            return (self._version, self._frames[-1][1]) if self._frames else (0, None)

    def due(self, after: int, now_ns: int) -> tuple[int, AvatarFrame | None, float | None]:
        """The newest frame after version ``after`` that is due at ``now_ns`` (version,
        frame), or (after, None, seconds until the next one is due; None: none is in)."""
        hold_ns = self.hold_ms() * 1e6
        with self._lock:
            pending = [(v, f) for v, f in self._frames if v > after]
        ready = [(v, f) for v, f in pending if f.t_capture_ns + hold_ns <= now_ns]
        if ready:
            return ready[-1][0], ready[-1][1], None
        if not pending:
            return after, None, None
        return after, None, (pending[0][1].t_capture_ns + hold_ns - now_ns) / 1e9

    async def wait_newer(self, version: int, timeout: float) -> None:
        """Return when a frame newer than ``version`` is in, or after ``timeout`` s."""
        if self.latest()[0] > version:
            return
        event = asyncio.Event()
        self._waiters.add(event)
        try:
            if self.latest()[0] <= version:
                await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(event)

    def close(self) -> None:
        self.closed = True


class AvatarVideoTrack(MediaStreamTrack):
    """A WebRTC video track of the newest frame in a FrameSlot, at most ``fps`` a second.

    A new frame goes out as soon as it is due (``FrameSlot.due``; no waiting for a clock
    tick), but never sooner than 0.8 periods after the previous one; without new
    frames the last one is repeated every period so the stream stays alive. Before the
    first frame (the renderer may still be loading) it sends black frames of ``size``,
    the pipeline's own, so the peer never sees the stream change size.
    """

    kind = "video"

    def __init__(self, slot: FrameSlot, fps: float = 30.0,
                 size: tuple[int, int] = (640, 480)) -> None:
        super().__init__()
        self.slot = slot
        self.period = 1.0 / fps
        self._version = 0
        self._last: AvatarFrame | None = None
        self._t0: float | None = None
        self._last_sent = 0.0
        self._blank: np.ndarray = np.zeros((size[1], size[0], 3), np.uint8)
        self.frames_sent = 0
        # capture -> handed to the encoder, of the last frames
        self.latencies_ms: deque[float] = deque(maxlen=RECENT_FRAMES)

    async def recv(self) -> av.VideoFrame:
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = self._last_sent = now - self.period
        earliest = self._last_sent + 0.8 * self.period
        if now < earliest:
            await asyncio.sleep(earliest - now)
        deadline = self._last_sent + self.period  # the last frame is repeated after this
        while True:
            version, frame, wait_s = self.slot.due(self._version, time.monotonic_ns())
            if frame is not None:
                break
            left = deadline - time.monotonic()
            if wait_s is not None:  # one is in, not yet due
                await asyncio.sleep(wait_s)
            elif left > 0:
                await self.slot.wait_newer(self.slot.latest()[0], left)
            else:
                version, frame = self._version, self._last
                break
        if version != self._version and frame is not None:
            self.latencies_ms.append((time.monotonic_ns() - frame.t_capture_ns) / 1e6)
        self._version, self._last = version, frame
        image = frame.image if frame is not None else self._blank
        out = av.VideoFrame.from_ndarray(image, format="bgr24")
        self._last_sent = time.monotonic()
        out.pts = int((self._last_sent - self._t0) * VIDEO_CLOCK)
        out.time_base = TIME_BASE
        self.frames_sent += 1
        return out


class LandmarkTap:
    """Renderer, compositor and sink of a landmark-only sender (see the module docstring).

    ``on_packet(packet, t_capture_ns)`` is called on the pipeline's sending thread; it
    must only hand the bytes over (e.g. ``loop.call_soon_threadsafe``).
    """

    def __init__(self, encoder: LandmarkEncoder,
                 on_packet: Callable[[bytes, int], None]) -> None:
        self.encoder = encoder
        self.on_packet = on_packet
        self._lock = threading.Lock()
        self._driven: dict[int, Landmarks] = {}
        self._face = np.zeros((16, 16, 3), np.uint8)
        self.frames_sent = 0
        self.first_capture: Callable[[AvatarFrame], None] | None = None  # first frame's hook

    def render(self, lm: Landmarks) -> np.ndarray:
        with self._lock:
            self._driven[lm.seq] = lm
            while len(self._driven) > 8:  # frames the pipeline dropped after rendering
                del self._driven[min(self._driven)]
        return self._face

    def compose(self, face: np.ndarray, seq: int, t_capture_ns: int,
                face_found: bool = True, placement: Placement | None = None) -> AvatarFrame:
        # The sender's framing is not sent: the receiver frames the pose it gets itself.
        return AvatarFrame(seq, t_capture_ns, face, face_found, {})

    def send(self, frame: AvatarFrame) -> None:
        with self._lock:
            lm = self._driven.pop(frame.seq, None)
        if lm is None:
            return
        if self.frames_sent == 0 and self.first_capture is not None:
            self.first_capture(frame)
        points = lm.points
        size = self.encoder.basis.size
        if lm.size != size:
            k = np.array([size[0] / lm.size[0], size[1] / lm.size[1], size[0] / lm.size[0]])
            points = (points * k).astype(np.float32)
        packet = self.encoder.encode(points, frame.t_capture_ns // 1_000_000, frame.face_found)
        self.frames_sent += 1
        self.on_packet(packet, frame.t_capture_ns)

    def close(self) -> None:
        pass
