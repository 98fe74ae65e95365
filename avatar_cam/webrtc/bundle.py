"""Bundles: several landmark packets and the voice of that time in one data-channel message.

Each message on the wire costs about 90 bytes of headers (IPv4 20, UDP 8, DTLS record 13
+ AEAD 24, SCTP common header 12, DATA chunk 16), and the receiver answers each with a
SACK of about the same size: at 30 messages a second that is 40 kbit/s of headers around
6 kbit/s of landmarks. A bundle sends ``frames_per_bundle`` landmark packets at once (each
frame but the last waits up to that many frame periods) with the Opus frames captured
meanwhile, which the receiver plays by their timestamps, not by arrival.

Layout (every byte counts 10-30 times a second)::

    0      0xB1: a bundle, version 1 (a codec packet starts with 0xA1: codec.py)
    1      landmark packets (high nibble, 0-15) | Opus frames (low nibble, 0-15)
    then   per landmark packet: length (1 byte, 1-255), the packet
    then   if Opus frames: t_ms of the first (4 bytes, little-endian, the landmark
           encoder's clock), then per frame: ms after the previous frame (1 byte, the
           first 0), length (1 byte, 1-255), the frame

So 3 landmark frames and 5 voice frames cost 2 + 3 + 4 + 5 * 2 = 19 bytes of framing.
"""

from __future__ import annotations

import struct
from collections import Counter, deque
from dataclasses import dataclass, field

MAGIC = 0xB1
MAX_ITEMS = 15
MAX_ITEM_BYTES = 255
MAX_PENDING_AUDIO = 50  # 1 s of 20 ms frames waiting for landmarks at most


class BundleFormatError(ValueError):
    """A message that says it is a bundle and is not a well-formed one."""


@dataclass
class Bundle:
    landmarks: list[bytes] = field(default_factory=list)
    audio: list[tuple[int, bytes]] = field(default_factory=list)  # (t_ms, Opus frame)


def is_bundle(message: bytes) -> bool:
    return len(message) > 0 and message[0] == MAGIC


def pack(landmarks: list[bytes], audio: list[tuple[int, bytes]]) -> bytes:
    if len(landmarks) > MAX_ITEMS or len(audio) > MAX_ITEMS:
        raise ValueError(f"at most {MAX_ITEMS} landmark packets and Opus frames a bundle")
    out = bytearray([MAGIC, (len(landmarks) << 4) | len(audio)])
    for packet in landmarks:
        if not 1 <= len(packet) <= MAX_ITEM_BYTES:
            raise ValueError(f"a landmark packet of {len(packet)} bytes")
        out.append(len(packet))
        out += packet
    if audio:
        out += struct.pack("<I", audio[0][0] & 0xFFFFFFFF)
        previous = audio[0][0]
        for t_ms, frame in audio:
            step = t_ms - previous
            if not 0 <= step <= 255 or not 1 <= len(frame) <= MAX_ITEM_BYTES:
                raise ValueError(f"an Opus frame {step} ms after the last, {len(frame)} bytes")
            out += bytes([step, len(frame)])
            out += frame
            previous = t_ms
    return bytes(out)


def unpack(message: bytes) -> Bundle:
    """The bundle in ``message``; BundleFormatError for anything malformed."""
    if len(message) < 2 or message[0] != MAGIC:
        raise BundleFormatError("not a bundle")
    n_landmarks, n_audio = message[1] >> 4, message[1] & 0x0F
    pos, bundle = 2, Bundle()

    def take(n: int) -> bytes:
        nonlocal pos
        if n <= 0 or pos + n > len(message):
            raise BundleFormatError("truncated bundle")
        piece = message[pos:pos + n]
        pos += n
        return piece

    for _ in range(n_landmarks):
        bundle.landmarks.append(take(take(1)[0]))
    if n_audio:
        t_ms = struct.unpack("<I", take(4))[0]
        for _ in range(n_audio):
            step, size = take(2)
            t_ms += step
            bundle.audio.append((t_ms, take(size)))
    if pos != len(message):
        raise BundleFormatError("bytes after the bundle")
    return bundle


class Bundler:
    """The sender's side: landmark packets in, a bundle out every ``frames_per_bundle``
    of them, with the voice frames that came meanwhile (at most 1 s kept)."""

    def __init__(self, frames_per_bundle: int = 3) -> None:
        if not 1 <= frames_per_bundle <= MAX_ITEMS:
            raise ValueError(f"frames per bundle must be 1-{MAX_ITEMS}")
        self.frames_per_bundle = frames_per_bundle
        self.landmarks: list[bytes] = []
        self.audio: deque[tuple[int, bytes]] = deque()
        self.counts: Counter[str] = Counter()

    def add_audio(self, t_ms: int, frame: bytes) -> None:
        if not 1 <= len(frame) <= MAX_ITEM_BYTES:
            self.counts["audio_too_big"] += 1
            return
        if self.audio and not 0 <= t_ms - self.audio[-1][0] <= 255:
            self.counts["audio_gap"] += 1  # a clock jump: start the run of frames over
            self.audio.clear()
        self.audio.append((t_ms, frame))
        while len(self.audio) > MAX_PENDING_AUDIO:
            self.audio.popleft()
            self.counts["audio_dropped"] += 1

    def add_landmarks(self, packet: bytes) -> bytes | None:
        self.landmarks.append(packet)
        if len(self.landmarks) < self.frames_per_bundle:
            return None
        return self.flush()

    def flush(self) -> bytes | None:
        if not self.landmarks and not self.audio:
            return None
        audio = [self.audio.popleft() for _ in range(min(MAX_ITEMS, len(self.audio)))]
        message = pack(self.landmarks, audio)
        self.landmarks = []
        return message
