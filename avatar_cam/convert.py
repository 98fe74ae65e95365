"""`avatar-cam convert --person P INPUT OUTPUT`: every frame of a video file through the
live pipeline, as fast as the machine allows, into an mp4 with the input's sound.

- Every frame: ``Lockstep`` reads frame n+1 only once the sink took output n, so the
  pipeline's one-slot mailboxes (newest item kept, the rest dropped) never drop one.
  The stages are `run`'s (live.build_pipeline): every frame has the visible label and
  the watermark, and the file gets its C2PA manifest.
- Media time: frame n is stamped n / fps (the input's rate) after frame 0, so the
  tracker's smoothing, the adapter's hold-and-ease, the framer and the file's
  timestamps follow the input however fast or slow the machine renders.
- Sound: the input's first audio stream, converted as every decoder here is
  (audio.chunk.MonoResampler: mono 48 kHz), placed by its start against the video's,
  handed to the recording (recording.Recording: AAC) after each frame up to that
  frame's end: memory stays bounded and the sound stops where the picture does.
- Progress: a bar on a terminal (frames done / total, fps, ETA), then a summary line.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .argtypes import float_in, size_in
from .errors import SinkError, VideoError
from .pipeline import SourceEndedError
from .sinks import Sink
from .types import AvatarFrame, Frame

log = logging.getLogger("avatar_cam")
RATE = 48000  # audio.chunk.RATE, the recordings' sound (not imported: it loads PyAV)


def add_parser(sub: Any) -> None:
    """Add `convert` to an argparse subparsers object (cli.py calls it)."""
    p = sub.add_parser("convert", help="render every frame of a video file as an enrolled "
                                       "person, keeping its sound, into an mp4")
    p.add_argument("input", type=Path, metavar="INPUT", help="video file to convert")
    p.add_argument("output", type=Path, metavar="OUTPUT", help="mp4 file to write")
    p.add_argument("--person", required=True, help="name given to `avatar-cam calibrate`")
    p.add_argument("--size", type=size_in((16, 16), (7680, 4320)), default=(1280, 720),
                   help="output size (1280x720); the frame rate is the input's")
    for flag, choices in (("--background", ("photo", "blur", "plain")),
                          ("--framing", ("follow", "fixed")),
                          ("--renderer", ("auto", "neural", "warp"))):
        p.add_argument(flag, choices=choices, default=choices[0],
                       help=f"as for `run` ({choices[0]})")
    p.add_argument("--resolution", type=int, default=384, choices=(256, 384, 512),
                   help="face render resolution (384)")
    from .backends.runtime import GROUPS  # light: no torch or onnxruntime import

    p.add_argument("--backend", default="auto", choices=sorted(GROUPS),
                   help="neural renderer's runtime (auto)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "int8"),
                   help="neural renderer's precision (auto)")
    p.add_argument("--label-corner", choices=("tl", "tr", "bl", "br"), default="br",
                   help="corner of the visible 'AI avatar' label (br)")
    p.add_argument("--label-size", type=float_in(0.02, 0.25, "label size"), default=0.045,
                   help="label height as a fraction of the frame height (0.045)")


def media_ns(n: int, fps: float) -> int:
    """Frame ``n``'s time after frame 0 at ``fps``, in ns."""
    return round(n * 1e9 / fps)


class Lockstep:
    """A video file read one frame at a time: ``read`` waits until ``done`` says the
    previous frame was taken (or ``close``); frames are stamped on media time."""

    def __init__(self, video: Any) -> None:
        self._video = video  # a capture.VideoFileSource, not paced
        self.fps: float = video.fps
        self.frames = 0  # read so far
        self.ended = False  # the file's end was reached
        self._origin = time.monotonic_ns()
        self._go = threading.Semaphore(1)
        self._closed = False

    def read(self) -> Frame:
        while not self._go.acquire(timeout=0.1):
            if self._closed:
                raise SourceEndedError("stopped")
        try:
            image = self._video.read().image
        except SourceEndedError:
            self.ended = True
            raise
        n, self.frames = self.frames, self.frames + 1
        return Frame(n, self._origin + media_ns(n, self.fps), image)

    def done(self) -> None:
        self._go.release()

    def close(self) -> None:
        self._closed = True
        self._video.close()


class InputSound:
    """A file's first audio stream as (n,) int16 mono 48 kHz on its video's clock
    (sample 0 at the first frame). A decoding error ends it (``problem`` says why)."""

    def __init__(self, container: Any) -> None:
        import av

        from .audio.chunk import MonoResampler

        self._container, self._errors = container, (av.error.FFmpegError, ValueError)
        video = container.streams.video
        start = video[0].start_time if video and video[0].time_base else None
        self._v0 = 0.0 if start is None else float(start * video[0].time_base)
        self._frames: Any = container.decode(container.streams.audio[0])
        self._resample = MonoResampler()
        self._pending = np.zeros(0, np.int16)
        self._at: int | None = None  # the sample index of _pending[0]
        self.problem: str | None = None  # why the sound ended early, if it did

    @staticmethod
    def open(path: Path) -> InputSound | None:
        """The file's sound, or None when it has none (or PyAV cannot open it)."""
        import av

        try:
            container = av.open(str(path))
        except (av.error.FFmpegError, OSError) as exc:
            log.warning("%s: its sound cannot be read (%s)", path, exc)
            return None
        if container.streams.audio:
            return InputSound(container)
        container.close()
        return None

    def _refill(self) -> bool:
        if self._frames is None:
            return False
        try:
            for frame in self._frames:
                samples = self._resample(frame)
                if self._at is None:
                    self._at = round(((frame.time or 0.0) - self._v0) * RATE)
                if len(samples):
                    self._pending = samples
                    return True
            samples = self._resample(None)  # the resampler's tail
        except self._errors as exc:
            self.problem, samples = str(exc), np.zeros(0, np.int16)
        self._frames, self._pending = None, samples
        return bool(len(samples))

    def feed(self, sound: Callable[[np.ndarray, int], None], until_ns: int) -> None:
        """Hand ``sound(samples, t_ns)`` everything before ``until_ns`` on the video's
        clock (sound before the video's start is skipped)."""
        want = round(until_ns * RATE / 1e9)
        while True:
            if not len(self._pending) and not self._refill():
                return
            assert self._at is not None
            if self._at < 0:  # before the first frame
                skip = min(-self._at, len(self._pending))
                self._pending, self._at = self._pending[skip:], self._at + skip
                continue
            if self._at >= want:
                return
            take = min(len(self._pending), want - self._at)
            sound(self._pending[:take], media_ns(self._at, RATE))
            self._pending, self._at = self._pending[take:], self._at + take

    def close(self) -> None:
        self._container.close()


class ConvertSink(Sink):
    """The output mp4: frame n at n / fps, the input's sound beside it, signed on close.
    ``taken`` is called as each frame arrives (Lockstep.done: the next may start)."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float,
                 sound: InputSound | None, person: Any, taken: Callable[[], None]) -> None:
        from .honesty.c2pa_manifest import provenance_of
        from .recording import WRITE_ERRORS, Recording

        super().__init__(size)
        self.path, self.fps, self.sound, self._taken = path, fps, sound, taken
        self.provenance, self._write_errors = provenance_of(person), WRITE_ERRORS
        try:
            self.recording = Recording(path, size[0], size[1], fps)
        except WRITE_ERRORS as exc:
            raise SinkError(f"cannot write video file {path} ({exc})",
                            "check the folder is writable and has room") from None

    def _write(self, image: np.ndarray) -> None:
        self._taken()
        n = self.frames_sent
        try:
            self.recording.frame(image, media_ns(n, self.fps))
            if self.sound is not None:
                self.sound.feed(self.recording.sound, media_ns(n + 1, self.fps))
        except self._write_errors as exc:  # a full disk, a vanished folder
            raise SinkError(f"cannot write {self.path} after {n} frames ({exc})",
                            "check the disk has room; the frames so far are kept") from None

    def close(self) -> None:
        from .honesty.c2pa_manifest import ManifestError, sign_recording
        from .recording import WRITE_ERRORS

        if self._closed:
            return
        super().close()
        try:
            if self.sound is not None:
                self.sound.close()
            self.recording.close()
        except WRITE_ERRORS as exc:
            log.error("%s: its sound could not be added (%s); the picture is intact",
                      self.path, exc)
        if self.frames_sent:
            try:
                sign_recording(self.path, self.provenance)
            except ManifestError as exc:
                log.error("%s", exc)
        else:
            self.path.unlink(missing_ok=True)  # no frames: no file


def _check_paths(src: Path, out: Path) -> None:
    if not src.is_file():
        raise VideoError(f"input video {src} not found", "check the path")
    if out.suffix.lower() != ".mp4":
        raise SinkError(f"cannot write {out}: the output must be an .mp4 file",
                        "give a name ending in .mp4")
    if out.resolve() == src.resolve():
        raise SinkError(f"{out} is the input itself", "write the output to another file")
    folder = out.parent
    if not folder.is_dir():
        raise SinkError(f"cannot write {out}: folder {folder} does not exist",
                        "create the folder first or pick another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SinkError(f"cannot write {out}: folder {folder} is not writable",
                        "pick a folder you may write to")


def _frame_count(path: Path) -> int | None:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    return n if n > 0 else None


def convert_main(args: argparse.Namespace) -> int:
    """`avatar-cam convert`: 0 when every frame was written, 130 when interrupted."""
    from tqdm import tqdm

    from . import live
    from .capture import VideoFileSource
    from .person import load_person

    src, out = Path(args.input), Path(args.output)
    _check_paths(src, out)
    person = load_person(args.person)
    video = VideoFileSource(src, realtime=False)
    source = Lockstep(video)
    total = _frame_count(src)
    opts = live.LiveOptions(out_size=args.size, fps=source.fps, resolution=args.resolution,
                            background=args.background, frames=None, pace=False,
                            renderer=args.renderer, backend=args.backend,
                            precision=args.precision, label=True,
                            label_corner=args.label_corner, label_size=args.label_size,
                            framing=args.framing)
    sound: InputSound | None = None
    sink: ConvertSink | None = None

    def on_frame(_frame: AvatarFrame) -> None:
        bar.update(1)

    try:
        sound = InputSound.open(src)
        sink = ConvertSink(out, args.size, source.fps, sound, person, source.done)
        pipeline = live.build_pipeline(person, source, sink, opts, on_frame=on_frame)
    except BaseException:
        if sink is not None:
            sink.close()
        elif sound is not None:
            sound.close()
        source.close()
        raise
    bar = tqdm(total=total, desc=f"{args.person} <- {src.name}", unit="frame",
               file=sys.stderr, disable=None, dynamic_ncols=True)  # None: a terminal only
    t0 = time.perf_counter()
    try:
        stats = pipeline.run()
    finally:
        bar.close()
        live.close_all(pipeline)
    took = time.perf_counter() - t0
    if sound is None:
        heard = "no sound in the input"
    else:
        heard = f"its sound, cut short: {sound.problem}" if sound.problem else "its sound"
    log.info("%s: %d frames of %s at %.5g fps (%s), in %.1f s (%.1f frames/s), "
             "%d without a face", out, sink.frames_sent, src, source.fps, heard, took,
             sink.frames_sent / took if took > 0 else 0.0, stats.no_face)
    if not source.ended:
        log.warning("stopped after %d of %s frames: %s holds those", sink.frames_sent,
                    total or "?", out)
        return 130
    if source.frames != sink.frames_sent:  # lockstep makes this a bug, not a load
        log.error("%d frames were read but %d written", source.frames, sink.frames_sent)
        return 1
    return 0
