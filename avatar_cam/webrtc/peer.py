"""One end of a WebRTC connection: the local avatar out, the remote one in.

``Peer`` wraps one RTCPeerConnection (host ICE candidates, plus STUN/TURN ones if
``opts.ice`` names servers) and
sends a ``LocalAvatar`` (``local``), if it has one. In video mode it sends a track and
passes the remote track to a sink. In landmark-only mode it opens two data channels:
"landmarks" (unordered, maxRetransmits 0) and "model" (reliable), on which the landmark
basis always crosses and the person's model only with ``share_model`` (``exchange``).
As soon as the peer's basis is in, a receiving pipeline renders them into the sink: as
the landmark sketch until their model has arrived, then as their face.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections import Counter
from typing import Any

from aiortc import (
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.exceptions import InvalidStateError

from ..person import Person
from ..pipeline import Pipeline
from .bundle import BundleFormatError, is_bundle, unpack
from .exchange import ModelExchange
from .local import LocalAvatar
from .model_share import ModelCache
from .options import CallError, PeerOptions, configure_loop, loopback_gathering, workers
from .receive import (
    LandmarkReceiver,
    Look,
    VideoReceiver,
    build_receiver,
    sketch_look,
)
from .remote_look import RemoteLook, person_look
from .rtp_buffer import fast_frames
from .voice import MicTrack, VoiceIn, VoicePlayout, outputs_of

__all__ = ["CallError", "LocalAvatar", "Peer", "PeerOptions", "configure_loop"]

log = logging.getLogger(__name__)

LANDMARKS, MODEL, STATS = "landmarks", "model", "stats"
CODECS = {"vp8": "video/VP8", "h264": "video/H264"}


class Peer:
    """One RTCPeerConnection: sends ``local`` (if any) and renders the remote into ``sink``
    (if any). Signaling is the caller's: ``create_offer``/``accept_answer`` on one side,
    ``accept_offer`` on the other."""

    def __init__(self, local: LocalAvatar | None, sink: Any | None, opts: PeerOptions,
                 speaker: Any | None = None) -> None:
        self.local, self.sink, self.opts = local, sink, opts
        self.voice_outputs = outputs_of(speaker, sink)  # where the peer's voice plays
        self.voice_in: VoiceIn | None = None
        self.playout: VoicePlayout | None = None
        self.mic_track: MicTrack | None = None
        self.bundles = True  # the peer is avatar-cam (reads bundles), not a browser page
        self.pc = RTCPeerConnection(opts.ice.configuration())
        self.counts: Counter[str] = Counter()
        self.video_rx: VideoReceiver | None = None
        self.landmark_rx: LandmarkReceiver | None = None
        self.remote_person: Person | None = None
        self.remote_look: RemoteLook | None = None
        self.receiver: Pipeline | None = None
        self.receiving = asyncio.Event()
        self.ended = asyncio.Event()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._channels: set[RTCDataChannel] = set()
        bundles = local.bundles() if local is not None else []
        self.exchange = ModelExchange(ModelCache(opts.cache_root), bundles, local is not None,
                                      self._spawn, keep=opts.share_keep)
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._wire)
        self.pc.on("connectionstatechange", self._on_state)
        if opts.landmarks_only and sink is not None:
            self._spawn(self._start_landmark_receiver())

    # -- signaling ----------------------------------------------------------------------

    def _describe(self) -> dict[str, Any]:
        desc = self.pc.localDescription
        return {"sdp": desc.sdp, "type": desc.type, "app": "avatar-cam", "version": 1,
                "mode": self.opts.mode}

    async def create_offer(self) -> dict[str, Any]:
        if self.opts.landmarks_only:
            self._wire(self.pc.createDataChannel(LANDMARKS, ordered=False, maxRetransmits=0))
            self._wire(self.pc.createDataChannel(MODEL))
        else:
            self._add_video()
            self._add_voice()
        await self._gather(await self.pc.createOffer())
        fast_frames(self.pc)
        return self._describe()

    async def accept_offer(self, offer: dict[str, Any]) -> dict[str, Any]:
        sdp = offer.get("sdp")
        if not isinstance(sdp, str) or offer.get("type") != "offer" or len(sdp) > 100_000:
            raise CallError("the peer sent a malformed offer", "check both ends run avatar-cam")
        self.bundles = offer.get("app") == "avatar-cam"
        if self.bundles and offer.get("mode") != self.opts.mode:
            raise CallError(f"the caller wants a {offer.get('mode')} call, this end is in "
                            f"{self.opts.mode} mode",
                            "give --landmarks-only on both ends or on neither")
        # Made before the offer is applied, so aiortc adopts them for the offer's lines
        # and negotiates codecs in our order (it reads preferences only then).
        if not self.opts.landmarks_only:
            self._add_video()
        if any(line.startswith("m=audio") for line in sdp.splitlines()):
            self._add_voice()  # video calls, and browsers in either mode
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await self._gather(await self.pc.createAnswer())
        fast_frames(self.pc)
        return self._describe()

    async def _gather(self, description: RTCSessionDescription) -> None:
        """Set our description; aiortc gathers our candidates meanwhile."""
        if self.opts.loopback:
            with loopback_gathering():
                await self.pc.setLocalDescription(description)
        else:
            await self.pc.setLocalDescription(description)

    async def accept_answer(self, answer: dict[str, Any]) -> None:
        sdp = answer.get("sdp")
        if not isinstance(sdp, str) or answer.get("type") != "answer":
            raise CallError("the peer sent a malformed answer", "check both ends run avatar-cam")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))

    def _add_video(self) -> None:
        if self.local is not None and self.local.slot is not None:
            direction = "sendrecv" if self.sink is not None else "sendonly"
            transceiver = self.pc.addTransceiver(self.local.video_track(), direction=direction)
        else:
            transceiver = self.pc.addTransceiver("video", direction="recvonly")
        self._prefer_codec(transceiver)

    def _add_voice(self) -> None:
        """An Opus line: our microphone out if we have one, the peer's voice in if we
        have somewhere to play it."""
        voice = self.local.voice if self.local is not None else None
        sending, receiving = voice is not None, bool(self.voice_outputs)
        if voice is not None:
            self.mic_track = voice.track()
        direction = {(True, True): "sendrecv", (True, False): "sendonly",
                     (False, True): "recvonly"}.get((sending, receiving), "inactive")
        self.pc.addTransceiver(self.mic_track or "audio", direction=direction)

    def _prefer_codec(self, transceiver: Any) -> None:
        caps = RTCRtpSender.getCapabilities("video").codecs
        first = CODECS.get(self.opts.codec, "video/VP8")
        ordered = [c for c in caps if c.mimeType == first] + \
            [c for c in caps if c.mimeType != first]
        transceiver.setCodecPreferences(ordered)

    # -- media ----------------------------------------------------------------------------

    def _on_track(self, track: Any) -> None:
        if track.kind == "video" and self.sink is not None and self.video_rx is None:
            self.video_rx = VideoReceiver(track, self.sink, self.opts.out_size, self.opts.stamp)
            self._spawn(self._receive_video(self.video_rx))
        elif track.kind == "audio" and self.voice_outputs and self.voice_in is None:
            self.voice_in = VoiceIn(track, self.voice_outputs, self._video_extra_ms)
            self._spawn(self.voice_in.run())

    def _video_extra_ms(self) -> float:
        return self.video_rx.delivery_ms() if self.video_rx is not None else 0.0

    async def _receive_video(self, rx: VideoReceiver) -> None:
        self.receiving.set()
        await rx.run()

    def _wire(self, channel: RTCDataChannel) -> None:
        self._channels.add(channel)
        if channel.label == LANDMARKS:
            if self.local is not None and self.local.encoder is not None:
                (self.local.bundle_channels if self.bundles else self.local.channels).add(channel)
            channel.on("message", self._on_landmarks)
        elif channel.label == MODEL:
            self.exchange.attach(channel)
        elif channel.label == STATS:
            self._when_open(channel, self._stats_loop)
        else:
            self.counts["unknown_channel"] += 1

    def _when_open(self, channel: RTCDataChannel, job: Any) -> None:
        if channel.readyState == "open":
            self._spawn(job(channel))
        else:
            channel.on("open", lambda: self._spawn(job(channel)))

    def _on_landmarks(self, message: object) -> None:
        if not isinstance(message, bytes):
            self.counts["landmark_not_bytes"] += 1
        elif self.landmark_rx is None:
            self.counts["landmarks_before_basis"] += 1
        elif not is_bundle(message):
            self.landmark_rx.push(message)
        else:
            try:
                bundle = unpack(message)
            except BundleFormatError:
                self.counts["bundle_malformed"] += 1
                return
            if len(bundle.landmarks) > 1:  # frames spaced a period apart, sent at once
                self.landmark_rx.cover((len(bundle.landmarks) - 1) * 1000 / self.opts.fps)
            for packet in bundle.landmarks:
                self.landmark_rx.push(packet)
            if self.playout is not None:
                for t_ms, frame in bundle.audio:
                    self.playout.add(t_ms, frame)
            elif bundle.audio:
                self.counts["voice_not_played"] += len(bundle.audio)

    async def _stats_loop(self, channel: RTCDataChannel) -> None:
        while channel.readyState == "open" and not self.ended.is_set():
            local = self.local
            info: dict[str, Any] = {"mode": self.opts.mode}
            if local is not None:
                info["pipeline_latency_ms"] = round(local.latency_p50_ms(), 1)
                info["frames"] = local.pipeline.stats.frames
                info.update({k: v for k, v in local.counts.items()})
            try:
                channel.send(json.dumps(info))
            except InvalidStateError:  # closed meanwhile
                return
            await asyncio.sleep(1.0)

    # -- receiving landmarks ------------------------------------------------------------

    async def _start_landmark_receiver(self) -> None:
        """Render the peer as soon as their basis is in: as the sketch until their model
        arrives (if it does), then as their face."""
        basis = await self.exchange.basis
        if self.ended.is_set():
            return
        if basis is None:
            log.error("no usable landmark basis from the peer: nothing to render")
            return
        self.landmark_rx = LandmarkReceiver(basis, self.opts.playout)
        look = Look(*sketch_look(basis, self.opts.out_size, self.opts.resolution))
        on_shown = None
        if self.voice_outputs:
            self.playout = VoicePlayout(self.voice_outputs)
            on_shown = self.playout.shown
            self._spawn(self.playout.run())
        receiver = build_receiver(self.landmark_rx, look, self.sink, self.opts.fps,
                                  on_shown=on_shown)
        self.receiver = receiver
        self.receiving.set()
        running = workers().run(receiver.run)
        try:
            # However late it comes (a slow link, a loaded machine): the sketch until then.
            # The exchange answers None when the peer has no model or the call closes.
            person = await asyncio.shield(self.exchange.model)
            if person is not None and not self.ended.is_set():
                # Opening and timing a renderer takes a while: not on the event loop.
                remote = await workers().run(
                    functools.partial(person_look, person, self.opts.out_size,
                                      self.opts.resolution, fps=self.opts.fps,
                                      prefer=self.opts.remote_renderer))
                look.use(*remote.stages)
                self.remote_look = remote
                self.remote_person = person
                owner = person.owner
                log.info("rendering the peer with their own model: %s",
                         owner.describe() if owner is not None else "unsigned")
        finally:
            await running
            for stage in (look, receiver.source):
                with contextlib.suppress(Exception):
                    stage.close()

    # -- lifetime -------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("peer task failed: %s", task.exception(), exc_info=task.exception())

    def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self.ended.set()

    async def wait_connected(self, timeout: float) -> None:
        t_end = time.monotonic() + timeout
        while self.pc.connectionState != "connected":
            if self.pc.connectionState in ("failed", "closed") or time.monotonic() > t_end:
                raise CallError(f"the WebRTC connection is {self.pc.connectionState}",
                                "check the address and that both ends can reach each other")
            await asyncio.sleep(0.05)

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.opts.mode, **self.counts, **self.exchange.counts}
        if self.video_rx is not None:
            out["frames_received"] = self.video_rx.frames
        if self.landmark_rx is not None:
            out.update({f"landmarks_{k}": v for k, v in self.landmark_rx.counts.items()})
        if self.receiver is not None:
            out["frames_rendered"] = self.receiver.stats.frames
        for voice in (self.voice_in, self.playout):
            if voice is not None:
                out.update({f"voice_{k}" if not k.startswith("voice_") else k: v
                            for k, v in voice.counts.items()})
        out["remote_model"] = self.exchange.digests.get("model")
        if self.remote_look is not None:
            out["remote_renderer"] = self.remote_look.kind
            out["remote_renderer_why"] = self.remote_look.reason
            out["remote_backend"] = self.remote_look.backend
        owner = self.remote_person.owner if self.remote_person is not None else None
        out["remote_owner"] = owner.describe() if owner is not None else None
        return out

    async def close(self) -> None:
        self.ended.set()
        if self.receiver is not None:
            self.receiver.stop()
        if self.playout is not None:
            self.playout.stop()
        if self.mic_track is not None and self.local is not None and self.local.voice:
            self.local.voice.drop(self.mic_track)
            self.mic_track.stop()
        if self.local is not None:
            self.local.channels.difference_update(self._channels)
            self.local.bundle_channels.difference_update(self._channels)
        self.exchange.close()
        await self.pc.close()  # ends the remote track: the video receiver returns
        pending = {t for t in self._tasks if not t.done()}
        if pending:
            _, late = await asyncio.wait(pending, timeout=5.0)
            for task in late:  # e.g. still waiting for a basis that never came
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self.exchange.discard()  # the peer's model, unless they let us keep it
