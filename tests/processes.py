"""Ending the real servers the test fixtures start (PulseAudio, coturn)."""

from __future__ import annotations

import subprocess
from typing import Any


def stop(proc: subprocess.Popen[Any], wait_s: float = 10.0) -> None:
    """Terminate ``proc`` if it still runs, and kill it if it will not go."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(wait_s)
