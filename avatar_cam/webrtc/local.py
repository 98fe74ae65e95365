"""The local avatar: the live pipeline run once, feeding every connected peer.

Frames go through a ``FrameSlot`` to one video track per peer; in landmark-only mode
the pipeline ends in a ``LandmarkTap`` whose packets are broadcast on each peer's
unordered, no-retransmit channel (dropped, never queued, on a congested one).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from aiortc import RTCDataChannel

from ..person import Person
from ..pipeline import Pipeline
from .basis import BASIS_FILE, ExpressionBasis
from .codec import LandmarkEncoder
from .model_share import Outgoing
from .options import PeerOptions, workers
from .tracks import FrameSlot, LandmarkTap

MAX_LANDMARK_BACKLOG = 4096  # bytes queued on a channel beyond which packets are stale


class LocalAvatar:
    """The local avatar, produced once by the live pipeline and shared by every peer."""

    def __init__(self, person: Person, source: object, live_opts: Any, opts: PeerOptions,
                 basis: ExpressionBasis | None = None) -> None:
        from .. import live

        self.person = person
        self.opts = opts
        self.loop = asyncio.get_running_loop()
        self.size: tuple[int, int] = live_opts.out_size  # (w, h) of the frames it makes
        self.channels: set[RTCDataChannel] = set()
        self.counts: Counter[str] = Counter()
        self.slot: FrameSlot | None = None
        self.basis: ExpressionBasis | None = None
        self.encoder: LandmarkEncoder | None = None
        if opts.landmarks_only:  # the tap takes the renderer's place: no generator is built
            from .enroll import basis_for

            self.basis = basis or basis_for(person.neutral, person.crop_size, person.folder)
            self.encoder = LandmarkEncoder(self.basis, key_every=opts.key_every)
            tap = LandmarkTap(self.encoder, self._on_packet)
            self.pipeline: Pipeline = live.build_landmark_pipeline(person, source, tap,
                                                                   live_opts)
        else:
            self.slot = FrameSlot(self.loop, stamp_frames=opts.stamp)
            self.pipeline = live.build_pipeline(person, source, self.slot, live_opts)
        self.sent_ns: dict[int, int] = {}  # landmark t_ms -> capture ns (last 4096)

    async def run(self) -> None:
        """Run the pipeline in a worker thread until it ends or ``stop()``."""
        from .. import live

        try:
            await workers().run(self.pipeline.run)
        finally:
            live.close_all(self.pipeline)

    def stop(self) -> None:
        self.pipeline.stop()

    def _on_packet(self, packet: bytes, t_capture_ns: int) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._broadcast, packet, t_capture_ns)

    def _broadcast(self, packet: bytes, t_capture_ns: int) -> None:
        if self.encoder is not None and self.encoder.t0_ms is not None:
            self.sent_ns[t_capture_ns // 1_000_000 - self.encoder.t0_ms] = t_capture_ns
            if len(self.sent_ns) > 4096:
                del self.sent_ns[next(iter(self.sent_ns))]
        for channel in list(self.channels):
            if channel.readyState != "open":
                continue
            if channel.bufferedAmount > MAX_LANDMARK_BACKLOG:
                self.counts["packets_stale"] += 1  # a congested link: drop, never queue
                continue
            channel.send(packet)
            self.counts["packets_sent"] += 1
            self.counts["bytes_sent"] += len(packet)

    def bundles(self) -> list[Outgoing]:
        """What crosses the model channel: the basis always, the model if shared."""
        if self.basis is None:
            return []
        out = [Outgoing("basis", self.person.name, {BASIS_FILE: self.basis.to_bytes()})]
        if self.opts.share_model:
            out.append(Outgoing.from_folder("model", self.person.name, self.person.folder))
        return out

    def latency_p50_ms(self) -> float:
        recent = self.pipeline.stats.latencies_ms[-30:]
        return float(sorted(recent)[len(recent) // 2]) if recent else 0.0
