"""A video jitter buffer that hands a frame on at its last packet, and the one place that
fits it into aiortc's receivers.

aiortc's video jitter buffer hands a frame on only when the *next* frame's first packet
arrives, a frame interval late. ``MarkerJitterBuffer`` also hands it on at the frame's
last packet (the RTP marker bit, which aiortc and browsers set), as browsers do. It is a
buffer of its own (no state borrowed from aiortc's class) with the interface aiortc's
receiver calls: ``add(packet) -> (pli_needed, frame or None)``.

Its audio jitter buffer waits for 4 more packets (80 ms of 20 ms Opus packets) before it
hands one on, which would leave the voice behind the picture, and behind a lost packet
(voice is not resent) it waits for 16 and keeps that backlog for good: one loss and the
voice plays 300 ms late from then on. ``VoiceJitterBuffer`` hands a packet on when it
arrives in order and gives a hole up after ``HOLE_WAIT`` packets (the delay it adds:
none on a clean link, at most 40 ms).

Loss is repaired within the sender's retransmission history (aiortc keeps the last
``RTP_HISTORY_SIZE`` = 128 packets): a hole further back than that can never be filled,
so the video buffer holds ``HORIZON`` packets (aiortc's holds 512, and a packet lost for
good froze the picture until 512 more came, some 5 s), and ``HorizonNacks`` asks again
only for holes within it. After a gap wider than the horizon (an outage) it asks for
none of the gap: the buffer starts over and asks for a key frame, which is the repair;
aiortc's generator asked for the gap's last 128 packets again on every later loss, and
the sender resent some 350 dead packets in the first 0.1 s after each 5 s outage, just
when the key frame needed the link and the event loop.

aiortc offers no public way to choose a receiver's jitter buffer or NACK generator:
``fast_frames`` is the only code that swaps the private attributes, and where aiortc
changes them, nothing is replaced (tests/test_webrtc.py says so) rather than anything
breaking.
"""

from __future__ import annotations

from typing import Any

from aiortc.jitterbuffer import JitterBuffer as AiortcJitterBuffer
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpreceiver import NackGenerator
from aiortc.rtp import RTP_HISTORY_SIZE

RECEIVER_BUFFER = "_RTCRtpReceiver__jitter_buffer"  # aiortc 1.x's private names
RECEIVER_NACKS = "_RTCRtpReceiver__nack_generator"
SEQ_MOD = 1 << 16
HORIZON = RTP_HISTORY_SIZE  # packets the sender can still resend
AUDIO_CAPACITY = 16  # aiortc's own: a packet further ahead starts the voice buffer over
HOLE_WAIT = 3  # later voice packets in before a hole is given up as lost (60 ms)


def payload_of(packet: Any) -> bytes:
    """The depayloaded bytes aiortc's receiver attaches to a packet before buffering it."""
    return bytes(packet._data)


class _SequenceWindow:
    """The packets of one RTP stream from ``origin`` (the oldest still wanted) up to
    ``capacity`` ahead of it, by sequence number (16 bits, wrapping)."""

    def __init__(self, capacity: int) -> None:
        self._cap = capacity
        self.origin: int | None = None  # sequence number of the oldest packet wanted
        self.packets: dict[int, Any] = {}

    @property
    def capacity(self) -> int:
        return self._cap

    def _admit(self, packet: Any) -> int | None:
        """Keep ``packet``: None if it is older than ``origin`` (late or a duplicate: not
        kept), else how many packets a restart jumped (one ``capacity`` or more ahead:
        the window starts over from it), 0 without one."""
        seq = int(packet.sequence_number)
        if self.origin is None:
            self.origin = seq
        ahead = (seq - self.origin) % SEQ_MOD
        if ahead >= SEQ_MOD // 2:
            return None
        jumped = 0
        if ahead >= self._cap:
            self.packets.clear()
            self.origin, jumped = seq, ahead
        self.packets[seq] = packet
        return jumped


class MarkerJitterBuffer(_SequenceWindow):
    """RTP packets -> complete frames, a frame as soon as its marker packet is in.

    A frame is complete when every packet from the oldest kept one up to a marker packet
    (or up to the first packet of a later timestamp, when the marker was lost) is in.
    A packet too far ahead of the oldest one (``capacity``) starts the buffer over and
    asks for a key frame (PLI), like aiortc's; packets older than the oldest are dropped.
    """

    def __init__(self, capacity: int = HORIZON, is_video: bool = True) -> None:
        super().__init__(capacity)
        self.is_video = is_video

    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:
        jumped = self._admit(packet)
        if jumped is None:
            return False, None
        return self.is_video and jumped > 0, self._complete()

    def _complete(self) -> JitterFrame | None:
        assert self.origin is not None
        parts: list[bytes] = []
        timestamp: int | None = None
        for count in range(len(self.packets) + 1):
            seq = (self.origin + count) % SEQ_MOD
            packet = self.packets.get(seq)
            if packet is None:
                return None
            if timestamp is not None and packet.timestamp != timestamp:
                self._drop(count)  # the next frame began: this one is complete
                return JitterFrame(b"".join(parts), timestamp)
            timestamp = packet.timestamp
            parts.append(payload_of(packet))
            if packet.marker:
                self._drop(count + 1)
                return JitterFrame(b"".join(parts), timestamp)
        return None

    def _drop(self, count: int) -> None:
        assert self.origin is not None
        for i in range(count):
            self.packets.pop((self.origin + i) % SEQ_MOD, None)
        self.origin = (self.origin + count) % SEQ_MOD


class HorizonNacks(NackGenerator):
    """aiortc's NACK generator, asking only for holes the sender can still fill: a
    packet more than ``horizon`` past the newest one forgets every hole (the jitter
    buffer starts over from it and asks for a key frame instead), and holes that fall
    ``horizon`` behind the newest packet are forgotten, as aiortc's are."""

    def __init__(self, horizon: int = HORIZON) -> None:
        super().__init__()
        self.horizon = horizon
        self.gaps_skipped = 0  # gaps wider than the horizon, left to a key frame

    def add(self, packet: Any) -> bool:
        ahead = None if self.max_seq is None else \
            (packet.sequence_number - self.max_seq) % SEQ_MOD
        if ahead is not None and self.horizon < ahead < SEQ_MOD // 2:
            self.missing.clear()
            self.max_seq = packet.sequence_number
            self.gaps_skipped += 1
            return False
        return bool(super().add(packet))


class VoiceJitterBuffer(_SequenceWindow):
    """RTP voice packets -> Opus frames, at most one a packet (aiortc's receiver takes one
    frame per ``add``), in order, with a bounded delay.

    A packet goes on as soon as every packet before it has: on a clean link each goes on
    the moment it arrives. Voice is not resent, so a hole is given up once ``HOLE_WAIT``
    later packets wait behind it (the decoder starts from the next; counted in
    ``skipped``), and so at most ``HOLE_WAIT - 1`` packets ever wait: one out per packet
    in, a backlog never drains by itself, and this one is bounded at 40 ms. aiortc's
    buffer waited for 16 packets behind every hole and kept that backlog: after one lost
    packet every later one played 300 ms late.
    """

    def __init__(self, capacity: int = AUDIO_CAPACITY) -> None:
        super().__init__(capacity)  # origin: the next packet to hand on
        self.skipped = 0  # packets given up as lost
        self.late = 0  # packets that came after they were given up (or twice)

    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:
        jumped = self._admit(packet)
        if jumped is None:
            self.late += 1
            return False, None
        self.skipped += jumped  # an outage: the buffer started over
        if self.origin not in self.packets and len(self.packets) >= HOLE_WAIT:
            self._skip_to_oldest()
        return False, self._take() if self.origin in self.packets else None

    def _skip_to_oldest(self) -> None:
        assert self.origin is not None
        origin = self.origin
        gap = min((s - origin) % SEQ_MOD for s in self.packets)
        self.skipped += gap
        self.origin = (origin + gap) % SEQ_MOD

    def _take(self) -> JitterFrame:
        assert self.origin is not None
        packet = self.packets.pop(self.origin)
        self.origin = (self.origin + 1) % SEQ_MOD
        return JitterFrame(payload_of(packet), packet.timestamp)


def fast_frames(pc: Any) -> dict[str, int]:
    """Give each video receiver of ``pc`` a MarkerJitterBuffer of ``HORIZON`` packets and
    ``HorizonNacks``, and each audio receiver a ``VoiceJitterBuffer``; how many of each."""
    done = {"video": 0, "audio": 0}
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        old = getattr(receiver, RECEIVER_BUFFER, None)
        if type(old) is not AiortcJitterBuffer:
            continue
        if transceiver.kind == "video":
            if type(getattr(receiver, RECEIVER_NACKS, None)) is not NackGenerator:
                continue
            setattr(receiver, RECEIVER_BUFFER, MarkerJitterBuffer(HORIZON, is_video=True))
            setattr(receiver, RECEIVER_NACKS, HorizonNacks(HORIZON))
        elif transceiver.kind == "audio":
            setattr(receiver, RECEIVER_BUFFER, VoiceJitterBuffer(AUDIO_CAPACITY))
        else:
            continue
        done[transceiver.kind] += 1
    return done
