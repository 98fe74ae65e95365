"""The local avatar: the live pipeline run once, feeding every connected peer.

Frames go through a ``FrameSlot`` to one video track per peer; in landmark-only mode
the pipeline ends in a ``LandmarkTap`` whose packets are broadcast on each peer's
unordered, no-retransmit channel (dropped, never queued, on a congested one), gathered
``bundle_frames`` at a time into one message with the voice frames of that time
(``bundle``). The microphone, if any, is read once too (``voice.VoiceOut``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING, Any

from aiortc import RTCDataChannel

from ..person import Person
from ..pipeline import Pipeline, median_ms
from ..types import AvatarFrame
from .basis import BASIS_FILE, ExpressionBasis
from .bundle import Bundler
from .codec import LandmarkEncoder
from .model_share import Outgoing
from .options import PeerOptions, workers
from .tracks import AvatarVideoTrack, FrameSlot, LandmarkTap
from .voice import VoiceOut

if TYPE_CHECKING:
    from ..live import FrameSource, LiveOptions

MAX_LANDMARK_BACKLOG = 4096  # bytes queued on a channel beyond which packets are stale
# Voice leaves this much after a paced picture's due time. Measured on loopback, a chunk
# then sounds about 28 ms after it left (Opus encode, framing and decode at the peer)
# while the picture shows 3-5 ms after it left (VP8 at 320x240; more for larger frames
# on a busy machine): the sound comes about 30 ms after the lips, where a frame readied
# later than the hold (shown up to a frame late) still leaves it in the target (-30 /
# +60 ms; ITU-R BT.1359 puts detectability at about +45 / -125). At 25 ms the sound came
# about 50 ms after the lips.
VOICE_AFTER_MS = 5.0


class LocalAvatar:
    """The local avatar, produced once by the live pipeline and shared by every peer."""

    def __init__(self, person: Person, source: FrameSource, live_opts: LiveOptions,
                 opts: PeerOptions, basis: ExpressionBasis | None = None, mic: Any = None) -> None:
        from .. import live

        self.person = person
        self.opts = opts
        self.loop = asyncio.get_running_loop()
        self.size: tuple[int, int] = live_opts.out_size  # (w, h) of the frames it makes
        self.channels: set[RTCDataChannel] = set()  # plain packets, one a frame (browsers)
        self.bundle_channels: set[RTCDataChannel] = set()  # bundles with voice (avatar-cam)
        self.counts: Counter[str] = Counter()
        self.slot: FrameSlot | None = None
        self.basis: ExpressionBasis | None = None
        self.encoder: LandmarkEncoder | None = None
        if opts.landmarks_only:  # the tap takes the renderer's place: no generator is built
            from .enroll import basis_for

            self.basis = basis or basis_for(person.neutral, person.crop_size, person.folder)
            self.encoder = LandmarkEncoder(self.basis, key_every=opts.key_every)
            tap = LandmarkTap(self.encoder, self._on_packet)
            tap.first_capture = self._on_first_frame
            self.pipeline: Pipeline = live.build_landmark_pipeline(person, source, tap,
                                                                   live_opts)
        else:
            # With voice, frames leave at one steady latency (lip sync); without, at once.
            self.slot = FrameSlot(self.loop, stamp_frames=opts.stamp, pace=mic is not None)
            self.slot.first_capture = self._on_first_frame
            self.pipeline = live.build_pipeline(person, source, self.slot, live_opts)
        self.sent_ns: dict[int, int] = {}  # landmark t_ms -> capture ns (last 4096)
        self.bundler = Bundler(opts.bundle_frames) if opts.landmarks_only else None
        self.video_tracks: set[AvatarVideoTrack] = set()
        self.voice: VoiceOut | None = None
        if mic is not None:
            self.voice = VoiceOut(mic, opts.voice_kbps, self.send_latency_ms,
                                  self._landmark_t0, self._on_voice_frame)
        self._first: asyncio.Future[int] = self.loop.create_future()

    async def run(self) -> None:
        """Run the pipeline in a worker thread until it ends or ``stop()``."""
        from .. import live

        voice = asyncio.ensure_future(self._run_voice()) if self.voice is not None else None
        try:
            await workers().run(self.pipeline.run)
        finally:
            live.close_all(self.pipeline)
            if voice is not None:
                self.voice.stop()  # type: ignore[union-attr]
                voice.cancel()
                await asyncio.gather(voice, return_exceptions=True)
                self.voice.close()  # type: ignore[union-attr]

    async def _run_voice(self) -> None:
        """The microphone from the first frame's capture on: a microphone file's sample 0
        is that instant, so a clip and its sound file stay paired."""
        assert self.voice is not None
        t0 = await self._first
        await workers().run(self.voice.start, t0)
        await self.voice.run()

    def _on_first_frame(self, frame: AvatarFrame) -> None:
        # Frame n of a paced source was captured n periods after frame 0.
        t0 = frame.t_capture_ns - int(frame.seq * 1e9 / self.opts.fps)
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._set_first, t0)

    def _set_first(self, t0: int) -> None:
        if not self._first.done():
            self._first.set_result(t0)

    def stop(self) -> None:
        self.pipeline.stop()

    def video_track(self) -> AvatarVideoTrack:
        """A new peer's video track of the shared frame slot."""
        assert self.slot is not None
        track = AvatarVideoTrack(self.slot, self.opts.fps, self.size)
        self.video_tracks.add(track)
        return track

    def send_latency_ms(self) -> float:
        """How long after its capture the voice leaves. Paced: the slot's hold (each frame
        is due then, so voice and picture move together when it changes), plus
        ``VOICE_AFTER_MS``. Unpaced: capture to
        the video encoder (median of the tracks' last frames), or the pipeline's latency
        (landmarks)."""
        if self.slot is not None and self.slot.pace and self.slot.steady.measured:
            return self.slot.hold_ms() + VOICE_AFTER_MS
        recent = [x for track in list(self.video_tracks) for x in track.latencies_ms]
        return median_ms(recent) if recent else self.latency_p50_ms()

    def _landmark_t0(self) -> int | None:
        return self.encoder.t0_ms if self.encoder is not None else None

    def _on_voice_frame(self, t_ms: int, frame: bytes) -> None:
        if self.bundler is not None:
            self.bundler.add_audio(t_ms, frame)

    def _on_packet(self, packet: bytes, t_capture_ns: int) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._broadcast, packet, t_capture_ns)

    def _broadcast(self, packet: bytes, t_capture_ns: int) -> None:
        if self.encoder is not None and self.encoder.t0_ms is not None:
            self.sent_ns[t_capture_ns // 1_000_000 - self.encoder.t0_ms] = t_capture_ns
            if len(self.sent_ns) > 4096:
                del self.sent_ns[next(iter(self.sent_ns))]
        self._send(self.channels, packet)
        if self.bundler is not None:
            bundle = self.bundler.add_landmarks(packet)
            if bundle is not None:
                self._send(self.bundle_channels, bundle)

    def _send(self, channels: set[RTCDataChannel], message: bytes) -> None:
        for channel in list(channels):
            if channel.readyState != "open":
                continue
            if channel.bufferedAmount > MAX_LANDMARK_BACKLOG:
                self.counts["packets_stale"] += 1  # a congested link: drop, never queue
                continue
            channel.send(message)
            self.counts["packets_sent"] += 1
            self.counts["bytes_sent"] += len(message)

    def bundles(self) -> list[Outgoing]:
        """What crosses the model channel: the basis always, the model if shared."""
        if self.basis is None:
            return []
        out = [Outgoing("basis", self.person.name, {BASIS_FILE: self.basis.to_bytes()})]
        if self.opts.share_model:
            out.append(Outgoing.from_folder("model", self.person.name, self.person.folder))
        return out

    def latency_p50_ms(self) -> float:
        return self.pipeline.stats.recent_latency_ms()
