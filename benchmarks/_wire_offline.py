"""The wire benchmark's computed part (no network): on MediaPipe-tracked landmarks of the
demo footage, through the real codec, bundler and jitter buffer,

- the bundles' real sizes (``bundle.pack``) with the codec as it is, and with redundancy
  (RED) only in the first packet of each bundle: within one message the packets before
  the last travel with it, so RED in packets 2..n repeats what the same message holds
  (a codec change this benchmark does not make, only sizes: ``LandmarkEncoder.redundancy``
  switched per packet);
- the landmark error the receiver shows when whole messages are lost (one lost message
  takes all its frames; RED in its first packet recovers the frame before it), against the
  driven landmarks at the sender instant each shown frame stands for (the jitter buffer's
  longer delay for bundles is latency, not error), in inter-ocular distances: what
  bundling costs at 5 % loss beside its latency; with today's playout (a least delay of
  50 ms, grown by the transit spread: for bundles the newest frame is up to n periods old
  when the next message comes, and the buffer extrapolates meanwhile) and with its least
  delay raised to cover a bundle (``bundle_delay_ms``, a ``PlayoutConfig`` setting).

Wire rates here are computed: messages a second times (their bytes + the per-message
overhead measured by the relay runs), labelled as such.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from avatar_cam.webrtc.basis import ExpressionBasis
from avatar_cam.webrtc.bundle import Bundler, is_bundle, unpack
from avatar_cam.webrtc.codec import LandmarkDecoder, LandmarkEncoder
from avatar_cam.webrtc.jitter import JitterBuffer, PlayoutConfig

FPS = 30.0
LOSS_FRAMES = 3600  # 2 minutes: enough lost messages at 5 % for the error to settle


def messages(basis: ExpressionBasis, driven: np.ndarray, n: int, red_first_only: bool
             ) -> list[tuple[int, bytes]]:
    """(index of the last frame in it, message) for each message the sender sends."""
    enc, bundler = LandmarkEncoder(basis), Bundler(n)
    out = []
    for i, points in enumerate(driven):
        if red_first_only:
            enc.redundancy = i % n == 0
        message = bundler.add_landmarks(enc.encode(points, int(round(i * 1000 / FPS))))
        if message is not None:
            out.append((i, message))
    return out


def shown_error(basis: ExpressionBasis, driven: np.ndarray, sent: list[tuple[int, bytes]],
                loss: float, seed: int, config: PlayoutConfig | None = None
                ) -> tuple[float, float]:
    """Mean landmark error (IOD) of what the receiver shows, and the share of frames lost
    for good, with each message lost at random with probability ``loss``."""
    rng = np.random.default_rng(seed)
    dec = LandmarkDecoder(basis)
    jb = JitterBuffer(basis.analyze(basis.neutral), config)
    events: list[tuple[float, int, Any]] = []
    for last, message in sent:
        if rng.random() >= loss:
            events.append((last * 1000.0 / FPS + 2.0 + 3.0 * rng.random(), 0, message))
    for i in range(len(driven)):
        events.append((i * 1000.0 / FPS + 2.0 + jb.config.delay_ms, 1, i))
    events.sort(key=lambda e: (e[0], e[1]))
    decoded: set[int] = set()
    err = []
    for when, kind, item in events:
        if kind == 0:
            packets = unpack(item).landmarks if is_bundle(item) else [item]
            for packet in packets:
                for f in dec.push(packet):
                    decoded.add(f.seq)
                    jb.push(f.seq, f.t_ms, basis.dequantize(f.q), when)
        else:  # against the sender instant it shows: a longer playout delay is latency,
            s = jb.sample(when)  # counted as such, not error
            if not np.isfinite(s.t_sender_ms):
                continue
            shown = basis.synthesize(s.params)
            err.append(float(np.linalg.norm((shown - at(driven, s.t_sender_ms))[:, :2],
                                            axis=1).mean()))
    return float(np.mean(err[30:])) / basis.iod, 1.0 - len(decoded) / len(driven)


def at(driven: np.ndarray, t_ms: float) -> np.ndarray:
    """The driven landmarks at sender time ``t_ms``, between frames linearly."""
    x = min(max(t_ms * FPS / 1000.0, 0.0), len(driven) - 1.0)
    i = min(int(x), len(driven) - 2)
    w = np.float32(x - i)
    return driven[i] * (1 - w) + driven[i + 1] * w


def forth_and_back(driven: np.ndarray, frames: int) -> np.ndarray:
    """``frames`` frames of ``driven`` played forth and back, as the calls replay it."""
    period = 2 * len(driven) - 2
    idx = [n % period for n in range(frames)]
    return driven[[i if i < len(driven) else period - i for i in idx]]


def bundle_delay_ms(n: int) -> float:
    """A least playout delay that covers a bundle: its first frame waits n - 1 periods,
    interpolation needs the frame after, plus 20 ms (the default's 50 for n = 1)."""
    return max(PlayoutConfig().delay_ms, n * 1000.0 / FPS + 20.0)


def compute(basis: ExpressionBasis, driven: np.ndarray, frames: tuple[int, ...],
            overhead: float, loss: float) -> list[dict[str, Any]]:
    """Per frames-per-message and RED placement: bytes, computed wire rate, error."""
    rows = []
    driven = forth_and_back(driven, LOSS_FRAMES)
    for n in frames:
        for red_first_only in (False, True) if n > 1 else (False,):
            sent = messages(basis, driven, n, red_first_only)
            size = float(np.mean([len(m) for _, m in sent]))
            rate = FPS / n
            errors = [shown_error(basis, driven, sent, x, seed=3) for x in (0.0, loss)]
            covered = PlayoutConfig(delay_ms=bundle_delay_ms(n))
            raised = shown_error(basis, driven, sent, loss, seed=3, config=covered)
            rows.append({
                "frames_per_message": n, "red": "first packet only" if red_first_only
                else "every packet (today)", "message_bytes": round(size, 1),
                "payload_kbps": round(size * rate * 8 / 1000, 2),
                "wire_kbps_computed": round((size + overhead) * rate * 8 / 1000, 2),
                "error_iod": round(errors[0][0], 4), "error_iod_at_loss": round(errors[1][0], 4),
                "frames_lost_at_loss": round(errors[1][1], 4),
                "playout_delay_ms_raised": round(bundle_delay_ms(n), 1),
                "error_iod_at_loss_delay_raised": round(raised[0], 4)})
    return rows
