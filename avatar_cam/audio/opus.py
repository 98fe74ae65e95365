"""Opus through PyAV's libopus: speech at a chosen bitrate, 10 to 120 ms frames.

``OpusEncoder.encode`` gives the packets' bytes (what a landmark bundle carries);
``encode_packets`` gives ``av.Packet``s with their pts (aiortc sends a packet as it is on
an RTP track, so the bitrate stays ours). ``OpusDecoder.decode`` checks what it is given:
a packet from the network that is not Opus raises ValueError and is counted
(``rejected``), for the caller to drop. ``conceal`` is libopus's own packet-loss
concealment: PyAV has no call for it, but libopus conceals a frame that has a TOC byte and
no payload (RFC 6716 3.2.1: a DTX or lost frame), and FFmpeg passes such a one-byte packet
through as it is.

Measured with this PyAV (18.1, its bundled libopus; ``application=voip``): frames of 10,
20, 40, 60, 80, 100 and 120 ms all encode and decode. Packet pts count from 0 at the first
packet; what a packet decodes to lags the input by libopus's lookahead (312 samples,
6.5 ms: a 1 kHz burst decoded 308-309 samples late), as on any Opus RTP stream.
"""

from __future__ import annotations

import fractions

import av
import numpy as np

from .chunk import CHUNK, RATE, MonoResampler, check_samples

TIME_BASE = fractions.Fraction(1, RATE)
MAX_PACKET = 1275 * 3  # the largest Opus packet: 120 ms as code 3 (RFC 6716 3.4, R5)
FRAME_MS = (10, 20, 40, 60, 80, 100, 120)


class OpusEncoder:
    def __init__(self, bitrate: int = 16000, frame_ms: int = 20) -> None:
        if frame_ms not in FRAME_MS:
            raise ValueError(f"Opus frames are {', '.join(map(str, FRAME_MS))} ms, "
                             f"not {frame_ms}")
        if not 6000 <= bitrate <= 510000:
            raise ValueError(f"Opus bitrates are 6000 to 510000 bit/s, not {bitrate}")
        self.codec = av.CodecContext.create("libopus", "w")
        self.codec.bit_rate = int(bitrate)
        self.codec.sample_rate = RATE
        self.codec.format = "s16"
        self.codec.layout = "mono"
        self.codec.time_base = TIME_BASE
        self.codec.options = {"application": "voip", "frame_duration": str(frame_ms)}
        self.frame_samples = RATE * frame_ms // 1000
        self._pending = np.zeros(0, np.int16)
        self._pts = 0
        self._pts0: int | None = None  # the first packet's pts (libopus starts before 0)

    def encode_packets(self, samples: np.ndarray) -> list[av.Packet]:
        """Buffer ``samples``; every complete frame's packet, pts in 1/48000 s from the
        first sample."""
        self._pending = np.concatenate([self._pending, check_samples(samples)])
        out: list[av.Packet] = []
        while len(self._pending) >= self.frame_samples:
            block, self._pending = (self._pending[:self.frame_samples],
                                    self._pending[self.frame_samples:])
            frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = RATE
            frame.pts = self._pts
            frame.time_base = TIME_BASE
            self._pts += len(block)
            for packet in self.codec.encode(frame):
                if self._pts0 is None:
                    self._pts0 = int(packet.pts or 0)
                packet.pts = int(packet.pts or 0) - self._pts0
                packet.time_base = TIME_BASE
                out.append(packet)
        return out

    def encode(self, samples: np.ndarray) -> list[bytes]:
        return [bytes(p) for p in self.encode_packets(samples)]


class OpusDecoder:
    def __init__(self) -> None:
        self.codec = av.CodecContext.create("libopus", "r")
        self.codec.sample_rate = RATE
        self.codec.layout = "mono"
        self.resample = MonoResampler()
        self.rejected = 0  # packets that were not Opus
        self.concealed = 0  # frames made up by libopus's concealment
        self._toc: int | None = None  # the last good packet's TOC byte

    def _run(self, data: bytes) -> np.ndarray:
        frames = self.codec.decode(av.Packet(data))
        samples = np.concatenate([self.resample(frame) for frame in frames] or
                                 [np.zeros(0, np.int16)])
        if not len(samples):
            raise ValueError("no samples")
        return samples

    def decode(self, data: bytes) -> np.ndarray:
        """One Opus packet -> (n,) int16 at 48 kHz; ValueError (counted) if it is not one."""
        try:
            if not isinstance(data, bytes) or not 1 <= len(data) <= MAX_PACKET:
                raise ValueError(f"size {len(data) if isinstance(data, bytes) else '?'}")
            out = self._run(data)
            if len(out) > RATE * 120 // 1000:
                raise ValueError(f"{len(out)} samples")
        except (av.error.FFmpegError, ValueError) as exc:
            self.rejected += 1
            raise ValueError(f"not an Opus packet: {exc}") from exc
        self._toc = data[0]
        return out

    def conceal(self, samples: int = CHUNK) -> np.ndarray:
        """``samples`` of libopus's packet-loss concealment, for a lost packet: the last
        sound carried on and faded out over consecutive losses. Silence before the first
        packet (there is nothing to carry on)."""
        if samples <= 0:
            return np.zeros(0, np.int16)
        if self._toc is None:
            return np.zeros(samples, np.int16)
        lost = bytes([self._toc & 0xFC])  # the same configuration, code 0, no payload
        pieces: list[np.ndarray] = []
        have = 0
        try:
            while have < samples:
                pieces.append(self._run(lost))
                have += len(pieces[-1])
        except (av.error.FFmpegError, ValueError):
            pieces.append(np.zeros(samples - have, np.int16))
        self.concealed += 1
        return np.concatenate(pieces)[:samples]
