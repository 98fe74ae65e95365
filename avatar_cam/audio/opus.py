"""Opus through PyAV's libopus: speech at a chosen bitrate, 20 ms frames.

``OpusEncoder.encode`` gives the packets' bytes (what a landmark bundle carries);
``encode_packets`` gives ``av.Packet``s with their pts (aiortc sends a packet as it is on
an RTP track, so the bitrate stays ours). ``OpusDecoder.decode`` checks what it is given:
a packet from the network that is not Opus raises ValueError, for the caller to count.
"""

from __future__ import annotations

import fractions

import av
import numpy as np

from .chunk import CHUNK, RATE, check_samples

TIME_BASE = fractions.Fraction(1, RATE)
MAX_PACKET = 1275  # the largest Opus packet (RFC 6716)


class OpusEncoder:
    def __init__(self, bitrate: int = 16000, frame_ms: int = 20) -> None:
        if frame_ms not in (10, 20, 40, 60):
            raise ValueError(f"Opus frames are 10, 20, 40 or 60 ms, not {frame_ms}")
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
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)

    def decode(self, data: bytes) -> np.ndarray:
        """One Opus packet -> (n,) int16 at 48 kHz; ValueError if it is not one."""
        if not isinstance(data, bytes) or not 1 <= len(data) <= MAX_PACKET:
            raise ValueError("not an Opus packet (size)")
        try:
            frames = self.codec.decode(av.Packet(data))
            pieces = [f.to_ndarray().reshape(-1) for frame in frames
                      for f in self.resampler.resample(frame)]
        except (av.error.FFmpegError, ValueError) as exc:
            raise ValueError(f"not an Opus packet: {exc}") from exc
        if not pieces:
            raise ValueError("not an Opus packet (no samples)")
        return np.concatenate(pieces).astype(np.int16)

    def conceal(self, samples: int = CHUNK) -> np.ndarray:
        """What plays for a lost packet: silence (PyAV does not expose libopus's PLC)."""
        return np.zeros(samples, np.int16)
