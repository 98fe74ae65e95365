"""The live pipeline: the only place that owns threads and wires the stages.

    capture thread:  source.read()                                      -> [mailbox] ->
    drive thread:    tracker.track() + adapter.drive() + framer.frame()  -> [mailbox] ->
    render thread:   renderer.render() + compositor.compose()           -> [mailbox] ->
    caller's thread: pacing at the target fps, sink.send()

Every hand-off is a one-slot mailbox that keeps only the newest item: a slow stage
makes the pipeline drop frames (counted), never queue them, so latency stays bounded.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from .framing import Placement
from .pacing import send_pacer
from .types import AvatarFrame, Frame, Landmarks

log = logging.getLogger(__name__)
T = TypeVar("T")


class SourceEndedError(Exception):
    """Raised by a finite source's read() at its end: a video file, a synthetic clip, a
    closed landmark stream. The pipeline's capture thread stops on it; anything else a
    source raises is an error."""


class Mailbox(Generic[T]):
    """A one-slot, latest-value hand-off between two threads."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self.overwritten = 0  # items replaced before anyone took them: dropped frames

    def put(self, item: T) -> None:
        with self._cond:
            if self._item is not None:
                self.overwritten += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout: float) -> T | None:
        """The newest item, waiting up to ``timeout`` s; None on timeout or when closed."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def pending(self) -> bool:
        """An item waits to be taken."""
        with self._cond:
            return self._item is not None

    @property
    def drained(self) -> bool:
        """Closed, and nothing left to take: the consumer is done."""
        with self._cond:
            return self._closed and self._item is None


class _Source(Protocol):
    @property
    def fps(self) -> float: ...

    def read(self) -> Frame: ...
    def close(self) -> None: ...


class _Tracker(Protocol):
    def track(self, frame: Frame) -> Landmarks | None: ...
    def close(self) -> None: ...


class _Adapter(Protocol):
    def drive(self, lm: Landmarks | None, seq: int, t_capture_ns: int) -> Landmarks: ...
    def close(self) -> None: ...


class _Framer(Protocol):
    def frame(self, lm: Landmarks) -> tuple[Landmarks, Placement]: ...
    def close(self) -> None: ...


class _Renderer(Protocol):
    def render(self, lm: Landmarks) -> np.ndarray: ...
    def close(self) -> None: ...


class _Compositor(Protocol):
    def compose(self, face: np.ndarray, seq: int, t_capture_ns: int,
                face_found: bool = True, placement: Placement | None = None) -> AvatarFrame: ...
    def close(self) -> None: ...


class _Sink(Protocol):
    def send(self, frame: AvatarFrame) -> None: ...
    def close(self) -> None: ...


class _Voice(Protocol):
    def pump(self) -> bool: ...  # move one chunk of sound; False when it has ended
    def close(self) -> None: ...


@dataclass
class _Driven:
    lm: Landmarks
    face_found: bool
    timings: dict[str, float]
    placement: Placement | None = None


RECENT_FRAMES = 30  # frames whose median is the live latency (1 s at 30 fps)


def median_ms(values: Iterable[float]) -> float:
    """The median of ``values``, 0 when there are none: the one rule for the live
    latencies that voice is held back by (pipeline, video tracks, receivers)."""
    ordered = sorted(values)
    return float(ordered[len(ordered) // 2]) if ordered else 0.0


RECENT_KEPT = 4096  # a Series' last values kept exactly (2 min 16 s at 30 fps)
_BIN_LO_MS, _BIN_WIDTH = 1e-3, 0.01  # log bins from 1 us up, each 1 % wide
_BINS = 2048  # up to 1e-3 * 1.01**2048 ms, about 12 minutes


class Series:
    """Milliseconds, one value a frame, in bounded memory for a run of any length.

    ``recent`` keeps the last ``RECENT_KEPT`` values exactly (what the live figures
    use); every value also lands in a histogram of log-spaced bins 1 % wide, from which
    ``percentile`` reads the whole run's p50/p95 to within 0.5 % (the bin's geometric
    centre; values under 1 us or over ~12 min fall in the end bins, ``min``/``max``
    stay exact). About 50 KB whatever the call's length; appended from one thread
    (the pipeline's sink thread), read from any."""

    def __init__(self, keep: int = RECENT_KEPT) -> None:
        self.recent: deque[float] = deque(maxlen=keep)
        self.count = 0
        self.min = math.inf
        self.max = -math.inf
        self._bins = np.zeros(_BINS, np.int64)

    def append(self, ms: float) -> None:
        self.recent.append(ms)
        self.count += 1
        self.min, self.max = min(self.min, ms), max(self.max, ms)
        i = int(math.log(ms / _BIN_LO_MS) / math.log1p(_BIN_WIDTH)) if ms > _BIN_LO_MS else 0
        self._bins[min(max(i, 0), _BINS - 1)] += 1

    def __len__(self) -> int:
        return self.count

    def last(self, n: int) -> list[float]:
        """The newest ``n`` values (fewer if fewer came), newest first."""
        return list(islice(reversed(self.recent), n))

    def percentile(self, q: float) -> float:
        """The whole run's ``q``-th percentile (0 when empty), to within half a bin."""
        if self.count == 0:
            return 0.0
        if q <= 0:
            return self.min
        if q >= 100:
            return self.max
        cum = np.cumsum(self._bins)
        i = int(np.searchsorted(cum, q / 100.0 * cum[-1]))
        centre = _BIN_LO_MS * (1.0 + _BIN_WIDTH) ** (i + 0.5)
        return float(min(max(centre, self.min), self.max))


@dataclass
class Stats:
    """Counters and timings of one run; ``summary()`` is what --stats-json writes."""

    captured: int = 0
    frames: int = 0
    no_face: int = 0
    placeholders: int = 0
    dropped: int = 0
    elapsed_s: float = 0.0
    latencies_ms: Series = field(default_factory=Series)  # capture to sink, every frame
    stages: dict[str, Series] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def recent_latency_ms(self) -> float:
        """Capture-to-sink latency now: the median of the last RECENT_FRAMES frames."""
        return median_ms(self.latencies_ms.last(RECENT_FRAMES))

    def add_timings(self, timings: dict[str, float]) -> None:
        for name, ms in timings.items():
            series = self.stages.get(name)
            if series is None:  # a stage's first frame: few names, so few series
                series = self.stages[name] = Series(keep=RECENT_FRAMES)
            series.append(ms)

    def summary(self) -> dict[str, Any]:
        def pct(values: Series, q: float) -> float:
            return round(values.percentile(q), 3)

        return {
            "fps": round(self.frames / self.elapsed_s, 3) if self.elapsed_s > 0 else 0.0,
            "frames": self.frames,
            "captured": self.captured,
            "dropped": self.dropped,
            "no_face": self.no_face,
            "placeholders": self.placeholders,
            "elapsed_s": round(self.elapsed_s, 3),
            "latency_ms": {"p50": pct(self.latencies_ms, 50), "p95": pct(self.latencies_ms, 95)},
            "stages": {name: {"p50_ms": pct(v, 50), "p95_ms": pct(v, 95)}
                       for name, v in sorted(self.stages.items())},
            **self.extra,
        }


class Pipeline:
    """Wire source -> tracker -> adapter -> framer -> renderer -> compositor -> sink.

    ``tracker=None`` drives from the source's ground-truth landmarks (synthetic source).
    ``framer=None`` renders the adapter's landmarks as they are, at the layout's place.
    ``pace=True`` sends at most ``fps`` frames per second; ``frames`` stops after that
    many frames reached the sink. ``on_frame`` is called after each send (progress).
    """

    def __init__(self, source: _Source, tracker: _Tracker | None, adapter: _Adapter,
                 renderer: _Renderer, compositor: _Compositor, sink: _Sink, *,
                 fps: float = 30.0, frames: int | None = None, pace: bool = True,
                 on_frame: Callable[[AvatarFrame], None] | None = None,
                 framer: _Framer | None = None, voice: _Voice | None = None) -> None:
        if fps <= 0 or fps > 240:
            raise ValueError(f"fps must be in (0, 240], got {fps}")
        self.source, self.tracker, self.adapter = source, tracker, adapter
        self.framer = framer
        self.voice = voice  # sound that follows the picture (audio.relay), if any
        self.renderer, self.compositor, self.sink = renderer, compositor, sink
        self.fps, self.max_frames, self.pace, self.on_frame = fps, frames, pace, on_frame
        self.stats = Stats()
        self._stop = threading.Event()
        self._source_done = threading.Event()
        self._errors: list[BaseException] = []
        self._captured: Mailbox[Frame] = Mailbox()
        self._driven: Mailbox[_Driven] = Mailbox()
        self._out: Mailbox[AvatarFrame] = Mailbox()

    def stop(self) -> None:
        self._stop.set()

    # -- worker threads ---------------------------------------------------------------

    def _guard(self, name: str, body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except BaseException as exc:  # surfaced in run(): a worker must not die silently
                log.debug("%s thread failed", name, exc_info=True)
                self._errors.append(exc)
                self._stop.set()
        return run

    def _capture_loop(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.source.read()
            except SourceEndedError:
                break
            self.stats.captured += 1
            if frame.placeholder:
                self.stats.placeholders += 1
            self._captured.put(frame)
        self._source_done.set()

    def _drive_loop(self) -> None:
        while not self._stop.is_set():
            frame = self._captured.take(0.05)
            if frame is None:
                if self._source_done.is_set() and not self._captured.pending:
                    break
                continue
            timings: dict[str, float] = {}
            lm: Landmarks | None
            if frame.placeholder:
                lm = None
            elif self.tracker is None:
                if frame.truth is None:
                    raise ValueError("a source without ground truth needs a tracker")
                h, w = frame.image.shape[:2]
                lm = Landmarks(frame.seq, frame.t_capture_ns, frame.truth, (w, h))
            else:
                lm = self.tracker.track(frame)
                if lm is not None:
                    timings.update(lm.timings)
            found = lm is not None
            if not found and not frame.placeholder:
                self.stats.no_face += 1
            t0 = time.perf_counter()
            driven = self.adapter.drive(lm, frame.seq, frame.t_capture_ns)
            timings["drive"] = (time.perf_counter() - t0) * 1e3
            placement = None
            if self.framer is not None:
                t0 = time.perf_counter()
                driven, placement = self.framer.frame(driven)
                timings["frame"] = (time.perf_counter() - t0) * 1e3
            self._driven.put(_Driven(driven, found, timings, placement))
        self._driven.close()

    def _render_loop(self) -> None:
        while not self._stop.is_set():
            item = self._driven.take(0.05)
            if item is None:
                if self._driven.drained:
                    break
                continue
            t0 = time.perf_counter()
            face = self.renderer.render(item.lm)
            t1 = time.perf_counter()
            out = self.compositor.compose(face, item.lm.seq, item.lm.t_capture_ns,
                                          item.face_found, item.placement)
            out.timings = {**item.timings, "render": (t1 - t0) * 1e3,
                           "compose": (time.perf_counter() - t1) * 1e3}
            self._out.put(out)
        self._out.close()

    def _voice_loop(self) -> None:
        assert self.voice is not None
        while not self._stop.is_set() and self.voice.pump():
            pass

    # -- the caller's thread: pacing and the sink ---------------------------------------

    def run(self) -> Stats:
        """Run until the source ends, ``frames`` were sent, stop() or Ctrl-C; then clean up."""
        loops = [("capture", self._capture_loop), ("drive", self._drive_loop),
                 ("render", self._render_loop)]
        if self.voice is not None:
            loops.append(("voice", self._voice_loop))
        threads = [threading.Thread(target=self._guard(n, f), name=f"avatar-{n}", daemon=True)
                   for n, f in loops]
        start = time.perf_counter()
        for t in threads:
            t.start()
        pacer = send_pacer(self.fps)
        waiting = True  # the next take() is for a new slot
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and self.stats.frames >= self.max_frames:
                    break
                if self.pace and waiting:
                    # The slot first, then the newest frame: a frame never waits for its
                    # slot while a newer one is made (pacing.send_pacer: no burst either).
                    pacer.wait()
                frame = self._out.take(0.05)
                waiting = frame is not None
                if frame is None:
                    if self._out.drained:
                        break
                    continue
                if self.pace:
                    pacer.sent()
                t0 = time.perf_counter()
                self.sink.send(frame)
                sent_ns = time.monotonic_ns()
                frame.timings["sink"] = (time.perf_counter() - t0) * 1e3
                self.stats.frames += 1
                self.stats.latencies_ms.append((sent_ns - frame.t_capture_ns) / 1e6)
                self.stats.add_timings(frame.timings)
                if self.on_frame is not None:
                    self.on_frame(frame)
        except KeyboardInterrupt:
            log.info("interrupted: shutting down")
        finally:
            self._stop.set()
            self._captured.close()
            self._driven.close()
            self._out.close()
            for t in threads:
                t.join(timeout=5.0)
            self.stats.elapsed_s = time.perf_counter() - start
            self.stats.dropped = (self._captured.overwritten + self._driven.overwritten
                                  + self._out.overwritten)
            counts = getattr(self.tracker, "counts", None)  # why faces were not used
            if counts:
                self.stats.extra["tracker"] = dict(counts)
            cuts = getattr(self.adapter, "cuts", 0)
            if cuts:
                self.stats.extra["driver_changes"] = cuts
        if self._errors:
            raise self._errors[0]
        return self.stats
