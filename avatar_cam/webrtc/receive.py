"""The receiving side: the peer's avatar out to a local sink.

Video: ``VideoReceiver`` pulls decoded frames off the aiortc track and hands each to the
sink in a worker thread (sinks may block: a virtual camera, a file).

Landmarks only: ``LandmarkReceiver`` decodes packets (on the event loop: microseconds)
into a jitter buffer; ``JitterSource`` is a pipeline source that samples it at the
output rate, so the ordinary pipeline (its threads) renders the peer (``build_receiver``)
through a ``Look``: the conditioning sketch of their landmarks (``raster.rasterize``)
from the first packet, swapped for their face rendered with their own model once that
has arrived (``remote_look``: their neural generator, or the warp renderer over their
photo where it cannot keep up). Without a shared model the sketch stays.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from aiortc import MediaStreamTrack

from ..compose import Compositor, make_layout
from ..expression import resting_face
from ..framing import Framer, Placement
from ..live import LiveOptions, label_for
from ..pacing import Clock, Pacer, Sleep, SteadyLatency
from ..pipeline import RECENT_FRAMES, Pipeline, SourceEndedError, median_ms
from ..raster import rasterize
from ..types import AvatarFrame, Frame, Landmarks
from .basis import ExpressionBasis
from .codec import LandmarkDecoder
from .jitter import JitterBuffer, PlayoutConfig
from .options import workers
from .tracks import read_stamp


class VideoReceiver:
    """Frames of a remote video track -> ``sink`` (resized to ``size``)."""

    def __init__(self, track: MediaStreamTrack, sink: object, size: tuple[int, int],
                 read_stamps: bool = False) -> None:
        self.track = track
        self.sink = sink
        self.size = size
        self.read_stamps = read_stamps
        self.frames = 0
        self.first_size: tuple[int, int] | None = None
        # (stamp, arrival ns) of the last 4096 frames of a stamped run
        self.arrivals: deque[tuple[int | None, int]] = deque(maxlen=4096)
        self.deliver_ms: deque[float] = deque(maxlen=RECENT_FRAMES)  # decoded -> in the sink

    def delivery_ms(self) -> float:
        """What the local video path adds after a frame is decoded (median, live)."""
        return median_ms(self.deliver_ms)

    async def run(self) -> None:
        """Until the track ends."""
        from aiortc.mediastreams import MediaStreamError

        while True:
            try:
                frame = await self.track.recv()
            except MediaStreamError:
                return
            arrived = time.monotonic_ns()
            image = await workers().run(self._deliver, frame, arrived)
            if self.read_stamps:
                self.arrivals.append((read_stamp(image), arrived))

    def _deliver(self, frame: object, arrived: int) -> np.ndarray:
        image: np.ndarray = frame.to_ndarray(format="bgr24")  # type: ignore[attr-defined]
        if self.first_size is None:
            self.first_size = (image.shape[1], image.shape[0])
        out = image
        if (image.shape[1], image.shape[0]) != self.size:
            out = cv2.resize(image, self.size, interpolation=cv2.INTER_LINEAR)
        self.sink.send(AvatarFrame(self.frames, arrived, out))  # type: ignore[attr-defined]
        self.deliver_ms.append((time.monotonic_ns() - arrived) / 1e6)
        self.frames += 1
        return image


class LandmarkReceiver:
    """Packets -> decoded, dequantized frames in a jitter buffer (thread-safe sampling)."""

    def __init__(self, basis: ExpressionBasis, config: PlayoutConfig | None = None) -> None:
        self.basis = basis
        self.decoder = LandmarkDecoder(basis)
        # What a stalled stream eases to: the face the sender's adapter rests on (the
        # photo's smile or open mouth taken out), not the photo's. Easing to the photo's,
        # the demo avatar's mouth opened on every stall with no sound to go with it.
        self.rest = resting_face(basis.neutral)
        self.buffer = JitterBuffer(basis.analyze(self.rest), config)
        self._lock = threading.Lock()
        self.arrivals: dict[int, int] = {}  # sender t_ms -> arrival ns (last 4096)

    @property
    def counts(self) -> Counter[str]:
        with self._lock:
            return self.decoder.counts + self.buffer.counts

    def cover(self, spacing_ms: float) -> None:
        """See ``JitterBuffer.cover``: frames come bundled ``spacing_ms`` apart."""
        with self._lock:
            self.buffer.cover(spacing_ms)

    def push(self, data: bytes, now_ns: int | None = None) -> None:
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        with self._lock:
            for f in self.decoder.push(data):
                self.buffer.push(f.seq, f.t_ms, self.basis.dequantize(f.q), now_ns / 1e6)
                if not f.recovered:
                    self.arrivals[f.t_ms] = now_ns
                    if len(self.arrivals) > 4096:
                        del self.arrivals[next(iter(self.arrivals))]

    def sample(self, now_ns: int) -> tuple[np.ndarray, str, float, float]:
        """(478, 3) landmarks to show at local ``now_ns``, the playout state, the local
        time (ns) at which the shown sender instant was captured (estimated: it assumes
        the fastest packet took no time), and that instant in sender milliseconds."""
        with self._lock:
            s = self.buffer.sample(now_ns / 1e6)
            transit = self.buffer.min_transit_ms
        captured = (s.t_sender_ms + transit) * 1e6 if np.isfinite(s.t_sender_ms) else now_ns
        return self.basis.synthesize(s.params), s.state, float(captured), s.t_sender_ms


class JitterSource:
    """A pipeline source: the receiver's landmarks at ``fps``, as a frame's ``truth``.

    Paced like the capture sources (``pacing.Pacer``); ``clock`` and ``sleep`` only pace,
    the jitter buffer is always sampled at ``time.monotonic_ns()``, its packets' clock.
    """

    def __init__(self, receiver: LandmarkReceiver, fps: float = 30.0, *,
                 clock: Clock = time.monotonic, sleep: Sleep = time.sleep) -> None:
        self.receiver = receiver
        self.fps = fps
        self._pacer = Pacer(fps, clock, sleep)
        w, h = receiver.basis.size
        # The pipeline reads only the image's size when it drives from ``truth``.
        self._image = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (h, w, 3))
        self._seq = 0
        self._closed = False
        self.states: Counter[str] = Counter()
        self.shown: dict[int, float] = {}  # frame seq -> sender ms shown (last 4096)

    def read(self) -> Frame:
        if self._closed:
            raise SourceEndedError("landmark stream closed")
        self._pacer.wait()
        points, state, captured, t_sender = self.receiver.sample(time.monotonic_ns())
        self.states[state] += 1
        self.shown[self._seq] = t_sender
        if len(self.shown) > 4096:
            del self.shown[next(iter(self.shown))]
        frame = Frame(self._seq, int(captured), self._image, truth=points)
        self._seq += 1
        return frame

    def close(self) -> None:
        self._closed = True


class PassThrough:
    """The adapter stage of a receiver: the sender's adapter already did the work."""

    def __init__(self, neutral: np.ndarray, size: tuple[int, int]) -> None:
        self._neutral = neutral
        self._size = size

    def drive(self, lm: Landmarks | None, seq: int, t_capture_ns: int) -> Landmarks:
        return lm if lm is not None else Landmarks(seq, t_capture_ns, self._neutral, self._size)

    def close(self) -> None:
        pass


class SketchRenderer:
    """Without the sender's model: the conditioning sketch of the received landmarks."""

    def __init__(self, resolution: int) -> None:
        self.resolution = resolution

    def render(self, lm: Landmarks) -> np.ndarray:
        return rasterize(lm.points, lm.size, self.resolution)

    def close(self) -> None:
        pass


class Look:
    """The receiver's framer, renderer and compositor as one swappable set: the call
    starts with the sketch and switches to the sender's face when their model has arrived
    (``use``), without stopping the pipeline. ``frame`` comes from the pipeline's drive
    thread, ``render`` and ``compose`` from its render thread."""

    def __init__(self, renderer: Any, compositor: Compositor, framer: Framer | None = None
                 ) -> None:
        self._set: tuple[Any, Compositor, Framer | None] = (renderer, compositor, framer)
        self._retired: list[Any] = []
        self._lock = threading.Lock()
        self._face_for: Compositor = compositor

    def use(self, renderer: Any, compositor: Compositor, framer: Framer | None = None) -> None:
        with self._lock:
            self._retired.extend(stage for stage in self._set if stage is not None)
            self._set = (renderer, compositor, framer)

    def frame(self, lm: Landmarks) -> tuple[Landmarks, Placement]:
        with self._lock:
            framer = self._set[2]
        return framer.frame(lm) if framer is not None else (lm, Placement())

    def render(self, lm: Landmarks) -> np.ndarray:
        with self._lock:
            renderer, self._face_for, _ = self._set
        return np.asarray(renderer.render(lm))

    def compose(self, face: np.ndarray, seq: int, t_capture_ns: int,
                face_found: bool = True, placement: Placement | None = None) -> AvatarFrame:
        # The compositor that goes with the renderer that drew this face.
        compositor: Compositor = self._face_for
        return compositor.compose(face, seq, t_capture_ns, face_found, placement)

    def close(self) -> None:
        with self._lock:
            stages = [*(s for s in self._set if s is not None), *self._retired]
        for stage in stages:
            stage.close()


def sketch_look(basis: ExpressionBasis, out_size: tuple[int, int], resolution: int
                ) -> tuple[Any, Compositor, None]:
    """The conditioning sketch of the landmarks on black: no model needed."""
    side = basis.size[0]
    blank = np.zeros((side, side, 3), np.uint8)
    layout = make_layout(blank, np.array([[1.0, 0, 0], [0, 1.0, 0]]), side, out_size,
                         "plain", plain_color=(0, 0, 0))
    # A sketch is plainly not a face: labelled, not watermarked (it carries no model).
    return SketchRenderer(resolution), Compositor(layout, label=label_for(LiveOptions())), None


class ShownSink:
    """The receiver's sink, telling ``on_shown(sender ms, local ns)`` which sender instant
    each frame shows as it goes out (the voice plays on that clock). Each frame goes out
    one steady latency after the instant it shows (``pacing.SteadyLatency``: how long
    rendering took, which varies by tens of ms on a loaded machine), so the voice meets
    the lips of every frame, not only of the average one."""

    def __init__(self, sink: Any, source: JitterSource,
                 on_shown: Callable[[float, int], None], sleep: Sleep = time.sleep) -> None:
        self.sink, self.source, self.on_shown = sink, source, on_shown
        self.steady = SteadyLatency()
        self._sleep = sleep

    def send(self, frame: AvatarFrame) -> None:
        now = time.monotonic_ns()
        self.steady.ready((now - frame.t_capture_ns) / 1e6)
        wait_ns = frame.t_capture_ns + self.steady.hold_ms() * 1e6 - now
        if wait_ns > 0:
            self._sleep(wait_ns / 1e9)
        self.sink.send(frame)
        t_sender = self.source.shown.get(frame.seq)
        if t_sender is not None:
            self.on_shown(t_sender, time.monotonic_ns())

    def close(self) -> None:
        pass  # the sink is the call's: whoever opened it closes it


def build_receiver(receiver: LandmarkReceiver, look: Look, sink: object, fps: float = 30.0,
                   frames: int | None = None,
                   on_shown: Callable[[float, int], None] | None = None) -> Pipeline:
    """A pipeline that renders the received landmarks through ``look`` into ``sink``;
    ``on_shown`` hears which sender instant each frame shows (``ShownSink``)."""
    basis = receiver.basis
    source = JitterSource(receiver, fps)
    adapter = PassThrough(receiver.rest, basis.size)
    out = ShownSink(sink, source, on_shown) if on_shown is not None else sink
    return Pipeline(source, None, adapter, look, look, out,  # type: ignore[arg-type]
                    fps=fps, frames=frames, pace=True, framer=look)
