"""Turn run options into wired stages: the one place that knows which classes to build.

The CLI, the embedding API (``avatar_cam.Avatar``, ``avatar_cam.Stream``), the
benchmarks and the tests all build their stages through here (``build_stages``,
``build_pipeline``), so what they measure is what users run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .bank import BANK_DIR, load_bank
from .capture import SyntheticSource, VideoFileSource, WebcamSource
from .compose import Compositor, Layout, frame_layout
from .drive import Adapter
from .errors import ModelError
from .expression import resting_face
from .framing import Framer, FramingConfig, Placement
from .honesty.label import Label
from .honesty.signing import model_fingerprint
from .honesty.watermark import Watermarker, make_payload, minute_now
from .person import Person
from .pipeline import Pipeline, Stats
from .render.warp import WarpRenderer
from .sinks import open_sink
from .types import AvatarFrame, Frame, Landmarks

if TYPE_CHECKING:
    from .tracking import MediaPipeTracker

log = logging.getLogger(__name__)


class FrameSource(Protocol):
    """What the pipeline reads: ``read()`` a frame until it raises
    ``pipeline.SourceEndedError`` (a finite source's end), then ``close()``. The sources in
    ``capture`` (webcam, video file, synthetic driver) are ones."""

    @property
    def fps(self) -> float: ...

    def read(self) -> Frame: ...
    def close(self) -> None: ...


class FrameSink(Protocol):
    """Where output frames go (``sinks``: virtual camera, file, window, null; a WebRTC
    frame slot)."""

    def send(self, frame: AvatarFrame) -> None: ...
    def close(self) -> None: ...


class FaceRenderer(Protocol):
    """Landmarks in -> the face square out, (R, R, 3) uint8 BGR (warp or neural)."""

    def render(self, lm: Landmarks) -> np.ndarray: ...
    def close(self) -> None: ...


class LandmarkTapLike(Protocol):
    """Renderer, compositor and sink in one (webrtc.tracks.LandmarkTap): it sends the
    driven landmarks on instead of drawing them."""

    def render(self, lm: Landmarks) -> np.ndarray: ...
    def compose(self, face: np.ndarray, seq: int, t_capture_ns: int, face_found: bool = True,
                placement: Placement | None = None) -> AvatarFrame: ...
    def send(self, frame: AvatarFrame) -> None: ...
    def close(self) -> None: ...


class Voice(Protocol):
    """Sound that follows the picture (``audio.relay.VoiceRelay``)."""

    def pump(self) -> bool: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class LiveOptions:
    """Everything a live run needs besides the person; defaults are the product's."""

    out_size: tuple[int, int] = (1280, 720)  # the virtual camera's frame
    fps: float = 30.0
    resolution: int = 384  # face crop render size; upscaled into the output frame
    background: str = "photo"  # photo | blur | plain
    frames: int | None = None  # stop after this many output frames
    pace: bool = True  # send at most fps frames a second
    track: bool = True  # False: drive from a synthetic source's ground truth
    # auto: the person's neural generator when they have one (the demo identity does),
    # else the warp renderer; neural insists on the generator; warp never uses it; bank:
    # the person's reference frames (render/bank.py), opt-in.
    renderer: str = "auto"
    backend: str = "auto"  # neural renderer's runtime: auto picks the fastest available
    precision: str = "auto"  # auto | fp32 | fp16 | int8
    label: bool = True  # the visible "AI avatar" badge; off only by explicit choice
    label_corner: str = "br"  # tl | tr | bl | br
    label_size: float = 0.045  # badge height / frame height
    # follow: the head moves with the driver about the driver's resting place, within soft
    # limits that keep it whole in the frame; fixed: it stays where the photo frames it.
    framing: str = "follow"


def demo_source(person: Person, fps: float, realtime: bool = True,
                size: int = 384) -> SyntheticSource:
    """The synthetic driver playing the motion script on the person's own face, endlessly
    (the pipeline's ``frames`` limit ends a run, however many frames it dropped)."""
    scale = size / person.crop_size
    neutral = (person.neutral * scale).astype(np.float32)
    warp = WarpRenderer(person.crop, person.neutral, resolution=size)

    def render(points: np.ndarray) -> np.ndarray:
        return warp.render(Landmarks(0, 0, points, (size, size)))

    return SyntheticSource(neutral, (size, size), fps=fps, render=render, realtime=realtime)


def open_source(camera: str | None, video: Path | None, fps: float, loop: bool,
                realtime: bool, size: tuple[int, int]) -> WebcamSource | VideoFileSource:
    if video is not None:
        return VideoFileSource(video, realtime=realtime, loop=loop)
    if camera is None:
        raise ValueError("give a camera or a video")
    device: int | str = int(camera) if camera.isdigit() else camera
    return WebcamSource(device, width=size[0], height=size[1], fps=fps)


@dataclass(frozen=True)
class Stages:
    """The stages between a source and a sink, built for one person and one set of
    options: what the live pipeline runs and what ``avatar_cam.Avatar`` calls frame by
    frame. ``tracker`` is None when the source's own landmarks drive (``track=False``)."""

    renderer: FaceRenderer
    tracker: MediaPipeTracker | None
    adapter: Adapter
    framer: Framer
    compositor: Compositor

    def close(self) -> None:
        """Close every stage, the last built first (see ``close_stages``)."""
        close_stages([self.compositor, self.framer, self.adapter, self.tracker,
                      self.renderer])


def build_stages(person: Person, opts: LiveOptions) -> Stages:
    """Every stage for ``person`` between source and sink. The renderer opens first: a
    person without the model asked for is the likeliest error, and it is reported before
    MediaPipe starts (and logs over it). Stages opened before a failure are closed."""
    renderer = open_renderer(person, opts)
    tracker: MediaPipeTracker | None = None
    try:
        tracker = tracker_for(opts)
        adapter = adapter_for(person, opts)
        layout = avatar_layout(person, opts)
        framer = framer_for(person, layout, opts)
        compositor = compositor_for(person, layout, opts)
    except BaseException:
        close_stages([tracker, renderer])
        raise
    return Stages(renderer, tracker, adapter, framer, compositor)


def build_pipeline(person: Person, source: FrameSource, sink: str | FrameSink,
                   opts: LiveOptions, on_frame: Callable[[AvatarFrame], None] | None = None,
                   voice: Voice | None = None) -> Pipeline:
    """Wire every stage for ``person`` (``build_stages``); the caller runs it and closes
    it (``close_all``, or ``LiveRun`` does both). On a failure here only the stages it
    opened are closed. ``sink``: a spec for sinks.open_sink (virtualcam, file:PATH, ...)
    or a sink object."""
    stages = build_stages(person, opts)
    try:
        if isinstance(sink, str):
            sink = open_sink(sink, opts.out_size[0], opts.out_size[1], opts.fps, person)
    except BaseException:
        stages.close()
        raise
    return Pipeline(source, stages.tracker, stages.adapter,
                    stages.renderer, stages.compositor, sink, fps=opts.fps, frames=opts.frames,
                    pace=opts.pace, on_frame=on_frame, framer=stages.framer, voice=voice)


class LiveRun:
    """One run of the live pipeline, as `avatar-cam run` runs it: ``source`` through
    every stage (``build_pipeline``) into ``sink``. It owns ``source`` and ``voice`` from
    here on: they close with the rest, also when building fails. ``run()`` blocks until
    the source ends, ``opts.frames`` were sent, ``stop()`` (from any thread) or Ctrl-C,
    then closes everything."""

    def __init__(self, person: Person, source: FrameSource, sink: str | FrameSink,
                 opts: LiveOptions, *, on_frame: Callable[[AvatarFrame], None] | None = None,
                 voice: Voice | None = None) -> None:
        self.person, self.options = person, opts
        try:
            self.pipeline = build_pipeline(person, source, sink, opts, on_frame=on_frame,
                                           voice=voice)
        except BaseException:
            close_stages([voice, source])
            raise
        self._closed = False

    @property
    def stats(self) -> Stats:
        """The run's counters and timings, live while it runs."""
        return self.pipeline.stats

    def run(self) -> Stats:
        try:
            return self.pipeline.run()
        finally:
            self.close()

    def stop(self) -> None:
        self.pipeline.stop()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            close_all(self.pipeline)

    def summary(self) -> dict[str, Any]:
        """``stats.summary()`` and what drew the frames: the renderer, its backend (name,
        precision, the candidates skipped and why) for the neural one, the resolution,
        whether MediaPipe tracked, the label (the watermark is always on)."""
        out = self.stats.summary()
        backend = getattr(self.pipeline.renderer, "backend", None)
        if backend is not None:
            out["backend"] = {"name": backend.name, "precision": backend.precision,
                              "skipped": dict(backend.skipped)}
        out.update(renderer=renderer_kind(self.person, self.options.renderer),
                   resolution=self.options.resolution, tracked=self.options.track,
                   label=self.options.label, watermark=True)
        return out

    def __enter__(self) -> LiveRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_landmark_pipeline(person: Person, source: FrameSource, tap: LandmarkTapLike,
                            opts: LiveOptions) -> Pipeline:
    """The landmark-only sender: the driven landmarks go to ``tap`` (renderer, compositor
    and sink in one: webrtc.tracks.LandmarkTap), unframed: the receiver frames them
    itself. No renderer is built."""
    tracker = tracker_for(opts)
    return Pipeline(source, tracker,
                    adapter_for(person, opts), tap, tap, tap, fps=opts.fps,
                    frames=opts.frames, pace=opts.pace)


class _Closable(Protocol):
    def close(self) -> None: ...


def close_stages(stages: list[_Closable | None]) -> None:
    """Close each stage in order (None skipped). Closing must reach every stage even if
    one fails: a failure is logged with its exception, never raised."""
    for stage in stages:
        if stage is None:
            continue
        try:
            stage.close()
        except Exception:
            log.warning("closing the %s failed", type(stage).__name__, exc_info=True)


def tracker_for(opts: LiveOptions) -> MediaPipeTracker | None:
    """The live tracker (``live_tracker``), unless the source's own landmarks drive
    (``track=False``)."""
    return live_tracker() if opts.track else None


def live_tracker() -> MediaPipeTracker:
    """MediaPipe in video mode, smoothed. A face under 40 px tall or mostly off the
    picture drives nothing: the avatar holds, then eases to rest, as when no face is found
    (counted in the stats)."""
    from .tracking import MediaPipeTracker

    return MediaPipeTracker(min_face_px=40, max_outside=0.25)


def adapter_for(person: Person, opts: LiveOptions) -> Adapter:
    """The adapter onto the person's resting face (the photo's smile or open mouth taken
    out, so the driver's expression replaces it), re-centring as the framing follows."""
    return Adapter(person.neutral, (person.crop_size, person.crop_size),
                   rest=resting_face(person.neutral),
                   recentre_s=FramingConfig().recentre_s if opts.framing == "follow" else None)


def avatar_layout(person: Person, opts: LiveOptions) -> Layout:
    """The output framed as the person's photo frames them (compose.frame_layout)."""
    return frame_layout(person.photo, person.crop_to_photo, person.crop_size, person.neutral,
                        opts.out_size, opts.background)


def framer_for(person: Person, layout: Layout, opts: LiveOptions) -> Framer:
    """The framer for ``layout``: the picture follows the head (or stays: ``fixed``)."""
    if layout.head is None:
        raise ValueError("the framer needs a layout that knows where the head is")
    return Framer(person.neutral, layout.side / person.crop_size, layout.head, opts.out_size,
                  FramingConfig(mode=opts.framing))


def renderer_kind(person: Person, requested: str) -> str:
    """Which renderer ``requested`` (auto | neural | warp | bank) means for this person
    (auto never picks bank yet)."""
    from .render.neural import has_neural

    if requested == "bank" and not (person.folder / BANK_DIR).is_dir():
        raise ModelError(f"{person.name!r} has no reference bank",
                         f"enroll from a clip: avatar-cam calibrate {person.name} --video "
                         "CLIP --consent ..., or use --renderer warp")
    if requested == "auto":
        return "neural" if has_neural(person.folder) else "warp"
    if requested == "neural" and not has_neural(person.folder):
        raise ModelError(f"{person.name!r} has no trained generator",
                         f"train one: avatar-cam calibrate {person.name} --video CLIP "
                         "--consent ..., or use --renderer warp")
    if requested not in ("neural", "warp", "bank"):
        raise ValueError(f"renderer must be auto, neural, warp or bank, got {requested!r}")
    return requested


def open_renderer(person: Person, opts: LiveOptions) -> FaceRenderer:
    """The face renderer: the neural generator (at its own resolution; the compositor
    rescales), the warp renderer, or the bank renderer (the nearest of the person's
    real reference frames warped, render/bank.py) at ``opts.resolution``."""
    kind = renderer_kind(person, opts.renderer)
    if kind == "bank":
        from .render.bank import BankRenderer

        bank = load_bank(person.folder, person.crop_size)
        if bank is None:
            raise ModelError(f"{person.name!r} has no reference bank", "use --renderer warp")
        return BankRenderer(bank, person.neutral, resolution=opts.resolution)
    if kind == "neural":
        from .backends.renderer import open_renderer as open_neural

        return open_neural(person, backend=opts.backend, precision=opts.precision)
    return WarpRenderer(person.crop, person.neutral, resolution=opts.resolution)


def label_for(opts: LiveOptions, owner: str | None = None,
              liveness: str | None = None) -> Label | None:
    """The visible badge; names the model's owner where a receiver renders someone else,
    and says so when the model's enrollment recorded that liveness was not verified
    (the longest wording that still fits a 320x240 frame)."""
    if not opts.label:
        return None
    text = "AI avatar"
    if owner:  # a peer's name is untrusted text: printable ASCII, bounded; the badge
        # itself wraps, shrinks or elides it to fit any frame (honesty.label)
        name = "".join(c for c in owner if c.isascii() and c.isprintable())[:64].strip()
        text = f"AI avatar of {name}" if name else text
    if liveness == "not verified":
        text = f"{text} (liveness not verified)"
    return Label(opts.label_corner, opts.label_size, text=text)


@dataclass(frozen=True)
class Watermark:
    """The invisible mark of one model: ``marker`` embeds it, ``payload()`` gives its
    current payload (this model's fingerprint and the current minute), the two arguments
    of ``compose.Compositor`` for it."""

    marker: Watermarker
    payload: Callable[[], int]


def watermark_for(person: Person, out_size: tuple[int, int]) -> Watermark:
    """The marker and its payload: this model's fingerprint and the current minute."""
    fingerprint = model_fingerprint(person.folder)
    marker = Watermarker(make_payload(fingerprint, minute_now()))
    marker.prepare(out_size)  # build the pattern now, not as a stall on the first frame

    def payload() -> int:
        return make_payload(fingerprint, minute_now())

    return Watermark(marker, payload)


def compositor_for(person: Person, layout: Layout, opts: LiveOptions,
                   owner: str | None = None, liveness: str | None = None) -> Compositor:
    """The compositor for ``layout``: the visible label (``label_for``: ``owner`` and
    ``liveness`` where a receiver draws someone else) and, always, the watermark."""
    mark = watermark_for(person, opts.out_size)
    return Compositor(layout, label=label_for(opts, owner, liveness), marker=mark.marker,
                      payload=mark.payload)


def close_all(pipeline: Pipeline) -> None:
    """Close every stage of a pipeline, the sink and the source last-in first-out; what a
    stage raises on closing is logged (``close_stages``), and the others still close."""
    close_stages([pipeline.voice, pipeline.sink, pipeline.compositor, pipeline.renderer,
                  pipeline.framer, pipeline.adapter, pipeline.tracker, pipeline.source])
