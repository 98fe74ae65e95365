"""Hold sound back by a delay read live (the picture's measured latency), so that voice
and picture leave or play together.

``push`` chunks as they come; ``due(now)`` returns those whose ``t_capture + delay`` has
come, in order. When the delay grows, sound waits; when it shrinks, the line catches up by
dropping the chunks that would play later than the new delay allows (``dropped_ms``)
instead of staying late for the rest of the call: a chunk more than ``CATCH_UP_MS`` late
is dropped, so of a backlog only its last ``CATCH_UP_MS`` plays. That holds whether the
backlog is in the line (the delay shrank) or still in the microphone (a caller that read
nothing for a while gets the old chunks one by one, each stamped with its capture time:
each one dropped brings the next 20 ms nearer). Never more than ``max_ms`` is held
(``overflow_ms`` counts the oldest dropped for that).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .chunk import RATE, AudioChunk

# Lateness beyond this is dropped, not played. Sound up to about 125 ms behind the picture
# is not noticed (ITU-R BT.1359), a gap in it is: a loaded machine releases sound in bursts
# a hop or two late (40-60 ms), and dropping those cost a third of the voice for no sync
# anyone sees; a delay that shrank, or a stall longer than this, is still caught up.
CATCH_UP_MS = 120.0


class DelayLine:
    def __init__(self, delay_ms: Callable[[], float], max_ms: float = 1000.0) -> None:
        self.delay_ms = delay_ms
        self.max_ms = max_ms
        self.chunks: deque[AudioChunk] = deque()
        self.dropped_ms = 0.0
        self.overflow_ms = 0.0

    def current_ms(self) -> float:
        return min(max(float(self.delay_ms()), 0.0), self.max_ms)

    def push(self, chunk: AudioChunk) -> None:
        self.chunks.append(chunk)
        while self.chunks and (chunk.t_capture_ns - self.chunks[0].t_capture_ns) / 1e6 \
                > self.max_ms:
            old = self.chunks.popleft()
            self.overflow_ms += 1000 * len(old.samples) / RATE

    def next_due_ns(self) -> int | None:
        """When the oldest chunk held is due (None: none is held)."""
        if not self.chunks:
            return None
        return self.chunks[0].t_capture_ns + round(self.current_ms() * 1e6)

    def due(self, now_ns: int) -> list[AudioChunk]:
        delay_ns = self.current_ms() * 1e6
        out: list[AudioChunk] = []
        while self.chunks and self.chunks[0].t_capture_ns + delay_ns <= now_ns:
            chunk = self.chunks.popleft()
            late_ms = (now_ns - chunk.t_capture_ns - delay_ns) / 1e6
            if late_ms > CATCH_UP_MS:
                self.dropped_ms += 1000 * len(chunk.samples) / RATE
                continue
            out.append(chunk)
        return out
