"""Pacing: the one schedule for every loop that must run at a frame rate.

Frame ``n`` of a stream is due at ``anchor + n / fps``; ``Pacer.wait()`` sleeps until
the next frame is due. The rule, shared by the paced sources (``capture``, the
receiver's ``JitterSource``) and the pipeline's sends:

- A reader that comes early is slept for; one that comes late is never slept for, and
  the schedule is kept, so the frames after it go early and the long-run rate stays
  exactly ``fps`` through jitter (a slow decode, a busy core).
- That catching up is a burst of frames faster than ``fps``. It is allowed for at most
  ``max_lag_s`` of lateness ("bank at most this much slack"): a reader later than
  that re-anchors the schedule at its frame (lateness forgotten, the next frame one
  period on), so a stall costs no burst at all.

Sources use ``MAX_LAG_S``: a video's timeline survives hiccups of up to half a second,
and a longer stall is not replayed as frames the one-slot mailboxes downstream would
drop anyway. The sends (``send_pacer``) bank one and a half periods and keep them
(``keep_lag``: lateness beyond ``max_lag_s`` is cut to ``max_lag_s``, not forgotten, as
a token bucket that starts full): a schedule forgotten at each late frame locks onto a
source that runs at the same rate (a camera), and every frame then waits for its slot;
and a schedule that banks less than a render hiccup locks onto the hiccup, every frame
after it waiting the hiccup's length (measured: 35 ms capture-to-sink on 20 ms of
stages, for a whole run). With 1.5 periods kept, a frame that comes up to that much
early after the one before goes at once; the rate passes ``fps`` only by that credit.
The pipeline waits for the slot first and then takes the newest frame, and says when
it went (``sent()``), so a frame never waits for its slot while a newer one is made.

``SteadyLatency`` is the other schedule, for a picture that a voice is held back by
(a video call's sent frames, a landmark receiver's shown ones): each frame is due one
steady latency after its capture, ``PACE_PERCENTILE`` of how long the last
``PACE_FRAMES`` frames took to be ready, so nine frames in ten go exactly on time and the
voice, delayed by the same number, meets the lips; a frame ready later goes at once.
Measured on the 2-core machine: the picture's capture-to-sink latency spread 82-247 ms
burst to burst while the sound's spread 131-171 ms.

``clock`` and ``sleep`` are injectable so tests run seconds of schedule in no time.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

# Lateness a paced source still catches up on; beyond it the schedule re-anchors.
MAX_LAG_S = 0.5
SEND_CREDIT = 1.5  # periods of slack the sends keep (see the module docstring)

PACE_FRAMES = 90  # frames whose ready latency sets a steady latency (3 s at 30 fps)
PACE_PERCENTILE = 90  # of those: 9 frames in 10 leave exactly on time

Clock = Callable[[], float]  # monotonic seconds
Sleep = Callable[[float], None]


class Pacer:
    """Paces frame ``n`` of a stream to ``t0 + n / fps``; never sleeps for a late reader.

    ``t0`` is the first ``wait()``. A reader more than ``max_lag_s`` late re-anchors
    ``t0`` at that frame instead of getting a catch-up burst (see the module docstring).
    """

    def __init__(self, fps: float, clock: Clock = time.monotonic,
                 sleep: Sleep = time.sleep, *, max_lag_s: float = MAX_LAG_S,
                 keep_lag: bool = False) -> None:
        if not math.isfinite(fps) or fps <= 0.0:
            raise ValueError(f"fps must be a positive number, got {fps}")
        if not math.isfinite(max_lag_s) or max_lag_s < 0.0:
            raise ValueError(f"max_lag_s must be >= 0 seconds, got {max_lag_s}")
        self.period = 1.0 / fps
        self.max_lag_s = max_lag_s
        self.keep_lag = keep_lag
        self._clock = clock
        self._sleep = sleep
        self._t0: float | None = None
        self._n = 0
        self._due: float | None = None  # when the frame of the last wait() was due

    def wait(self) -> None:
        """Block until the next frame is due (at once when it is overdue)."""
        now = self._clock()
        if self._t0 is None:  # a pacer that keeps slack starts with all of it banked
            self._t0 = now - (self.max_lag_s if self.keep_lag else 0.0)
        due = self._t0 + self._n * self.period
        if now < due:
            self._sleep(due - now)
        elif now - due > self.max_lag_s:
            due = self._catch_up(now - due, now, 0)
        self._due = due
        self._n += 1

    def lateness_s(self) -> float:
        """How long ago the frame of the last ``wait()`` was due (0 before any)."""
        return 0.0 if self._due is None else max(0.0, self._clock() - self._due)

    def sent(self) -> None:
        """The frame ``wait()`` was for went out only now (its reader waited for it after
        the slot): the lateness rule applies to this moment, so the next frame keeps its
        distance from this one."""
        now = self._clock()
        if self._due is not None and now - self._due > self.max_lag_s:
            self._due = self._catch_up(now - self._due, now, 1)

    def _catch_up(self, lateness: float, now: float, counted: int) -> float:
        """Apply the rule to a frame ``lateness`` s overdue at ``now`` (``counted``: 1 if
        it was already numbered); returns its due time under the new schedule."""
        assert self._t0 is not None
        if self.keep_lag:  # keep max_lag_s of slack: the schedule follows the reader
            self._t0 += lateness - self.max_lag_s
            return now - self.max_lag_s
        self._t0, self._n = now, counted  # forget it: this frame is the new anchor
        return now


def send_pacer(fps: float, clock: Clock = time.monotonic,
               sleep: Sleep = time.sleep) -> Pacer:
    """The pipeline's send pacing: at most ``fps`` sends a second on average, a frame
    at most 1.5 periods early after the one before (a render hiccup or a camera's jitter
    costs no lasting latency), and a stall costs at most that credit."""
    return Pacer(fps, clock, sleep, max_lag_s=SEND_CREDIT / fps, keep_lag=True)


class SteadyLatency:
    """The steady latency of a stream's frames (see the module docstring); thread-safe:
    ``ready`` where frames become ready, ``hold_ms`` wherever they are sent or the voice
    is delayed."""

    def __init__(self, frames: int = PACE_FRAMES, percentile: float = PACE_PERCENTILE
                 ) -> None:
        self.percentile = percentile
        self._lock = threading.Lock()
        self._ready_ms: deque[float] = deque(maxlen=frames)

    def ready(self, latency_ms: float) -> None:
        """A frame was ready ``latency_ms`` after its capture."""
        with self._lock:
            self._ready_ms.append(float(latency_ms))

    @property
    def measured(self) -> bool:
        return bool(self._ready_ms)

    def hold_ms(self) -> float:
        """How long after its capture a frame is due (0 before any was ready)."""
        with self._lock:
            ready = sorted(self._ready_ms)
        if not ready:
            return 0.0
        return ready[min(len(ready) - 1, int(len(ready) * self.percentile / 100))]
