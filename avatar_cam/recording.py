"""An mp4 recording written with PyAV: the picture as H.264 (MPEG-4 Part 2 where the
wheel has no libx264, or the size is odd) and, once sound is handed over too, AAC
beside it (the pair every browser and VLC plays).

Both streams share one timeline: the instant each item was handed over
(``time.monotonic_ns()``), from the first hand-off of either kind, so a call recording
shows the sync the user got.

- Picture: each frame at its hand-off time, so a live feed that drops, stalls or runs
  a little fast (a receiver's decoder gets ~31.7 fps from a 30 fps sender here) keeps
  each frame where it was shown, and a 60 s call stays 60 s long with its sound. A feed
  over ``RENDERING`` times faster than real time since its first frame (a clip rendered
  offline) is written one frame a period instead, as a constant-rate file.
- Sound: a chunk handed over at ``t`` is due at sample ``(t - origin) * 48 kHz``. The
  file plays it as a speaker would: right after the chunk before, queued behind it when
  handed over early (chunks come in bursts), and after silence when the gap since the
  last one's end is over ``SNAP_MS`` (smaller gaps are closed, not clicked). A chunk
  queued over ``AHEAD_MS`` behind its time loses its leading samples (a speaker whose
  latency is bounded). So the file holds each chunk from ``SNAP_MS`` before to
  ``AHEAD_MS`` after it was played, typically within the hand-offs' jitter; gaps and
  drops are counted in ``counts``.

The sound goes to a side file while recording: the mp4 muxer wants every stream before
its first packet, and whether the peer talks is not known at the first frame. ``close``
copies both (no re-encoding) into the mp4. Without sound the mp4 is written in place.
Nothing here starts a thread; the encoders run single-threaded in the caller's thread.
"""

from __future__ import annotations

import contextlib
import heapq
import threading
from collections import Counter
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import cv2
import numpy as np
from av.video.stream import VideoStream

from .audio.chunk import RATE, check_samples

RENDERING = 2.0  # a feed this many times faster than real time is rendered, not shown
TICKS = 90_000  # picture timestamps per second (the MPEG clock: 3000 a frame at 30 fps)
# A gap in the sound longer than this is kept as silence, a shorter one closed up. At
# 20 ms, hand-offs a little late on a loaded call left silences that what came on time
# then queued behind: the file's sound ran 19 ms later than played (60 s loopback lip
# sync p50 +50 ms against +31); at 40, the same as AHEAD_MS, +1, +6, +8 and +20 in four
# runs, though in a landmark-only run the file's sound came 11 ms before it was played.
SNAP_MS = 40.0
# Sound queued this far behind its hand-off time is dropped. At 100 ms every hand-off a
# little late ratcheted the file's sound later for good (each gap is silence, and what
# came on time after it queued behind): a 60 s loopback call's file had the sound 55 ms
# later than it was played (lip sync p50 +80 ms against +26 as played); at 40 ms, +4
# (with SNAP_MS at 20).
AHEAD_MS = 40.0
AAC_BITRATE = 96_000  # mono voice
WRITE_ERRORS = (OSError, av.error.FFmpegError)  # what writing a file can raise
BT601, LIMITED = 5, 1  # FFmpeg's AVCOL_SPC_BT470BG and AVCOL_RANGE_MPEG
X264 = {"preset": "veryfast", "crf": "18"}  # visually lossless: the watermark survives


def video_codec(width: int, height: int) -> str:
    """libx264 where the PyAV wheel has it and 4:2:0 can hold the size, else mpeg4."""
    if "libx264" in av.codecs_available and width % 2 == 0 and height % 2 == 0:
        return "libx264"
    return "mpeg4"


class Timeline:
    """Hand-off instants (ns) -> picture ticks and sound samples (see the module doc)."""

    def __init__(self, fps: float) -> None:
        self.period_ns = 1e9 / fps
        self.origin: int | None = None
        self._v0: float | None = None
        self._frames = 0
        self._last = -1

    def _since(self, t_ns: int) -> int:
        if self.origin is None:
            self.origin = t_ns
        return t_ns - self.origin

    def frame_ticks(self, t_ns: int) -> int:
        wall = float(self._since(t_ns))
        if self._v0 is None:
            self._v0 = wall
        slot = self._v0 + self._frames * self.period_ns
        rendering = self._frames * self.period_ns > RENDERING * (wall - self._v0)
        ticks = max(round((slot if rendering else wall) * TICKS / 1e9), self._last + 1)
        self._frames += 1
        self._last = ticks
        return ticks

    def sound_sample(self, t_ns: int) -> int:
        return round(self._since(t_ns) * RATE / 1e9)


class _Sound:
    """The side file: AAC in mp4, fed 1024-sample frames on a seamless sample count."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.out = av.open(str(path), "w", format="mp4")
        self.stream = self.out.add_stream("aac", rate=RATE, layout="mono")
        self.stream.bit_rate = AAC_BITRATE
        self.stream.codec_context.thread_count = 1
        self.written = 0  # samples given to the encoder
        self.pending = np.zeros(0, np.int16)

    @property
    def cursor(self) -> int:
        return self.written + len(self.pending)

    def add(self, samples: np.ndarray) -> None:
        self.pending = np.concatenate([self.pending, samples])
        while len(self.pending) >= 1024:
            self._encode(self.pending[:1024])
            self.pending = self.pending[1024:]

    def add_silence(self, n: int) -> None:
        """``n`` zero samples, a block at a time (a long silent stretch is not held at once)."""
        while n > 0:
            step = min(n, 1024 * 64)
            self.add(np.zeros(step, np.int16))
            n -= step

    def _encode(self, block: np.ndarray) -> None:
        frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self.written
        frame.time_base = Fraction(1, RATE)
        self.written += len(block)
        for packet in self.stream.encode(frame):
            self.out.mux(packet)

    def close(self) -> None:
        if len(self.pending):
            self._encode(self.pending)
            self.pending = np.zeros(0, np.int16)
        for packet in self.stream.encode(None):
            self.out.mux(packet)
        self.out.close()


def _packets(container: av.container.InputContainer, stream: av.stream.Stream,
             out: av.stream.Stream) -> Iterator[av.Packet]:
    for packet in container.demux(stream):
        if packet.dts is None:  # the demuxer's end-of-stream marker
            continue
        packet.stream = out
        yield packet


def _seconds(packet: av.Packet) -> float:
    return float((packet.dts or 0) * (packet.time_base or 0))


def mux_with_sound(video: Path, sound: Path, out: Path) -> None:
    """Copy ``video``'s picture and ``sound``'s audio into one mp4 ``out``, interleaved
    by time, index first (a browser can start playing before it has the whole file)."""
    with av.open(str(video)) as vin, av.open(str(sound)) as ain, \
            av.open(str(out), "w", format="mp4", options={"movflags": "+faststart"}) as dst:
        vs = dst.add_stream_from_template(vin.streams.video[0])
        aus = dst.add_stream_from_template(ain.streams.audio[0])
        merged = heapq.merge(_packets(vin, vin.streams.video[0], vs),
                             _packets(ain, ain.streams.audio[0], aus),
                             key=_seconds)
        for packet in merged:
            dst.mux(packet)


class Recording:
    """One mp4 being written: ``frame`` and ``sound`` from any thread (one lock), then
    ``close`` once. Opening raises OSError or av's FFmpegError when the file cannot be
    written (the caller words it)."""

    def __init__(self, path: Path, width: int, height: int, fps: float) -> None:
        self.path = path
        self.codec = video_codec(width, height)
        self.timeline = Timeline(fps)
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._period = round(TICKS / fps)
        self._sound: _Sound | None = None
        self._sound_path = path.with_name(f".{path.name}.sound.mp4")
        self._out = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        try:
            self._video = cast(VideoStream, self._out.add_stream(
                self.codec, rate=Fraction(fps).limit_denominator(1001),
                options=X264 if self.codec == "libx264" else {}))
            self._video.width, self._video.height = width, height
            self._video.pix_fmt = "yuv420p"
            self._video.codec_context.colorspace = BT601  # what _yuv converts with
            self._video.codec_context.color_range = LIMITED
            self._video.time_base = Fraction(1, TICKS)
            self._video.codec_context.time_base = Fraction(1, TICKS)  # timestamps, not slots
            self._video.codec_context.thread_count = 1
            if self.codec == "mpeg4":
                self._video.bit_rate = 4_000_000
            self._out.start_encoding()  # opens the file: an unwritable path fails here
        except BaseException:
            self._out.close()
            raise
        self._even = width % 2 == 0 and height % 2 == 0
        self._closed = False

    def frame(self, image: np.ndarray, t_ns: int) -> None:
        """One (H, W, 3) uint8 BGR picture, checked by the caller."""
        with self._lock:
            if self._closed:
                self.counts["frames_after_close"] += 1
                return
            frame = self._yuv(image)
            frame.pts = self.timeline.frame_ticks(t_ns)
            frame.time_base = Fraction(1, TICKS)
            self._mux_video(self._video.encode(frame))

    def _yuv(self, image: np.ndarray) -> av.VideoFrame:
        if self._even:  # OpenCV rounds BT.601 correctly; swscale's default is 3 levels off
            yuv: np.ndarray = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420).astype(np.uint8)
            return av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")

    def _mux_video(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            # The muxer times each frame by the next one's start; the last frame needs its
            # own length (the encoder's flush reports one in another clock).
            packet.duration = self._period
            packet.time_base = Fraction(1, TICKS)
            self._out.mux(packet)

    def sound(self, samples: object, t_ns: int) -> None:
        """(n,) int16 mono 48 kHz samples played at ``t_ns``: ValueError if they are not;
        a chunk after ``close`` is counted and dropped, one off its time placed as the
        module docstring says."""
        samples = check_samples(samples)
        with self._lock:
            if self._closed:
                self.counts["sound_after_close"] += 1
                return
            if not len(samples):
                return
            due = self.timeline.sound_sample(t_ns)
            if self._sound is None:
                self._sound = _Sound(self._sound_path)
            cursor = self._sound.cursor
            off_ms = (due - cursor) * 1000 / RATE
            if off_ms > SNAP_MS or (cursor == 0 and due > 0):
                if cursor:
                    self.counts["sound_gaps"] += 1
                self._sound.add_silence(due - cursor)
            elif cursor == 0 and due < 0:  # played before the recording began
                skip = min(-due, len(samples))
                self.counts["sound_samples_before_start"] += skip
                samples = samples[skip:]
            elif off_ms < -AHEAD_MS:
                skip = min(cursor - due, len(samples))
                self.counts["sound_samples_dropped"] += skip
                samples = samples[skip:]
            self._sound.add(samples)
            self.counts["sound_samples"] += len(samples)

    @property
    def has_sound(self) -> bool:
        return self._sound is not None

    def close(self) -> None:
        """Finish the file (with its sound, if any came); idempotent. The side file is
        removed once copied; if copying fails, OSError or FFmpegError, and the picture-only
        mp4 and the side file both stay for the user."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._mux_video(self._video.encode(None))
            finally:
                self._out.close()  # writes the index; without it the mp4 is unreadable
            if self._sound is None:
                return
            self._sound.close()
            joined = self.path.with_name(f".{self.path.name}.joined.mp4")
            try:
                mux_with_sound(self.path, self._sound_path, joined)
                joined.replace(self.path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    joined.unlink()
            self._sound_path.unlink()
