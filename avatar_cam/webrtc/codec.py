"""The landmark-only wire format: a few bytes per frame, safe to feed arbitrary bytes.

Packet, version 1 (all integers big-endian)::

    byte 0     0xA0 | VERSION          magic nibble and format version
    byte 1     flags                   bit 0 KEY, bit 1 FACE, bit 2 RED; others zero
    byte 2     basis tag               first byte of the sender's basis sha256
    bytes 3-4  seq                     uint16, +1 per packet, wraps
    bytes 5-6  timestamp               uint16 milliseconds since the stream began, wraps
    payload    bit stream, MSB first, zero-padded to a byte:
               KEY: q[i] for each of the 7 + K parameters, signed Exp-Golomb of
                    order basis.order_key[i] (absolute values, decodable alone)
               else: q[i] - q_prev[i], order basis.order_delta[i] (predicted from
                    the previous packet's frame)
               RED (only without KEY): then the previous packet's own deltas and how
                    many ms before this one it was (order 5), so one lost packet costs
                    nothing

``q`` are the basis parameters (head pose + expression coefficients, see ``basis``)
quantized by the basis steps. Prediction works on those integers, so encoder and
decoder never drift; a KEY packet every ``key_every`` packets bounds what a burst of
losses can break. The decoder drops (and counts) anything malformed: wrong length,
magic, version, reserved flag bits, basis tag, out-of-range values, codes that run
past the end, non-zero padding, trailing bytes. Its state is bounded.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from .basis import ExpressionBasis

VERSION = 1
MAGIC = 0xA0
HEADER_BYTES = 7
MAX_PACKET_BYTES = 96
KEY, FACE, RED = 1, 2, 4
_KNOWN_FLAGS = KEY | FACE | RED
DT_ORDER = 5
MAX_DT_MS = 5000
MAX_PREFIX = 24  # longest Exp-Golomb prefix the decoder accepts: bounds the work per value
HISTORY = 64  # decoded frames kept as prediction references
MAX_PENDING = 16  # packets waiting for a missing reference (reordering)


class Malformed(ValueError):
    """A packet that fails a check; the decoder counts it under ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BitWriter:
    def __init__(self) -> None:
        self._acc = 0
        self._n = 0

    def bits(self, value: int, n: int) -> None:
        self._acc = (self._acc << n) | (value & ((1 << n) - 1))
        self._n += n

    def eg(self, value: int, k: int) -> None:
        """Signed value as zigzag + order-k Exp-Golomb."""
        u = 2 * value if value >= 0 else -2 * value - 1
        m = u + (1 << k)
        nbits = m.bit_length()
        self.bits(0, nbits - 1 - k)
        self.bits(m, nbits)

    def getvalue(self) -> bytes:
        pad = -self._n % 8
        total = self._n + pad
        return (self._acc << pad).to_bytes(total // 8, "big") if total else b""


class BitReader:
    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._n = 8 * len(data)
        self._pos = 0

    def bits(self, n: int) -> int:
        if self._pos + n > self._n:
            raise Malformed("truncated")
        self._pos += n
        return (self._value >> (self._n - self._pos)) & ((1 << n) - 1)

    def eg(self, k: int) -> int:
        zeros = 0
        while self.bits(1) == 0:
            zeros += 1
            if zeros > MAX_PREFIX:
                raise Malformed("code too long")
        m = (1 << (zeros + k)) | self.bits(zeros + k)
        u = m - (1 << k)
        return u // 2 if u % 2 == 0 else -(u + 1) // 2

    def finish(self) -> None:
        """The rest must be zero padding shorter than a byte."""
        rest = self._n - self._pos
        if rest >= 8:
            raise Malformed("trailing bytes")
        if rest and self.bits(rest) != 0:
            raise Malformed("non-zero padding")


@dataclass
class Packet:
    """A parsed (not yet decoded) packet."""

    seq: int  # 16-bit as sent
    t_ms: int  # 16-bit as sent
    key: bool
    face: bool
    values: np.ndarray  # (n,) int64: absolute q (KEY) or delta to the previous frame
    prev_delta: np.ndarray | None  # RED: the previous packet's deltas
    prev_dt_ms: int


@dataclass
class DecodedFrame:
    seq: int  # unwrapped: keeps counting past 65535
    t_ms: int  # unwrapped sender milliseconds
    q: np.ndarray  # (7 + K,) int64 quantized parameters
    face: bool
    recovered: bool = False  # rebuilt from the next packet's redundancy


def encode_packet(basis: ExpressionBasis, seq: int, t_ms: int, q: np.ndarray,
                  q_prev: np.ndarray | None, face: bool, red: tuple[np.ndarray, int] | None
                  ) -> bytes:
    """Serialize one frame; ``q_prev`` None makes a KEY packet."""
    flags = (FACE if face else 0) | (KEY if q_prev is None else 0)
    if red is not None and q_prev is not None:
        flags |= RED
    w = BitWriter()
    if q_prev is None:
        for v, k in zip(q.tolist(), basis.order_key.tolist(), strict=True):
            w.eg(v, k)
    else:
        for v, k in zip((q - q_prev).tolist(), basis.order_delta.tolist(), strict=True):
            w.eg(v, k)
        if red is not None:
            delta, dt = red
            for v, k in zip(delta.tolist(), basis.order_delta.tolist(), strict=True):
                w.eg(v, k)
            w.eg(min(max(dt, 0), MAX_DT_MS), DT_ORDER)
    header = bytes([MAGIC | VERSION, flags, basis.tag]) + (seq & 0xFFFF).to_bytes(2, "big") \
        + (t_ms & 0xFFFF).to_bytes(2, "big")
    return header + w.getvalue()


def parse_packet(basis: ExpressionBasis, data: bytes) -> Packet:
    """Check and parse one packet; raises Malformed with the reason."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise Malformed("not bytes")
    data = bytes(data)
    if len(data) < HEADER_BYTES or len(data) > MAX_PACKET_BYTES:
        raise Malformed("length")
    if data[0] & 0xF0 != MAGIC:
        raise Malformed("magic")
    if data[0] & 0x0F != VERSION:
        raise Malformed("version")
    flags = data[1]
    if flags & ~_KNOWN_FLAGS or (flags & KEY and flags & RED):
        raise Malformed("flags")
    if data[2] != basis.tag:
        raise Malformed("basis")
    seq = int.from_bytes(data[3:5], "big")
    t_ms = int.from_bytes(data[5:7], "big")
    r = BitReader(data[HEADER_BYTES:])
    key = bool(flags & KEY)
    orders = (basis.order_key if key else basis.order_delta).tolist()
    values = np.array([r.eg(k) for k in orders], dtype=np.int64)
    limit = basis.limits if key else 2 * basis.limits
    if (np.abs(values) > limit).any():
        raise Malformed("range")
    prev_delta, prev_dt = None, 0
    if flags & RED:
        prev_delta = np.array([r.eg(k) for k in basis.order_delta.tolist()], dtype=np.int64)
        prev_dt = r.eg(DT_ORDER)
        if (np.abs(prev_delta) > 2 * basis.limits).any() or not 0 <= prev_dt <= MAX_DT_MS:
            raise Malformed("range")
    r.finish()
    return Packet(seq, t_ms, key, bool(flags & FACE), values, prev_delta, prev_dt)


class LandmarkEncoder:
    """Landmarks -> packets. ``encode`` must be called in sending order."""

    def __init__(self, basis: ExpressionBasis, key_every: int = 6, redundancy: bool = True
                 ) -> None:
        if not 1 <= key_every <= 600:
            raise ValueError(f"key_every must be in 1..600, got {key_every}")
        self.basis = basis
        self.key_every = key_every
        self.redundancy = redundancy
        self.seq = 0
        self.clamped = 0
        self.bytes_sent = 0
        self._t0_ms: int | None = None
        self._prev: np.ndarray | None = None
        self._prev_delta: np.ndarray | None = None
        self._prev_t = 0
        self.recent: dict[int, np.ndarray] = {}  # seq (16-bit) -> q of the last 256 packets

    @property
    def t0_ms(self) -> int | None:
        """The sender clock (ms) of the first packet: timestamps count from here."""
        return self._t0_ms

    def encode(self, points: np.ndarray, t_ms: int, face: bool = True) -> bytes:
        """A packet for (478, 3) landmarks in the basis person's crop pixels at ``t_ms``."""
        q, clamped = self.basis.quantize(self.basis.analyze(points))
        return self.encode_q(q, t_ms, face, clamped)

    def encode_q(self, q: np.ndarray, t_ms: int, face: bool = True, clamped: int = 0) -> bytes:
        self.clamped += clamped
        if self._t0_ms is None:
            self._t0_ms = t_ms
        rel = t_ms - self._t0_ms
        key = self._prev is None or self.seq % self.key_every == 0
        red = None
        if not key and self.redundancy and self._prev_delta is not None:
            red = (self._prev_delta, rel - self._prev_t)  # it sits this far back
        packet = encode_packet(self.basis, self.seq, rel, q, None if key else self._prev,
                               face, red)
        self._prev_delta = None if self._prev is None else q - self._prev
        self._prev, self._prev_t = q, rel
        self.recent[self.seq & 0xFFFF] = q
        if len(self.recent) > 256:
            del self.recent[next(iter(self.recent))]
        self.seq += 1
        self.bytes_sent += len(packet)
        return packet


def _unwrap(value: int, reference: int, bits: int = 16) -> int:
    """The integer nearest ``reference`` whose low ``bits`` equal ``value``."""
    span = 1 << bits
    diff = (value - reference) % span
    if diff >= span // 2:
        diff -= span
    return reference + diff


class LandmarkDecoder:
    """Packets -> decoded frames, in any arrival order; counts everything it drops.

    ``push(data)`` returns the frames that became decodable (oldest first): the packet's
    own, plus frames rebuilt from redundancy and packets that were waiting for it.
    """

    def __init__(self, basis: ExpressionBasis) -> None:
        self.basis = basis
        self.counts: Counter[str] = Counter()
        self._known: dict[int, tuple[np.ndarray, int]] = {}  # seq -> (q, t_ms)
        self._pending: dict[int, tuple[Packet, int]] = {}  # seq -> (packet, t_ms unwrapped)
        self._top_seq: int | None = None
        self._top_t = 0

    def push(self, data: bytes) -> list[DecodedFrame]:
        self.counts["packets"] += 1
        try:
            packet = parse_packet(self.basis, data)
        except Malformed as exc:
            self.counts["malformed"] += 1
            self.counts[f"malformed_{exc.reason}"] += 1
            return []
        if self._top_seq is None:
            seq, t_ms = packet.seq, packet.t_ms
            if not packet.key:
                # Cannot anchor on a predicted packet: wait for the first KEY.
                self.counts["undecodable"] += 1
                return []
        else:
            seq = _unwrap(packet.seq, self._top_seq)
            t_ms = _unwrap(packet.t_ms, self._top_t)
        if self._top_seq is not None and seq <= self._top_seq - HISTORY:
            self.counts["stale"] += 1
            return []
        if seq in self._known or seq in self._pending:
            self.counts["duplicate"] += 1
            return []
        if self._top_seq is None or seq > self._top_seq:
            self._top_seq, self._top_t = seq, t_ms
        out: list[DecodedFrame] = []
        if not self._try(seq, packet, t_ms, out):
            self._pending[seq] = (packet, t_ms)
        self._drain(out)
        self._prune()
        self.counts["decoded"] += len(out)
        return sorted(out, key=lambda f: f.seq)

    def _try(self, seq: int, p: Packet, t_ms: int, out: list[DecodedFrame]) -> bool:
        q: np.ndarray | None = None
        if p.key:
            q = p.values
        elif seq - 1 in self._known:
            q = self._known[seq - 1][0] + p.values
        elif p.prev_delta is not None and seq - 2 in self._known:
            prev = self._known[seq - 2][0] + p.prev_delta
            if self._accept(seq - 1, prev, t_ms - p.prev_dt_ms, p.face, True, out):
                q = prev + p.values
        if q is None:
            return False
        return self._accept(seq, q, t_ms, p.face, False, out)

    def _accept(self, seq: int, q: np.ndarray, t_ms: int, face: bool, recovered: bool,
                out: list[DecodedFrame]) -> bool:
        if (np.abs(q) > self.basis.limits).any():
            self.counts["malformed"] += 1
            self.counts["malformed_range"] += 1
            return False
        self._known[seq] = (q, t_ms)
        self._pending.pop(seq, None)
        if recovered:
            self.counts["recovered"] += 1
        out.append(DecodedFrame(seq, t_ms, q, face, recovered))
        return True

    def _drain(self, out: list[DecodedFrame]) -> None:
        progress = True
        while progress:
            progress = False
            for seq in sorted(self._pending):
                packet, t_ms = self._pending[seq]
                if self._try(seq, packet, t_ms, out):
                    progress = True

    def _prune(self) -> None:
        top = self._top_seq if self._top_seq is not None else 0
        for seq in [s for s in self._known if s <= top - HISTORY]:
            del self._known[seq]
        for seq in [s for s in self._pending if s <= top - HISTORY]:
            del self._pending[seq]
            self.counts["undecodable"] += 1
        # A newer KEY (or a reference that never comes) makes old waiters pointless.
        while len(self._pending) > MAX_PENDING:
            del self._pending[min(self._pending)]
            self.counts["undecodable"] += 1
