"""Microphones: the system's default input, a named device, or a sound file played as one.

``open_mic(spec)``: ``"default"`` (or None) the default input, ``"device:NAME"`` a named
one, ``"file:PATH"`` any audio file PyAV decodes (WAV, mp3, ogg, the sound of a video),
``"none"`` no microphone (None). Every microphone yields 20 ms ``AudioChunk``s of 48 kHz
mono int16 from ``read()``, which blocks until the next one is due (the caller runs it in
its executor); ``start(t0_ns)`` sets the instant of a file's first sample, so a clip and
its sound file stay paired.

Devices go through FFmpeg's input devices in PyAV: ALSA on Linux (whose default reaches
PulseAudio or PipeWire through their ALSA plugin), AVFoundation on macOS, DirectShow on
Windows (which has no default: name the device).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import av
import numpy as np

from . import pulse
from .chunk import CHUNK, RATE, AudioChunk, AudioError, MonoResampler

MAX_FILE_BYTES = 2 << 30
CHUNK_NS = CHUNK * 1_000_000_000 // RATE  # 20 ms
FIRST_WAIT_NS = 2_000_000  # a first read that waits this long found no backlog
BACKLOG_MOST = 50  # chunks (1 s) ``read_backlog`` takes in one call at most


class Microphone(Protocol):
    def start(self, t0_ns: int | None = None) -> None: ...
    def read(self) -> AudioChunk | None: ...
    def close(self) -> None: ...


def read_backlog(mic: Microphone, most: int = BACKLOG_MOST) -> list[AudioChunk]:
    """The next chunk (waiting for it) and, while the last one read is more than a chunk
    old, those behind it that are already there, up to ``most``; [] once the microphone
    has ended.

    One call per hop to the executor: a caller that read one chunk per hop fell behind
    for good when each hop took 20 ms or more (a loaded machine), and every chunk then
    came too late to play (the delay line drops what is late)."""
    out: list[AudioChunk] = []
    while len(out) < most:
        chunk = mic.read()
        if chunk is None:
            break
        out.append(chunk)
        if chunk.t_capture_ns + 2 * CHUNK_NS > time.monotonic_ns():
            break  # spoken just now: nothing is waiting behind it
    return out


def _chunks(container: av.container.InputContainer) -> Iterator[np.ndarray]:
    """The container's first audio stream as 48 kHz mono int16 blocks of CHUNK samples."""
    resample = MonoResampler()
    pending = np.zeros(0, np.int16)
    for frame in container.decode(audio=0):
        pending = np.concatenate([pending, resample(frame)])
        while len(pending) >= CHUNK:
            yield pending[:CHUNK]
            pending = pending[CHUNK:]
    if len(pending):
        yield np.concatenate([pending, np.zeros(CHUNK - len(pending), np.int16)])


def _open_audio(target: str, fmt: str | None, what: str, fix: str) -> av.container.InputContainer:
    try:
        container = av.open(target, format=fmt) if fmt else av.open(target)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise AudioError(f"cannot open {what}: {exc}", fix) from exc
    if not container.streams.audio:
        container.close()
        raise AudioError(f"{what} has no sound", fix)
    return container


class FileMic:
    """A sound file as the microphone, paced in real time from ``start``."""

    def __init__(self, path: Path, loop: bool = False) -> None:
        fix = "give a readable audio file (WAV, mp3, ogg...), or --mic none"
        if not path.is_file():
            raise AudioError(f"microphone file {path} does not exist", fix)
        if path.stat().st_size > MAX_FILE_BYTES:
            raise AudioError(f"microphone file {path} is over 2 GiB", fix)
        self.path, self.loop = path, loop
        self._container = _open_audio(str(path), None, f"microphone file {path}", fix)
        self._blocks = _chunks(self._container)
        try:  # decode the start now: a file that opens but does not decode fails here
            self._first: np.ndarray | None = next(self._blocks)
        except StopIteration:
            self.close()
            raise AudioError(f"microphone file {path} holds no sound", fix) from None
        except (av.error.FFmpegError, ValueError) as exc:
            self.close()
            raise AudioError(f"cannot decode microphone file {path}: {exc}", fix) from exc
        self._t0: int | None = None
        self._n = 0

    def start(self, t0_ns: int | None = None) -> None:
        self._t0 = time.monotonic_ns() if t0_ns is None else t0_ns

    def _next_block(self) -> np.ndarray | None:
        if self._first is not None:
            block, self._first = self._first, None
            return block
        try:
            return next(self._blocks)
        except StopIteration:
            if not self.loop:
                return None
            self._container.seek(0)
            self._blocks = _chunks(self._container)
            return next(self._blocks, None)
        except (av.error.FFmpegError, ValueError):
            return None  # a damaged tail ends the file

    def read(self) -> AudioChunk | None:
        if self._t0 is None:
            self.start()
        assert self._t0 is not None
        block = self._next_block()
        if block is None:
            return None
        t = self._t0 + self._n * CHUNK * 1_000_000_000 // RATE
        self._n += 1
        wait = (t + CHUNK * 1_000_000_000 // RATE - time.monotonic_ns()) / 1e9
        if wait > 0:  # a chunk is there once its last sample was "spoken"
            time.sleep(wait)
        return AudioChunk(block, t)

    def close(self) -> None:
        self._container.close()


def device_input(name: str | None) -> tuple[str, str]:
    """(FFmpeg input device, target) for ``name`` (None: the default) off Linux."""
    if sys.platform == "darwin":
        return "avfoundation", f":{name or 'default'}"
    if sys.platform == "win32":
        if not name:
            raise AudioError("Windows has no default microphone for avatar-cam",
                             "name one: --mic device:NAME (its name in the Sound settings)")
        return "dshow", f"audio={name}"
    raise AudioError(f"no microphone support on {sys.platform}", "use --mic file:PATH")


class DeviceMic:
    """A sound input device: PulseAudio/PipeWire's source on Linux (``pulse.Record``),
    FFmpeg's input device elsewhere. It records from ``start`` (or the first ``read``).

    Chunks are stamped by their count from the first one, never later than they can have
    been captured (now less their length): a caller that reads late gets the backlog
    stamped with its real age, so a delay line can drop it rather than keep it as
    latency (stamping each chunk when it was read would hide it for the whole call). The
    first chunk is stamped as just spoken if the read had to wait for it, else (sound
    was waiting since ``start``) from ``start``: measured, the server delivers its first
    sound some milliseconds after parec starts, so stamping from ``start`` alone made
    every chunk look 5-15 ms older than it was."""

    def __init__(self, name: str | None) -> None:
        self._pulse: pulse.Record | None = None
        self._blocks: Iterator[np.ndarray] | None = None
        self._container: av.container.InputContainer | None = None
        self._t0: int | None = None
        self._n = 0
        if sys.platform.startswith("linux"):
            self._pulse = pulse.Record(name)
            return
        fmt, target = device_input(name)
        what = f"the microphone {name!r}" if name else "the default microphone"
        fix = "name another (--mic device:NAME), or use --mic file:PATH or --mic none"
        if fmt not in av.formats_available:
            raise AudioError(f"this PyAV build has no {fmt} input", fix)
        self._container = _open_audio(target, fmt, what, fix)
        self._blocks = _chunks(self._container)

    def start(self, t0_ns: int | None = None) -> None:
        """Start recording (a live device is stamped by the clock, not by ``t0_ns``)."""
        if self._t0 is None:
            if self._pulse is not None:
                self._pulse.start()
            self._t0 = time.monotonic_ns()

    def read(self) -> AudioChunk | None:
        self.start()
        asked = time.monotonic_ns()
        if self._pulse is not None:
            block = self._pulse.read()
        else:
            assert self._blocks is not None
            try:
                block = next(self._blocks)
            except (StopIteration, av.error.FFmpegError):
                block = None
        if block is None:
            return None
        assert self._t0 is not None
        latest = time.monotonic_ns() - CHUNK_NS
        if self._n == 0 and latest + CHUNK_NS - asked > FIRST_WAIT_NS:
            self._t0 = latest  # the first chunk had to be waited for: it is just spoken
        t = self._t0 + self._n * CHUNK_NS
        if t > latest:  # the device runs ahead of the clock: follow the clock
            self._t0, self._n, t = latest, 0, latest
        self._n += 1
        return AudioChunk(block, t)

    def close(self) -> None:
        if self._pulse is not None:
            self._pulse.close()
        if self._container is not None:
            self._container.close()


def open_mic(spec: str | None, loop: bool = False) -> Microphone | None:
    """The microphone ``spec`` names (see the module docstring)."""
    spec = spec or "default"
    if spec == "none":
        return None
    if spec.startswith("file:"):
        return FileMic(Path(spec[5:]).expanduser(), loop=loop)
    if spec == "default":
        return DeviceMic(None)
    if spec.startswith("device:") and spec[7:]:
        return DeviceMic(spec[7:])
    raise AudioError(f"--mic {spec!r} is not a microphone",
                     "use default, device:NAME, file:PATH or none")
