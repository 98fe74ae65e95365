"""The voice of a call: the local microphone out, the peer's voice in, in step with the
picture.

Out (``VoiceOut``, one per ``LocalAvatar``: the microphone is read once however many peers
listen):

- RTP peers (video mode, and browsers in either mode) get an Opus track (``MicTrack``)
  encoded once at ``opus_kbps``. The picture leaves a pipeline latency after it was
  captured, so the voice is held back by that latency, read live from the pipeline each
  chunk (``delay.DelayLine``): voice and picture leave together.
- Landmark-only peers get Opus frames stamped with their capture time in the landmark
  clock, carried in the same data-channel messages as the landmarks (``bundle``). They
  are not held back: the receiver plays each frame when the picture of the same instant
  is on screen (``VoicePlayout``).

In: ``VoiceIn`` plays an RTP voice track, held back by what the local video path adds
(decode to sink, measured live); ``VoicePlayout`` plays bundled frames on the picture's
clock. Both play into every output the call has: the speaker, and a sink that records
sound (``FileSink.play``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from ..audio.chunk import CHUNK, RATE, AudioChunk, MonoResampler
from ..audio.delay import DelayLine
from ..audio.mic import read_backlog
from ..audio.opus import OpusDecoder, OpusEncoder
from .options import workers

log = logging.getLogger(__name__)

CHUNK_MS = 1000 * CHUNK // RATE  # 20
TRACK_QUEUE = 25  # Opus packets (0.5 s) a slow peer may lag before the oldest go
PLAYOUT_MAX_MS = 1000  # bundled voice kept ahead of the picture at most
RESYNC_MS = 150  # the picture clock jumped (a new playout delay): start over from it
RELEASE_POLL_S = 0.01  # the longest the held-back voice waits before its delay is re-read
SLEW = 0.02  # of the voice clock's gap to the picture's, per 10 ms tick (~0.5 s to follow)


def outputs_of(speaker: Any, sink: Any) -> list[Any]:
    """Where the peer's voice goes: the speaker, and the sink if it records sound."""
    found = [speaker] if speaker is not None else []
    if sink is not None and callable(getattr(sink, "play", None)):
        found.append(sink)
    return found


class MicTrack(MediaStreamTrack):
    """One RTP peer's voice track: Opus packets encoded by ``VoiceOut`` (aiortc sends an
    ``av.Packet`` as it is, so the bitrate is ours)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[av.Packet | None] = asyncio.Queue()
        self.dropped = 0

    def put(self, packet: av.Packet | None) -> None:
        while self.queue.qsize() >= TRACK_QUEUE:
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(packet)

    async def recv(self) -> av.Packet:
        packet = await self.queue.get()
        if packet is None:
            self.stop()
            raise MediaStreamError
        return packet


class VoiceOut:
    """The microphone, read once and handed to every peer (see the module docstring)."""

    def __init__(self, mic: Any, opus_kbps: int, send_latency_ms: Callable[[], float],
                 landmark_clock: Callable[[], int | None] | None = None,
                 on_frame: Callable[[int, bytes], None] | None = None) -> None:
        self.mic = mic
        self.delay = DelayLine(send_latency_ms)
        self.rtp_encoder = OpusEncoder(bitrate=opus_kbps * 1000, frame_ms=CHUNK_MS)
        self.frame_encoder = OpusEncoder(bitrate=opus_kbps * 1000, frame_ms=CHUNK_MS)
        self.landmark_clock = landmark_clock  # the landmark encoder's t0 (ms), once known
        self.on_frame = on_frame  # (t_ms, opus frame) for the landmark peers
        self.tracks: set[MicTrack] = set()
        self.counts: Counter[str] = Counter()
        self._pending_t: deque[int] = deque()
        self._stopped = False

    def track(self) -> MicTrack:
        track = MicTrack()
        self.tracks.add(track)
        return track

    def drop(self, track: MicTrack) -> None:
        self.tracks.discard(track)

    def start(self, t0_ns: int | None = None) -> None:
        self.mic.start(t0_ns)

    async def run(self) -> None:
        """Read the microphone until it ends or ``stop``; the held-back sound leaves at its
        due time (``_release``), not at the next read: released at reads, a chunk left up
        to a chunk (20 ms) late, 13 ms on average (measured on loopback)."""
        release = asyncio.ensure_future(self._release())
        try:
            while not self._stopped:
                chunks: list[AudioChunk] = await workers().run(read_backlog, self.mic)
                if not chunks:
                    break
                self.counts["chunks_read"] += len(chunks)
                for chunk in chunks:
                    self._to_landmarks(chunk)
                    self.delay.push(chunk)
                self._send_due()  # a backlog that came late goes at once
            while not self._stopped and self.delay.next_due_ns() is not None:
                await asyncio.sleep(RELEASE_POLL_S)  # the microphone ended: the rest goes
        finally:
            release.cancel()
            await asyncio.gather(release, return_exceptions=True)
            for track in list(self.tracks):
                track.put(None)

    async def _release(self) -> None:
        """Hand each held-back chunk to the RTP peers when it is due (the delay is read
        live, so a wait is at most ``RELEASE_POLL_S``)."""
        while True:
            now = self._send_due()
            wait_ns = self.delay.next_due_ns()
            wait_s = RELEASE_POLL_S if wait_ns is None else (wait_ns - now) / 1e9
            await asyncio.sleep(min(max(wait_s, 0.0), RELEASE_POLL_S))

    def _send_due(self) -> int:
        """What of the held-back sound is due now to the RTP peers; returns that now."""
        now = time.monotonic_ns()
        for due in self.delay.due(now):
            self._to_rtp(due)
        return now

    def stop(self) -> None:
        self._stopped = True

    def close(self) -> None:
        self.mic.close()

    def _to_rtp(self, chunk: AudioChunk) -> None:
        if not self.tracks:
            return
        for packet in self.rtp_encoder.encode_packets(chunk.samples):
            self.counts["rtp_packets"] += 1
            for track in list(self.tracks):
                track.put(packet)

    def _to_landmarks(self, chunk: AudioChunk) -> None:
        t0 = self.landmark_clock() if self.landmark_clock is not None else None
        if self.on_frame is None or t0 is None:
            return
        self._pending_t.append(chunk.t_capture_ns // 1_000_000 - t0)
        for frame in self.frame_encoder.encode(chunk.samples):
            if not self._pending_t:
                break
            self.on_frame(self._pending_t.popleft(), frame)
            self.counts["voice_frames"] += 1


class VoiceIn:
    """A peer's RTP voice track -> the outputs, held back by what the local video path
    adds (``video_extra_ms``: decode and hand-off to the sink, measured live); the voice's
    own buffer (``rtp_buffer.VoiceJitterBuffer``) hands each packet on as it arrives on a
    clean link."""

    def __init__(self, track: MediaStreamTrack, outputs: list[Any],
                 video_extra_ms: Callable[[], float]) -> None:
        self.track = track
        self.outputs = outputs
        self.delay = DelayLine(video_extra_ms)  # (a negative delay counts as none)
        self.resample = MonoResampler()
        self.counts: Counter[str] = Counter()

    async def run(self) -> None:
        while True:
            try:
                frame = await self.track.recv()
            except MediaStreamError:
                return
            now = time.monotonic_ns()
            self.counts["frames_in"] += 1
            samples = self.resample(frame)  # type: ignore[arg-type]
            if len(samples):
                self.delay.push(AudioChunk(samples, now))
            due = self.delay.due(now)
            if due:  # one hand-off for all that is due: see ``play``
                await play(self.outputs, np.concatenate([c.samples for c in due]),
                           self.counts)


async def play(outputs: list[Any], samples: np.ndarray, counts: Counter[str]) -> None:
    """``samples`` to every output, one executor hop each: callers hand over all that is
    due at once, since one hop a 20 ms chunk played a quarter of the voice on a loaded
    machine (a hop took 40-80 ms) and dropped the rest as overflow."""
    for out in outputs:
        try:
            await workers().run(out.play, samples)
        except Exception as exc:  # a speaker that fails must not end the call
            counts["play_failed"] += 1
            if counts["play_failed"] == 1:
                log.warning("cannot play the peer's voice on %s: %s", type(out).__name__, exc)
    counts["samples_played"] += len(samples)


class VoicePlayout:
    """Bundled voice frames -> the outputs, on the picture's clock: the frame captured at
    sender time ``t`` plays when the picture of ``t`` reaches the sink (``shown``).

    The picture's clock jitters (its jitter buffer extrapolates, holds, adapts its delay),
    sound must not: the voice runs on a steady clock, ``local ms - offset``, whose offset
    follows the picture's by a slew (``SLEW`` a tick) and jumps only when they are more
    than ``RESYNC_MS`` apart (a new playout delay)."""

    def __init__(self, outputs: list[Any]) -> None:
        self.outputs = outputs
        self.decoder = OpusDecoder()
        self.frames: dict[int, bytes] = {}  # sender t_ms -> Opus frame
        self.counts: Counter[str] = Counter()
        self._picture: float | None = None  # local ms - sender ms of the last frame shown
        self.offset: float | None = None  # the voice's own
        self._next: int | None = None  # sender ms of the next frame to play
        self._stopped = False

    def add(self, t_ms: int, frame: bytes) -> None:
        """A frame from a bundle (event loop)."""
        if self._next is not None and t_ms < self._next - CHUNK_MS // 2:
            self.counts["voice_late"] += 1
            return
        if len(self.frames) * CHUNK_MS >= PLAYOUT_MAX_MS:
            del self.frames[min(self.frames)]
            self.counts["voice_overflow"] += 1
        self.frames[t_ms] = frame

    def shown(self, t_sender_ms: float, now_ns: int) -> None:
        """The picture of sender time ``t_sender_ms`` reached the sink at ``now_ns`` (called
        from the receiving pipeline's sink thread: one float assignment)."""
        if np.isfinite(t_sender_ms):
            self._picture = now_ns / 1e6 - float(t_sender_ms)

    def on_clock_ms(self, now_ns: int) -> float | None:
        """The sender instant the voice plays now; follows the picture (see the class)."""
        picture = self._picture
        if picture is None:
            return None
        if self.offset is None or abs(picture - self.offset) > RESYNC_MS:
            if self.offset is not None:
                self.counts["voice_resync"] += 1
                self._next = None
            self.offset = picture
        else:
            self.offset += SLEW * (picture - self.offset)
        return now_ns / 1e6 - self.offset

    async def run(self) -> None:
        while not self._stopped:
            await asyncio.sleep(CHUNK_MS / 2000)
            now = self.on_clock_ms(time.monotonic_ns())
            if now is None or not self.frames and self._next is None:
                continue
            if self._next is None:
                later = [t for t in self.frames if t >= now - CHUNK_MS]
                if not later:
                    continue
                self._next = min(later)
                for t in [t for t in self.frames if t < self._next]:
                    del self.frames[t]
            due: list[np.ndarray] = []
            while self._next is not None and self._next <= now:
                due.append(self._next_samples())
            if due:  # one hand-off for all that is due: see ``play``
                await play(self.outputs, np.concatenate(due), self.counts)

    def _next_samples(self) -> np.ndarray:
        """The frame of the instant ``_next`` decoded (concealed if it is missing), and
        ``_next`` on by a frame."""
        assert self._next is not None
        key = next((t for t in self.frames if abs(t - self._next) <= CHUNK_MS // 2), None)
        if key is None:
            samples = self.decoder.conceal(CHUNK)
            self.counts["voice_concealed"] += 1
        else:
            try:
                samples = self.decoder.decode(self.frames.pop(key))
            except ValueError:
                samples = self.decoder.conceal(CHUNK)
                self.counts["voice_undecodable"] += 1
        self._next += CHUNK_MS
        return samples

    def stop(self) -> None:
        self._stopped = True

