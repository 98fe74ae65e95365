"""A real PulseAudio server for the tests: the one running (a desktop's, or the one CI's
.ci/run starts), or else a private one started for the session where pulseaudio is
installed: its own socket in a temporary folder (``PULSE_SERVER`` points the clients
there, this process and its children only), a null sink as the default speaker whose
monitor is the default microphone, stopped by its pid at the end, so a server somebody
else runs is never touched. Without either, the tests that need one skip, saying how to
get it, unless AVATAR_CAM_NEED_PULSE is set (CI's .ci/run): then they fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from processes import stop

from avatar_cam.audio import pulse

INSTALL = "Debian: apt-get install pulseaudio pulseaudio-utils"
TEST_SINK = "avatar_cam_test_speaker"


def _without(reason: str) -> NoReturn:
    if os.environ.get("AVATAR_CAM_NEED_PULSE"):
        pytest.fail(f"the voice tests need a PulseAudio server here: {reason}")
    pytest.skip(reason)


def _private_server(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    socket = folder / "native"
    with (folder / "log").open("wb") as log:  # a file: a pipe nobody reads would fill
        proc = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit",
             "--use-pid-file=no", "--disable-shm=yes",
             f"--load=module-native-protocol-unix socket={socket} auth-anonymous=1",
             f"--load=module-null-sink sink_name={TEST_SINK} rate=48000",
             "--load=module-always-sink"],
            stdout=subprocess.DEVNULL, stderr=log)
    return proc, f"unix:{socket}"


@pytest.fixture(scope="session")
def pulse_server() -> Iterator[None]:
    if shutil.which("pactl") is None or shutil.which("parec") is None:
        _without(f"PulseAudio's client tools are not installed ({INSTALL})")
    if pulse.server_running():
        yield
        return
    if shutil.which("pulseaudio") is None:
        _without(f"no PulseAudio server running and none installed ({INSTALL})")
    with tempfile.TemporaryDirectory(prefix="avatar-cam-pulse-") as folder, \
            pytest.MonkeyPatch.context() as env:
        proc, address = _private_server(Path(folder))
        env.setenv("PULSE_SERVER", address)
        try:
            t_end = time.monotonic() + 15
            while not pulse.server_running():
                if proc.poll() is not None or time.monotonic() > t_end:
                    said = (Path(folder) / "log").read_text(errors="replace").strip()
                    _without(f"pulseaudio would not start: {said[-300:]}")
                time.sleep(0.2)
            yield
        finally:
            stop(proc)
