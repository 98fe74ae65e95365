"""PulseAudio (and PipeWire's PulseAudio server) through its own client tools: ``parec``
records, ``pacat`` plays, ``pactl`` loads modules. Raw 48 kHz mono s16le on a pipe.

The tools come with every desktop Linux that has sound (Debian: pulseaudio-utils); a
missing tool or an unreachable server is an AudioError naming the fix.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess

import numpy as np

from .chunk import CHUNK, RATE, AudioError

FIX = ("start PulseAudio or PipeWire (pulseaudio --start), install its tools "
       "(Debian: apt-get install pulseaudio-utils), or use --mic file:PATH / none")
RAW = ["--raw", "--format=s16le", f"--rate={RATE}", "--channels=1"]


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AudioError(f"{name} (PulseAudio's client tools) is not installed", FIX)
    return path


def pactl(*args: str, timeout: float = 10.0) -> str:
    """Run ``pactl args``; its output, or AudioError with what it said."""
    try:
        done = subprocess.run([tool("pactl"), *args], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AudioError("the sound server does not answer (pactl timed out)", FIX) from exc
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise AudioError(f"pactl {args[0]}: {said[-1] if said else 'failed'}", FIX)
    return done.stdout


def server_running() -> bool:
    try:
        pactl("info", timeout=5.0)
    except AudioError:
        return False
    return True


def source_exists(name: str) -> bool:
    return any(line.split("\t")[1:2] == [name]
               for line in pactl("list", "short", "sources").splitlines())


def sink_exists(name: str) -> bool:
    return any(line.split("\t")[1:2] == [name]
               for line in pactl("list", "short", "sinks").splitlines())


class Record:
    """``parec`` from a source (None: the default) as CHUNK-sample int16 blocks."""

    def __init__(self, device: str | None) -> None:
        pactl("info")  # the server is there, or one clear line
        if device is not None and not source_exists(device):
            raise AudioError(f"there is no microphone (PulseAudio source) named {device!r}",
                             "see `pactl list short sources`, or use --mic default")
        args = [tool("parec"), *RAW, "--latency-msec=20"]
        if device is not None:
            args.append(f"--device={device}")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def read(self) -> np.ndarray | None:
        assert self.proc.stdout is not None
        data = self.proc.stdout.read(2 * CHUNK)
        if len(data) < 2 * CHUNK:
            return None
        return np.frombuffer(data, "<i2").astype(np.int16)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Play:
    """``pacat --playback`` to a sink (None: the default)."""

    def __init__(self, device: str | None, latency_ms: int = 40) -> None:
        pactl("info")
        if device is not None and not sink_exists(device):
            raise AudioError(f"there is no speaker (PulseAudio sink) named {device!r}",
                             "see `pactl list short sinks`, or use --speaker default")
        args = [tool("pacat"), "--playback", *RAW, f"--latency-msec={latency_ms}"]
        if device is not None:
            args.append(f"--device={device}")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def write(self, samples: np.ndarray) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(samples.astype("<i2").tobytes())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise AudioError("the sound server closed the playback stream", FIX) from exc

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
