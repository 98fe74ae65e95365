"""The microphone into the virtual microphone, held back by the picture's latency.

``run --virtual-mic``: the call app takes the avatar from the virtual camera a pipeline
latency after the face moved, and the voice from "avatar-cam microphone". ``VoiceRelay``
reads the real microphone and plays each chunk into the virtual one once the picture of
that instant has reached the virtual camera: the latency the running pipeline measures
(capture to sink, median of the last frames), read again for every chunk.

``pump`` moves the next chunk and any backlog behind it (it blocks until the microphone
has one); the pipeline runs it in a thread of its own (``Pipeline(voice=...)``) until
the microphone ends. With ``ready``, the microphone starts only once the first picture
has reached the sink: the sound of a pipeline still loading would only be dropped as
late, or relayed without a delay to follow.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .chunk import CHUNK, RATE
from .delay import DelayLine
from .mic import read_backlog

log = logging.getLogger(__name__)

HELD_KEPT = 3000  # chunks (a minute) whose hold-back the summary reports


class VoiceRelay:
    def __init__(self, mic: Any, out: Any, latency_ms: Callable[[], float],
                 ready: Callable[[], bool] | None = None) -> None:
        self.mic, self.out, self.ready = mic, out, ready
        self.delay = DelayLine(latency_ms)
        self.started = False
        self.chunks = 0
        # per chunk, the last minute: written this long after it was captured
        self.held_ms: deque[float] = deque(maxlen=HELD_KEPT)

    def pump(self) -> bool:
        """Move the next chunk and any backlog behind it (``mic.read_backlog``); False once
        the microphone has ended. Before ``ready``, wait a chunk's time instead."""
        if not self.started:
            if self.ready is not None and not self.ready():
                time.sleep(CHUNK / RATE)
                return True
            self.mic.start(None)
            self.started = True
        chunks = read_backlog(self.mic)
        if not chunks:  # the microphone ended: what the line holds still plays
            while self.delay.chunks:
                if not self._write_due():
                    time.sleep(0.005)
            return False
        for chunk in chunks:
            self.delay.push(chunk)
        self._write_due()
        return True

    def _write_due(self) -> int:
        now = time.monotonic_ns()
        due = self.delay.due(now)
        for chunk in due:
            self.out.write(chunk.samples)
            self.chunks += 1
            self.held_ms.append((now - chunk.t_capture_ns) / 1e6)
        return len(due)

    def summary(self) -> dict[str, float]:
        """Chunks relayed; how long after capture they were written (the last minute's
        median, least and most); sound dropped to catch up or to stay bounded."""
        held = sorted(self.held_ms)
        return {"chunks": self.chunks,
                "held_p50_ms": held[len(held) // 2] if held else 0.0,
                "held_min_ms": held[0] if held else 0.0,
                "held_max_ms": held[-1] if held else 0.0,
                "dropped_ms": self.delay.dropped_ms + self.delay.overflow_ms}

    def close(self) -> None:
        self.mic.close()
        self.out.close()
        s = self.summary()
        log.info("virtual microphone: %d chunks relayed, each %.0f ms after it was spoken "
                 "(median; %.0f-%.0f), %.0f ms dropped to keep up with the picture",
                 s["chunks"], s["held_p50_ms"], s["held_min_ms"], s["held_max_ms"],
                 s["dropped_ms"])
