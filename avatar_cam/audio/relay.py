"""The microphone into the virtual microphone, held back by the picture's latency.

``run --virtual-mic``: the call app takes the avatar from the virtual camera a pipeline
latency after the face moved, and the voice from "avatar-cam microphone". ``VoiceRelay``
reads the real microphone and plays each chunk into the virtual one once the picture of
that instant has reached the virtual camera: the latency the running pipeline measures
(capture to sink, median of the last frames), read again for every chunk.

``pump`` moves one chunk (it blocks until the microphone has one); the pipeline runs it
in a thread of its own (``Pipeline(voice=...)``) until the microphone ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from .delay import DelayLine

RECENT = 30  # frames whose latency is the voice's delay (1 s at 30 fps)


def recent_latency_ms(latencies_ms: Sequence[float]) -> float:
    """Median of the last RECENT latencies (0 before the first frame)."""
    recent = sorted(latencies_ms[-RECENT:])
    return float(recent[len(recent) // 2]) if recent else 0.0


class VoiceRelay:
    def __init__(self, mic: Any, out: Any, latency_ms: Callable[[], float]) -> None:
        self.mic, self.out = mic, out
        self.delay = DelayLine(latency_ms)
        self.started = False
        self.chunks = 0

    def pump(self) -> bool:
        """Move one chunk; False once the microphone has ended."""
        if not self.started:
            self.mic.start(None)
            self.started = True
        chunk = self.mic.read()
        if chunk is None:
            return False
        self.delay.push(chunk)
        for due in self.delay.due(time.monotonic_ns()):
            self.out.write(due.samples)
            self.chunks += 1
        return True

    def close(self) -> None:
        self.mic.close()
        self.out.close()
