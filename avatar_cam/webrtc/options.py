"""Options shared by the peers, the server and the CLI, and the call error."""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..errors import AvatarCamError
from .ice import IceServers
from .jitter import PlayoutConfig

T = TypeVar("T")


class CallError(AvatarCamError):
    """A call that cannot be set up (mode mismatch, busy, unreachable peer)."""


@dataclass(frozen=True)
class PeerOptions:
    landmarks_only: bool = False
    share_model: bool = False  # send our model (landmark-only), to the invited peer only
    share_keep: bool = False  # ... and let them keep it after the call (else deleted)
    fps: float = 30.0
    out_size: tuple[int, int] = (640, 480)  # what received frames are resized/rendered to
    resolution: int = 384  # receiver's face render size (landmark mode)
    codec: str = "vp8"  # preferred video codec: vp8 | h264
    cache_root: Path | None = None  # received models; default: see model_share
    stamp: bool = False  # number frames in their corner (latency measurement)
    key_every: int = 6  # landmark KEY packet interval
    playout: PlayoutConfig = field(default_factory=PlayoutConfig)
    opus_kbps: int | None = None  # the voice's Opus bitrate; None: ``voice_kbps``
    bundle_frames: int = 4  # landmark frames per data-channel message (voice rides along)
    loopback: bool = True  # also gather 127.0.0.1 candidates (same-machine calls)
    remote_renderer: str = "auto"  # landmark receiver: auto | neural | warp (remote_look)
    ice: IceServers = field(default_factory=IceServers)  # STUN/TURN (ice.py)

    @property
    def voice_kbps(self) -> int:
        """12 kbit/s in landmark-only calls: with 4 frames a message the whole call keeps
        under 32 kbit/s on the wire each way (benchmarks/wire.py); 32 beside video."""
        if self.opus_kbps is not None:
            return self.opus_kbps
        return 12 if self.landmarks_only else 32

    @property
    def mode(self) -> str:
        return "landmarks" if self.landmarks_only else "video"


class Workers:
    """The call's one thread pool: every blocking step of a call (pipelines, sink hand-offs,
    microphone reads, model loading, aiortc's encoders) runs here.

    ``configure_loop`` makes it and installs it as the loop's default executor, so what
    aiortc hands to ``run_in_executor(None, ...)`` lands here too; our own code names it
    (``workers().run``). ``close`` when the call ends.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_workers: int = 16) -> None:
        self.loop = loop
        self.pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="avatar-rtc")

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return self.loop.run_in_executor(self.pool, fn, *args)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


_workers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Workers] = \
    weakref.WeakKeyDictionary()


def configure_loop(loop: asyncio.AbstractEventLoop, workers: int = 16) -> Workers:
    """Give the loop the call's executor, big enough for the pipelines (each holds a worker
    for its whole run) next to aiortc's encoder calls and the sink hand-offs."""
    pool = Workers(loop, workers)
    loop.set_default_executor(pool.pool)
    _workers[loop] = pool
    return pool


def workers() -> Workers:
    """The running loop's call executor (made by ``configure_loop``, or now)."""
    loop = asyncio.get_running_loop()
    found = _workers.get(loop)
    return found if found is not None else configure_loop(loop)


_gathering = 0
_original_host_addresses: Callable[[bool, bool], list[str]] | None = None


@contextlib.contextmanager
def loopback_gathering() -> Iterator[None]:
    """While ICE candidates are gathered inside this block, also offer 127.0.0.1 as a host
    candidate (aioice leaves it out, and neither aiortc nor aioice has an option for it):
    a call or a browser on the same machine then connects even with no network interface
    up. aioice's address lookup is swapped only inside the block (nested blocks share
    one swap) and restored after it, so nothing outside a gathering sees it."""
    global _gathering, _original_host_addresses
    import aioice.ice

    if _gathering == 0:
        original = aioice.ice.get_host_addresses
        _original_host_addresses = original

        def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            found: list[str] = original(use_ipv4, use_ipv6)
            return (["127.0.0.1"] if use_ipv4 and "127.0.0.1" not in found else []) + found

        setattr(aioice.ice, "get_host_addresses", with_loopback)  # noqa: B010
    _gathering += 1
    try:
        yield
    finally:
        _gathering -= 1
        if _gathering == 0 and _original_host_addresses is not None:
            setattr(aioice.ice, "get_host_addresses", _original_host_addresses)  # noqa: B010
            _original_host_addresses = None


async def wait_awake(future: asyncio.Future[Any], timeout: float | None = None) -> None:
    """Wait for ``future`` (or ``timeout`` s), waking every 0.2 s. A Ctrl-C that the kernel
    hands to one of the pipeline's threads runs Python's handler only once the main
    thread runs again, and an idle event loop would sleep in select() indefinitely."""
    t_end = None if timeout is None else time.monotonic() + timeout
    while not future.done():
        left = 0.2 if t_end is None else min(0.2, t_end - time.monotonic())
        if left <= 0:
            return
        await asyncio.wait([future], timeout=left)
