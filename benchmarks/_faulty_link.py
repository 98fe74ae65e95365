"""The faults of a bad link, one direction at a time, for the relay (``_relay.py``).

Every datagram that enters one way of the link is decided once, in this order:

1. outage: inside a scheduled outage (``Outages``, shared by both ways) it is dropped,
   whatever it is (STUN consent checks, DTLS, SRTP, SCTP alike): the link is down.
2. burst loss: a Gilbert-Elliott chain (``Burst``) steps once per datagram between a good
   and a bad state (``p_enter`` good->bad, ``p_leave`` bad->good) and drops it with that
   state's loss rate. Mean loss ``pi_bad * loss_bad + (1 - pi_bad) * loss_good`` with
   ``pi_bad = p_enter / (p_enter + p_leave)``; bad runs last ``1 / p_leave`` datagrams on
   average.
3. random loss: i.i.d. with probability ``loss``.
4. delay: ``delay_ms`` plus a uniform draw in ``[0, jitter_ms]`` per datagram, independent
   of its neighbours, so two datagrams sent closer together than their delays differ
   arrive swapped (jitter reorders, as on a real path with several queues). A share
   ``reorder`` of datagrams is held back ``reorder_ms`` more on top (explicit reordering:
   later datagrams overtake it).

Loss (2 and 3) applies to every datagram, or with ``media_only`` to what carries the call
(SCTP, SRTP, SRTCP) only, never STUN or the DTLS handshake: the relay's historic loss, so
every run connects alike. Every draw comes from one ``random.Random(seed)`` per direction,
so a run's faults repeat exactly for the same datagrams. Counted per direction: datagrams
seen, lost by outage / burst / random, delayed, held back, and observed reorders (a
datagram handed on after one that entered after it).

Nothing here touches a socket: ``FaultyWay.decide(now_s, media)`` says drop (None) or
after how many seconds to hand the datagram on; the relay schedules it.
"""

from __future__ import annotations

import bisect
import random
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Burst:
    """A Gilbert-Elliott loss chain (see the module docstring)."""

    p_enter: float  # good -> bad, per datagram
    p_leave: float  # bad -> good, per datagram
    loss_bad: float = 1.0
    loss_good: float = 0.0

    def __post_init__(self) -> None:
        for name in ("p_enter", "p_leave", "loss_bad", "loss_good"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"Burst.{name} must be in [0, 1], got {v}")
        if self.p_leave == 0.0:
            raise ValueError("Burst.p_leave must be > 0 (a bad state that never ends)")

    @classmethod
    def of(cls, mean_loss: float, mean_burst: float) -> Burst:
        """The chain that loses ``mean_loss`` of datagrams in runs of ``mean_burst``
        datagrams on average (every datagram in the bad state lost)."""
        if not 0.0 < mean_loss < 1.0 or mean_burst < 1.0:
            raise ValueError(f"need 0 < mean_loss < 1 and mean_burst >= 1, got {mean_loss}, "
                             f"{mean_burst}")
        p_leave = 1.0 / mean_burst
        return cls(p_enter=p_leave * mean_loss / (1.0 - mean_loss), p_leave=p_leave)

    @property
    def bad_share(self) -> float:
        return self.p_enter / (self.p_enter + self.p_leave)

    @property
    def mean_loss(self) -> float:
        return self.bad_share * self.loss_bad + (1.0 - self.bad_share) * self.loss_good


@dataclass(frozen=True)
class Faults:
    """One direction's faults (see the module docstring); the default is a clean link."""

    loss: float = 0.0
    burst: Burst | None = None
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    reorder: float = 0.0
    reorder_ms: float = 0.0
    media_only: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss <= 1.0 or not 0.0 <= self.reorder <= 1.0:
            raise ValueError(f"loss and reorder are shares in [0, 1], got {self.loss}, "
                             f"{self.reorder}")
        if min(self.delay_ms, self.jitter_ms, self.reorder_ms) < 0:
            raise ValueError("delay_ms, jitter_ms and reorder_ms must be >= 0")

    def describe(self) -> str:
        parts = []
        if self.loss:
            parts.append(f"{self.loss:.0%} i.i.d. loss")
        if self.burst is not None:
            parts.append(f"burst loss {self.burst.mean_loss:.1%} in runs of "
                         f"{1 / self.burst.p_leave:.1f}")
        if self.delay_ms or self.jitter_ms:
            parts.append(f"delay {self.delay_ms:g} + U[0, {self.jitter_ms:g}] ms")
        if self.reorder:
            parts.append(f"{self.reorder:.0%} held back {self.reorder_ms:g} ms")
        if parts and self.media_only:
            parts.append("loss on media only")
        return ", ".join(parts) or "clean"


class Outages:
    """Windows ``[start, start + duration)`` in seconds of a monotonic clock, sorted."""

    def __init__(self, windows: list[tuple[float, float]]) -> None:
        ordered = sorted((float(s), float(d)) for s, d in windows)
        for (s0, d0), (s1, _) in zip(ordered, ordered[1:], strict=False):
            if s0 + d0 > s1:
                raise ValueError(f"outages overlap: {s0}+{d0} s and {s1} s")
        self.windows = ordered
        self._starts = [s for s, _ in ordered]

    @classmethod
    def every(cls, t0: float, period_s: float, duration_s: float, until: float) -> Outages:
        """An outage of ``duration_s`` at ``t0 + k * period_s`` (k >= 1) before ``until``."""
        if period_s <= duration_s:
            raise ValueError(f"outages of {duration_s} s every {period_s} s never end")
        out = []
        k = 1
        while t0 + k * period_s + duration_s <= until:
            out.append((t0 + k * period_s, duration_s))
            k += 1
        return cls(out)

    def active(self, now_s: float) -> bool:
        i = bisect.bisect_right(self._starts, now_s) - 1
        return i >= 0 and now_s < self.windows[i][0] + self.windows[i][1]


@dataclass
class FaultyWay:
    """One way of the link: its faults, its random stream, its counts."""

    faults: Faults = field(default_factory=Faults)
    seed: int = 0
    outages: Outages | None = None
    counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._bad = False
        self._entered = 0  # index of the next datagram to enter
        self._newest_out = -1  # highest index handed on so far

    def decide(self, now_s: float, media: bool = True) -> tuple[int, float] | None:
        """(the datagram's index, seconds to hold it) or None to drop it."""
        f, rng = self.faults, self._rng
        index = self._entered
        self._entered += 1
        self.counts["seen"] += 1
        if self.outages is not None and self.outages.active(now_s):
            self.counts["lost_outage"] += 1
            return None
        lossy = media or not f.media_only
        if f.burst is not None:
            b = f.burst
            self._bad = (rng.random() >= b.p_leave) if self._bad else (rng.random() < b.p_enter)
            if lossy and rng.random() < (b.loss_bad if self._bad else b.loss_good):
                self.counts["lost_burst"] += 1
                return None
        if f.loss and lossy and rng.random() < f.loss:
            self.counts["lost_random"] += 1
            return None
        delay_ms = f.delay_ms + (rng.random() * f.jitter_ms if f.jitter_ms else 0.0)
        if f.reorder and rng.random() < f.reorder:
            delay_ms += f.reorder_ms
            self.counts["held_back"] += 1
        if delay_ms > 0:
            self.counts["delayed"] += 1
        return index, delay_ms / 1000.0

    def handed_on(self, index: int) -> None:
        """Datagram ``index`` left the link now: counted as reordered if a later one left
        before it."""
        if index < self._newest_out:
            self.counts["reordered"] += 1
        else:
            self._newest_out = index
        self.counts["forwarded"] += 1

    @property
    def lost(self) -> int:
        return sum(v for k, v in self.counts.items() if k.startswith("lost_"))
