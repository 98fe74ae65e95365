"""Options shared by the peers, the server and the CLI, and the call error."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AvatarCamError
from .jitter import PlayoutConfig


class CallError(AvatarCamError):
    """A call that cannot be set up (mode mismatch, busy, unreachable peer)."""


@dataclass(frozen=True)
class PeerOptions:
    landmarks_only: bool = False
    share_model: bool = False
    fps: float = 30.0
    out_size: tuple[int, int] = (640, 480)  # what received frames are resized/rendered to
    resolution: int = 384  # receiver's face render size (landmark mode)
    codec: str = "vp8"  # preferred video codec: vp8 | h264
    cache_root: Path | None = None  # received models; default: see model_share
    stamp: bool = False  # number frames in their corner (latency measurement)
    key_every: int = 6  # landmark KEY packet interval
    playout: PlayoutConfig = field(default_factory=PlayoutConfig)

    @property
    def mode(self) -> str:
        return "landmarks" if self.landmarks_only else "video"


def configure_loop(loop: asyncio.AbstractEventLoop, workers: int = 16) -> None:
    """Give the loop an executor big enough for the pipelines (each holds a worker for its
    whole run) next to aiortc's encoder calls and the sink hand-offs."""
    loop.set_default_executor(ThreadPoolExecutor(max_workers=workers,
                                                 thread_name_prefix="avatar-rtc"))


_loopback_allowed = False


def allow_loopback_candidates() -> None:
    """Also offer 127.0.0.1 as a host candidate (aioice leaves it out): a call or a
    browser on the same machine then connects even with no network interface up."""
    global _loopback_allowed
    if _loopback_allowed:
        return
    import aioice.ice

    original = aioice.ice.get_host_addresses

    def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        found: list[str] = original(use_ipv4, use_ipv6)
        return (["127.0.0.1"] if use_ipv4 else []) + found

    aioice.ice.get_host_addresses = with_loopback
    _loopback_allowed = True


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
