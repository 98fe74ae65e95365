"""Bundles: several landmark packets and the voice of that time in one data-channel message.

Each message on the wire costs 93 bytes of headers (IPv4 20, UDP 8, DTLS 1.2 record 13 +
AES-GCM nonce 8 and tag 16, SCTP common header 12, DATA chunk 16) and the chunk's padding
to 4 bytes (~95 a message as ``benchmarks/wire.py`` measures it), and the receiver's SCTP
(aiortc) answers each with a 93-byte SACK: at 30 messages a second that is ~45 kbit/s of
headers around ~6 kbit/s of landmarks.
A bundle sends ``frames_per_bundle`` landmark packets at once (each frame but the last
waits up to that many frame periods) with the Opus frames captured meanwhile, which the
receiver plays by their timestamps, not by arrival.

Layout (every byte counts 10-30 times a second)::

    0      0xB1: a bundle, version 1. A codec packet starts with 0xA0 | its version
           (codec.py), so no codec version can be mistaken for a bundle or back.
    1      landmark packets (high nibble, 0-15) | Opus frames (low nibble: 0-14, or 15:
           the count is the next byte, 15-255)
    then   the first landmark packet: length (1 byte, 1-127), the packet as the codec made it
           each further one: either the same, or, when it follows the one before (same
           first byte and basis tag, seq + 1, 0-255 ms later), 0x80 | length (1 byte) and
           the packet less its 7-byte header: flags (1), ms after the one before (1), the
           payload. The receiver rebuilds the header byte for byte.
    then   if Opus frames: t_ms of the first (4 bytes, little-endian, the landmark
           encoder's clock), ms between frames (1 byte), then per frame: length (1 byte,
           1-255), the frame. The frames of one bundle are evenly spaced (the microphone's
           frames are; a gap starts the next bundle's run).

A landmark packet alone with no voice is sent as the plain codec packet (no bundle bytes),
which is what a receiver of plain packets reads too.

Framing of one bundle of n landmark packets and m Opus frames: 2 + 1 + 5 (n - 1) saved +
(n - 1) + (5 + m if m else 0) bytes. For 3 landmark frames and 5 voice frames (100 ms):
2 + 3 + 10 = 15 bytes of framing, and 10 bytes of headers removed from packets 2 and 3, so
the bundle is 5 bytes longer than its contents sent bare: against the 2 x 93 bytes of
headers (and 2 SACKs) that two more messages would have cost.
"""

from __future__ import annotations

import struct
from collections import Counter, deque
from dataclasses import dataclass, field

from .codec import HEADER_BYTES

MAGIC = 0xB1
MAX_LANDMARKS = 15
MAX_AUDIO = 255
MAX_LANDMARK_BYTES = 127  # codec packets are at most 96 (codec.MAX_PACKET_BYTES)
MAX_AUDIO_BYTES = 255  # a 20 ms Opus frame at up to ~100 kbit/s
MAX_PENDING_AUDIO = 50  # 1 s of 20 ms frames waiting for landmarks at most
SHORT = 0x80  # a landmark length with this bit: the header was left out
MAX_ITEMS = MAX_LANDMARKS  # the most landmark packets a bundle holds


class BundleFormatError(ValueError):
    """A message that says it is a bundle and is not a well-formed one (count it, drop it)."""


@dataclass
class Bundle:
    landmarks: list[bytes] = field(default_factory=list)
    audio: list[tuple[int, bytes]] = field(default_factory=list)  # (t_ms, Opus frame)


def is_bundle(message: bytes) -> bool:
    return len(message) > 0 and message[0] == MAGIC


def _follows(prev: bytes, packet: bytes) -> int | None:
    """ms after ``prev`` if ``packet``'s header can be rebuilt from ``prev``'s, else None."""
    if len(packet) < HEADER_BYTES or len(prev) < HEADER_BYTES:
        return None
    if packet[0] != prev[0] or packet[2] != prev[2]:
        return None
    if int.from_bytes(packet[3:5], "big") != (int.from_bytes(prev[3:5], "big") + 1) & 0xFFFF:
        return None
    dt = (int.from_bytes(packet[5:7], "big") - int.from_bytes(prev[5:7], "big")) & 0xFFFF
    return dt if dt <= 255 else None


def pack(landmarks: list[bytes], audio: list[tuple[int, bytes]]) -> bytes:
    """One bundle message; ValueError for what the layout cannot carry (the ``Bundler``
    never hands it such)."""
    if len(landmarks) > MAX_LANDMARKS or len(audio) > MAX_AUDIO:
        raise ValueError(f"at most {MAX_LANDMARKS} landmark packets and {MAX_AUDIO} Opus "
                         "frames a bundle")
    n_audio = len(audio)
    out = bytearray([MAGIC, (len(landmarks) << 4) | min(n_audio, 15)])
    if n_audio >= 15:
        out.append(n_audio)
    prev: bytes | None = None
    for packet in landmarks:
        if not 1 <= len(packet) <= MAX_LANDMARK_BYTES:
            raise ValueError(f"a landmark packet of {len(packet)} bytes")
        dt = _follows(prev, packet) if prev is not None else None
        if dt is not None:
            out += bytes([SHORT | (len(packet) - HEADER_BYTES + 2), packet[1], dt])
            out += packet[HEADER_BYTES:]
        else:
            out.append(len(packet))
            out += packet
        prev = packet
    if audio:
        step = audio[1][0] - audio[0][0] if n_audio > 1 else 0
        if not 0 <= step <= 255:
            raise ValueError(f"Opus frames {step} ms apart")
        out += struct.pack("<IB", audio[0][0] & 0xFFFFFFFF, step)
        for i, (t_ms, frame) in enumerate(audio):
            if t_ms != audio[0][0] + i * step or not 1 <= len(frame) <= MAX_AUDIO_BYTES:
                raise ValueError(f"Opus frame {i}: not {step} ms after the last, or "
                                 f"{len(frame)} bytes")
            out.append(len(frame))
            out += frame
    return bytes(out)


class _Reader:
    def __init__(self, message: bytes) -> None:
        self.message, self.pos = message, 0

    def take(self, n: int) -> bytes:
        if n <= 0 or self.pos + n > len(self.message):
            raise BundleFormatError("truncated bundle")
        piece = self.message[self.pos:self.pos + n]
        self.pos += n
        return piece


def unpack(message: bytes) -> Bundle:
    """The bundle in ``message``; BundleFormatError for anything malformed."""
    if len(message) < 2 or message[0] != MAGIC:
        raise BundleFormatError("not a bundle")
    r, bundle = _Reader(message), Bundle()
    r.pos = 2
    n_landmarks, n_audio = message[1] >> 4, message[1] & 0x0F
    if n_audio == 15:
        n_audio = r.take(1)[0]
        if n_audio < 15:
            raise BundleFormatError("Opus frame count escaped below 15")
    prev: bytes | None = None
    for _ in range(n_landmarks):
        size = r.take(1)[0]
        if not size & SHORT:
            packet = r.take(size)
        elif prev is None or len(prev) < HEADER_BYTES:
            raise BundleFormatError("a shortened landmark packet with nothing before it")
        else:
            body = r.take(size & ~SHORT)
            if len(body) < 2:
                raise BundleFormatError("a shortened landmark packet under 2 bytes")
            seq = (int.from_bytes(prev[3:5], "big") + 1) & 0xFFFF
            t = (int.from_bytes(prev[5:7], "big") + body[1]) & 0xFFFF
            packet = bytes([prev[0], body[0], prev[2]]) + seq.to_bytes(2, "big") \
                + t.to_bytes(2, "big") + body[2:]
        bundle.landmarks.append(packet)
        prev = packet
    if n_audio:
        t_ms, step = struct.unpack("<IB", r.take(5))
        for i in range(n_audio):
            bundle.audio.append((t_ms + i * step, r.take(r.take(1)[0])))
    if r.pos != len(message):
        raise BundleFormatError("bytes after the bundle")
    return bundle


class Bundler:
    """The sender's side: landmark packets in, a message out every ``frames_per_bundle``
    of them, with the voice frames that came meanwhile (at most ~1 s kept: the oldest
    beyond are dropped and counted)."""

    def __init__(self, frames_per_bundle: int = 3) -> None:
        if not 1 <= frames_per_bundle <= MAX_LANDMARKS:
            raise ValueError(f"frames per bundle must be 1-{MAX_LANDMARKS}")
        self.frames_per_bundle = frames_per_bundle
        self.landmarks: list[bytes] = []
        self.audio: deque[tuple[int, bytes]] = deque()
        self.counts: Counter[str] = Counter()

    def add_audio(self, t_ms: int, frame: bytes) -> None:
        if not 1 <= len(frame) <= MAX_AUDIO_BYTES:
            self.counts["audio_too_big"] += 1
            return
        if self.audio and not 0 < t_ms - self.audio[-1][0] <= 255:
            self.counts["audio_gap"] += 1  # a clock jump: start the run of frames over
            self.audio.clear()
        self.audio.append((t_ms, frame))
        while len(self.audio) > MAX_PENDING_AUDIO:
            self.audio.popleft()
            self.counts["audio_dropped"] += 1

    def add_landmarks(self, packet: bytes) -> bytes | None:
        """The message to send once ``frames_per_bundle`` packets are pending, else None."""
        if not 1 <= len(packet) <= MAX_LANDMARK_BYTES:
            self.counts["landmarks_too_big"] += 1
            return None
        self.landmarks.append(packet)
        if len(self.landmarks) < self.frames_per_bundle:
            return None
        return self.flush()

    def flush(self) -> bytes | None:
        """What is pending as one message now (None if nothing is): the landmark packets
        and the longest evenly spaced run of the oldest voice frames (the rest waits)."""
        if not self.landmarks and not self.audio:
            return None
        audio = [self.audio.popleft()] if self.audio else []
        while self.audio and len(audio) < MAX_AUDIO:
            step = audio[1][0] - audio[0][0] if len(audio) > 1 else None
            if step is not None and self.audio[0][0] - audio[-1][0] != step:
                break
            audio.append(self.audio.popleft())
        landmarks, self.landmarks = self.landmarks, []
        if len(landmarks) == 1 and not audio:
            return landmarks[0]  # the plain codec packet: nothing to bundle it with
        return pack(landmarks, audio)
