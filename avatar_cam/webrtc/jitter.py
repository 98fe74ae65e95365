"""The landmark receiver's playout: a small jitter buffer over decoded codec parameters.

Frames arrive with sender timestamps, late, out of order or not at all. ``sample(now)``
answers what to show at local time ``now``: the sender's timeline is mapped onto the
local clock by the smallest transit seen lately (the least-delayed packet), and played
behind it by the spread of what each frame needs (the 95th percentile, over the smallest
transit, plus a margin, of each frame's arrival less its predecessor's sender time: a
sample between two frames needs the later one, so its transit *and* the frames' spacing
count; with transit alone a sender at 15-20 fps left a fifth of the samples
extrapolated on loopback), at least ``delay_ms`` and at most ``max_delay_ms``: late
packets get that much time to arrive, and a steady link pays only the minimum.

- a frame on each side of the playout time: linear interpolation (also across lost
  frames, up to ``max_gap_ms`` apart);
- only older frames: extrapolate from the last two for at most ``extrapolate_ms``, hold
  that for ``hold_ms``, then ease to the neutral face over ``ease_ms``;
- when frames return after a hold or an ease, blend in over ``ease_in_ms`` instead of
  jumping; after a mere extrapolation (a prediction along the motion, close to it) the
  true frames show at once, so a mouth that opens then is not shown opening late.

Parameters are interpolated linearly, rotation vectors included (frames ~33 ms apart
differ by a few degrees at most, where that equals slerp to well under a pixel).
Everything is bounded: at most ``capacity`` frames are kept.
"""

from __future__ import annotations

import bisect
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PlayoutConfig:
    delay_ms: float = 50.0  # least playout delay behind the least-delayed packet
    max_delay_ms: float = 250.0  # most: beyond that, late packets are concealed instead
    margin_ms: float = 10.0  # added to the observed transit spread
    max_gap_ms: float = 400.0  # interpolate across lost frames up to this far apart
    extrapolate_ms: float = 100.0  # predict past the newest frame at most this long
    hold_ms: float = 250.0  # then keep the last pose this long
    ease_ms: float = 500.0  # then ease to the neutral face over this long
    ease_in_ms: float = 150.0  # blend back in when frames return
    capacity: int = 64  # frames kept
    clock_window: int = 90  # packets over which the smallest transit is taken


@dataclass
class Sample:
    params: np.ndarray  # (n,) float64
    state: str  # ok | concealed | extrapolated | held | easing | neutral | waiting
    t_sender_ms: float  # the sender time shown (nan before the first frame)


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


class JitterBuffer:
    def __init__(self, neutral_params: np.ndarray, config: PlayoutConfig | None = None) -> None:
        self.neutral = np.asarray(neutral_params, dtype=np.float64).copy()
        self.config = config or PlayoutConfig()
        self.counts: Counter[str] = Counter()
        self._times: list[float] = []  # sender ms, sorted
        self._frames: list[tuple[int, np.ndarray]] = []  # (seq, params), same order
        self._transit: deque[float] = deque(maxlen=self.config.clock_window)
        # arrival - the previous frame's sender time, of frames that came after it (a lost
        # frame's gap is concealment's to bridge, not the delay's)
        self._need: deque[float] = deque(maxlen=self.config.clock_window)
        self._shown: np.ndarray | None = None
        self._ease_from: np.ndarray | None = None
        self._ease_start = 0.0
        self._was_ok = True
        self.delay_ms = self.config.delay_ms
        self.floor_ms = 0.0  # least delay the messages' spacing needs (``cover``)

    def cover(self, spacing_ms: float) -> None:
        """The sender bundles frames: the first of a message waits for the last, so the
        playout delay must reach past one message's spacing (plus the margin), or the
        buffer extrapolates between messages."""
        self.floor_ms = max(self.floor_ms, float(spacing_ms) + self.config.margin_ms)

    def __len__(self) -> int:
        return len(self._times)

    def push(self, seq: int, t_sender_ms: float, params: np.ndarray, now_ms: float) -> None:
        """A decoded frame arrived at local ``now_ms``."""
        x = np.asarray(params, dtype=np.float64)
        if x.shape != self.neutral.shape or not np.isfinite(x).all():
            self.counts["rejected"] += 1
            return
        self._transit.append(now_ms - t_sender_ms)
        i = bisect.bisect_left(self._times, t_sender_ms)
        if i == len(self._times) and i > 0 and self._frames[-1][0] == seq - 1:
            self._need.append(now_ms - self._times[-1])  # needed from its predecessor's time on
        if i < len(self._times) and self._times[i] == t_sender_ms:
            self.counts["duplicate"] += 1
            return
        playout = self.playout_time(now_ms)
        if self._times and t_sender_ms < playout - self.config.max_gap_ms:
            self.counts["too_late"] += 1
            return
        self._times.insert(i, float(t_sender_ms))
        self._frames.insert(i, (seq, x))
        self.counts["pushed"] += 1
        while len(self._times) > self.config.capacity:
            del self._times[0]
            del self._frames[0]

    @property
    def min_transit_ms(self) -> float:
        """The fastest packet's apparent transit (local arrival - sender time) over the
        clock window, 0 before any packet: sender time + this is the local time."""
        return min(self._transit) if self._transit else 0.0

    def playout_time(self, now_ms: float) -> float:
        """The sender time shown at local ``now_ms``."""
        if not self._transit:
            return float("nan")
        return now_ms - min(self._transit) - self.delay_ms

    def _adapt_delay(self) -> None:
        """Move the playout delay toward the transit spread (see the module docstring),
        a little per sample: a jump would replay or skip motion."""
        cfg = self.config
        if len(self._transit) < 2:
            return
        need = self._need if len(self._need) >= 2 else self._transit
        spread = float(np.percentile(need, 95)) - min(self._transit) + cfg.margin_ms
        target = min(max(cfg.delay_ms, self.floor_ms, spread), cfg.max_delay_ms)
        step = 2.0 if target > self.delay_ms else 1.0  # ms per sample: grow fast, shrink slower
        self.delay_ms += float(np.clip(target - self.delay_ms, -step, step))

    def sample(self, now_ms: float) -> Sample:
        cfg = self.config
        self._adapt_delay()
        t = self.playout_time(now_ms)
        if not self._times:
            return self._emit(self.neutral, "neutral", t, now_ms)
        self._forget_before(t)
        i = bisect.bisect_right(self._times, t)
        if i == 0:
            return self._emit(self._frames[0][1], "waiting", t, now_ms)
        ta, (sa, xa) = self._times[i - 1], self._frames[i - 1]
        if i < len(self._times) and self._times[i] - ta <= cfg.max_gap_ms:
            tb, (sb, xb) = self._times[i], self._frames[i]
            u = (t - ta) / max(tb - ta, 1e-9)
            x = xa + u * (xb - xa)
            state = "ok" if sb - sa == 1 else "concealed"
            return self._emit(x, state, t, now_ms)
        late = t - ta
        if late <= 1e-6:
            return self._emit(xa, "ok", t, now_ms)
        x = xa
        if i >= 2 and ta - self._times[i - 2] <= 2 * cfg.max_gap_ms / 3:
            tp, (_, xp) = self._times[i - 2], self._frames[i - 2]
            x = xa + (xa - xp) * min(late, cfg.extrapolate_ms) / max(ta - tp, 1e-9)
        if late <= cfg.extrapolate_ms:
            return self._emit(x, "extrapolated", t, now_ms)
        if late <= cfg.extrapolate_ms + cfg.hold_ms:
            return self._emit(x, "held", t, now_ms)
        u = _smoothstep((late - cfg.extrapolate_ms - cfg.hold_ms) / max(cfg.ease_ms, 1e-9))
        state = "easing" if u < 1.0 else "neutral"
        return self._emit(x + u * (self.neutral - x), state, t, now_ms)

    def _forget_before(self, t: float) -> None:
        # Keep two frames at or before the playout time: interpolation and velocity.
        keep_from = bisect.bisect_right(self._times, t) - 2
        if keep_from > 0:
            del self._times[:keep_from]
            del self._frames[:keep_from]

    def _emit(self, x: np.ndarray, state: str, t: float, now_ms: float) -> Sample:
        ok = state in ("ok", "concealed", "waiting")
        if ok and not self._was_ok and self._shown is not None:
            self._ease_from, self._ease_start = self._shown, now_ms
        self._was_ok = ok or state == "extrapolated"
        out = np.asarray(x, dtype=np.float64)
        if ok and self._ease_from is not None:
            u = _smoothstep((now_ms - self._ease_start) / max(self.config.ease_in_ms, 1e-9))
            out = self._ease_from + u * (out - self._ease_from)
            if u >= 1.0:
                self._ease_from = None
        self._shown = out
        self.counts[state] += 1
        return Sample(out.copy(), state, t)
