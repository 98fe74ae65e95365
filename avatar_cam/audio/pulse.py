"""PulseAudio (and PipeWire's PulseAudio server) through its own client tools: ``parec``
records, ``pacat`` plays, ``pactl`` loads modules. Raw 48 kHz mono s16le on a pipe.

The tools come with every desktop Linux that has sound (Debian: pulseaudio-utils); a
missing tool or an unreachable server is an AudioError naming the fix.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import time

import numpy as np

from .chunk import CHUNK, RATE, AudioError

FIX = ("start PulseAudio or PipeWire (pulseaudio --start), install its tools "
       "(Debian: apt-get install pulseaudio-utils), or use --mic file:PATH / none")
RAW = ["--raw", "--format=s16le", f"--rate={RATE}", "--channels=1"]
PIPE_BYTES = 4096  # the smallest pipe (43 ms of sound): what a pipe holds is latency unseen


def small_pipe(stream: object) -> None:
    """Shrink a subprocess pipe to PIPE_BYTES where Linux allows it (F_SETPIPE_SZ)."""
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None)
    fileno = getattr(stream, "fileno", None)
    if setsize is not None and fileno is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fileno(), setsize, PIPE_BYTES)


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AudioError(f"{name} (PulseAudio's client tools) is not installed", FIX)
    return path


def pactl(*args: str, timeout: float = 10.0, fix: str = FIX) -> str:
    """Run ``pactl args``; its output, or AudioError with what it said."""
    try:
        done = subprocess.run([tool("pactl"), *args], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AudioError("the sound server does not answer (pactl timed out)", fix) from exc
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        last = said[-1] if said else "failed"
        if args[:1] == ("info",):
            raise AudioError(f"no sound server (PulseAudio or PipeWire) answers: {last}", fix)
        raise AudioError(f"pactl {args[0]}: {last}", fix)
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
    """``parec`` from a source (None: the default) as CHUNK-sample int16 blocks.

    Checked when made, recording from ``start`` (or the first ``read``): sound recorded
    before anybody reads it would sit in the pipe as latency. ``t_start_ns`` is when it
    began, so the caller can stamp chunks by their count and see a backlog."""

    def __init__(self, device: str | None) -> None:
        pactl("info")  # the server is there, or one clear line
        if device is not None and not source_exists(device):
            raise AudioError(f"there is no microphone (PulseAudio source) named {device!r}",
                             "see `pactl list short sources`, or use --mic default")
        self.args = [tool("parec"), *RAW, "--latency-msec=20"]
        if device is not None:
            self.args.append(f"--device={device}")
        self.proc: subprocess.Popen[bytes] | None = None
        self.t_start_ns = 0

    def start(self) -> None:
        if self.proc is None:
            self.t_start_ns = time.monotonic_ns()
            self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL)
            small_pipe(self.proc.stdout)

    def read(self) -> np.ndarray | None:
        self.start()
        assert self.proc is not None and self.proc.stdout is not None
        data = self.proc.stdout.read(2 * CHUNK)
        if len(data) < 2 * CHUNK:
            return None
        return np.frombuffer(data, "<i2").astype(np.int16)

    def close(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class Play:
    """``pacat --playback`` to a sink (None: the default).

    The server takes sound as it plays it, so sound handed over faster (a burst after a
    stall) waits in the pipe to pacat and in pacat, late for the rest of the stream. The
    pipe is shrunk to PIPE_BYTES, so little can wait there: a burst blocks ``write``
    instead, the caller falls behind its microphone, whose chunks carry their capture
    time, and its delay line drops the backlog. (Measured: pacat leaves 20-30 ms in the
    pipe in steady state and reads only what its stream asks for, so a check of what the
    pipe holds cannot tell a backlog from that.) ``underruns``: at least this many times
    the server ran dry (a chunk handed over later than all before it could have lasted,
    even had the server held back its whole ``latency_ms`` first; pacat does not tell its
    client)."""

    def __init__(self, device: str | None, latency_ms: int = 40) -> None:
        pactl("info")
        if device is not None and not sink_exists(device):
            raise AudioError(f"there is no speaker (PulseAudio sink) named {device!r}",
                             "see `pactl list short sinks`, or use --speaker default")
        args = [tool("pacat"), "--playback", *RAW, f"--latency-msec={latency_ms}"]
        if device is not None:
            args.append(f"--device={device}")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
        small_pipe(self.proc.stdin)
        self.latency_ns = latency_ms * 1_000_000
        self.end_ns: int | None = None  # when what was handed over will have played
        self.samples_written = 0
        self.underruns = 0

    def write(self, samples: np.ndarray) -> None:
        """Hand ``samples`` over (blocks while the server has no room for them)."""
        assert self.proc.stdin is not None
        now = time.monotonic_ns()
        if self.end_ns is not None and now > self.end_ns + self.latency_ns:
            self.underruns += 1
        try:
            self.proc.stdin.write(samples.astype("<i2").tobytes())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise AudioError("the sound server closed the playback stream", FIX) from exc
        taken = time.monotonic_ns()  # later than now if the server made it wait
        start = taken if self.end_ns is None else max(taken, self.end_ns)
        self.end_ns = start + len(samples) * 1_000_000_000 // RATE
        self.samples_written += len(samples)

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
