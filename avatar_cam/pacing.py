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

Only ``max_lag_s`` differs between the callers. Sources use ``MAX_LAG_S``: a video's
timeline survives hiccups of up to half a second, and a longer stall is not replayed
as frames the one-slot mailboxes downstream would drop anyway. The sends use one
period (``send_pacer``): a sink (a virtual camera, a track) gets at most one frame
early after a late one, never a catch-up run.

``clock`` and ``sleep`` are injectable so tests run seconds of schedule in no time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

# Lateness a paced source still catches up on; beyond it the schedule re-anchors.
MAX_LAG_S = 0.5

Clock = Callable[[], float]  # monotonic seconds
Sleep = Callable[[float], None]


class Pacer:
    """Paces frame ``n`` of a stream to ``t0 + n / fps``; never sleeps for a late reader.

    ``t0`` is the first ``wait()``. A reader more than ``max_lag_s`` late re-anchors
    ``t0`` at that frame instead of getting a catch-up burst (see the module docstring).
    """

    def __init__(self, fps: float, clock: Clock = time.monotonic,
                 sleep: Sleep = time.sleep, *, max_lag_s: float = MAX_LAG_S) -> None:
        if not math.isfinite(fps) or fps <= 0.0:
            raise ValueError(f"fps must be a positive number, got {fps}")
        if not math.isfinite(max_lag_s) or max_lag_s < 0.0:
            raise ValueError(f"max_lag_s must be >= 0 seconds, got {max_lag_s}")
        self.period = 1.0 / fps
        self.max_lag_s = max_lag_s
        self._clock = clock
        self._sleep = sleep
        self._t0: float | None = None
        self._n = 0

    def wait(self) -> None:
        """Block until the next frame is due (at once when it is overdue)."""
        now = self._clock()
        if self._t0 is None:
            self._t0 = now
        due = self._t0 + self._n * self.period
        if now < due:
            self._sleep(due - now)
        elif now - due > self.max_lag_s:
            self._t0, self._n = now, 0
        self._n += 1


def send_pacer(fps: float, clock: Clock = time.monotonic,
               sleep: Sleep = time.sleep) -> Pacer:
    """The pipeline's send pacing: at most ``fps`` sends a second, and a stall longer
    than one period re-anchors rather than banking slack for a burst."""
    return Pacer(fps, clock, sleep, max_lag_s=1.0 / fps)
