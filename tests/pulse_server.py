"""A real PulseAudio server for the tests: the one running (CI's .ci/run starts one), or a
private one started for the session where pulseaudio is installed; otherwise the tests
that need it skip, saying how to get it."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from avatar_cam.audio import pulse

INSTALL = "Debian: apt-get install pulseaudio pulseaudio-utils"


@pytest.fixture(scope="session")
def pulse_server() -> Iterator[None]:
    if shutil.which("pactl") is None or shutil.which("parec") is None:
        pytest.skip(f"PulseAudio's client tools are not installed ({INSTALL})")
    if pulse.server_running():
        yield
        return
    if shutil.which("pulseaudio") is None:
        pytest.skip(f"no PulseAudio server running and none installed ({INSTALL})")
    started = subprocess.run(["pulseaudio", "--daemonize=yes", "--exit-idle-time=-1",
                              "--disallow-exit"], capture_output=True, text=True, timeout=30,
                             check=False)
    t_end = time.monotonic() + 10
    while not pulse.server_running():
        if time.monotonic() > t_end:
            pytest.skip(f"pulseaudio would not start: {started.stderr.strip()[-200:]}")
        time.sleep(0.2)
    try:
        yield
    finally:
        subprocess.run(["pulseaudio", "--kill"], capture_output=True, timeout=30, check=False)
