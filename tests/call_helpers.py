"""Two real aiortc peers in one process: the pieces the call tests share."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import numpy as np

from avatar_cam import live
from avatar_cam.capture import SyntheticSource
from avatar_cam.person import Person
from avatar_cam.types import AvatarFrame
from avatar_cam.webrtc.basis import ExpressionBasis

OUT = (320, 240)


class RecordingSink:
    """Keeps what a peer renders (a stand-in for a virtual camera, checked by the tests)."""

    def __init__(self) -> None:
        self.first: list[AvatarFrame] = []  # the first 60
        self.last: deque[AvatarFrame] = deque(maxlen=30)
        self.count = 0

    def send(self, frame: AvatarFrame) -> None:
        if frame.image.shape != (OUT[1], OUT[0], 3) or frame.image.dtype != np.uint8:
            raise ValueError(f"bad frame {frame.image.shape}")
        if len(self.first) < 60:
            self.first.append(frame)
        self.last.append(frame)
        self.count += 1

    def close(self) -> None:
        pass


def _local(person: Person, opts: Any, basis: ExpressionBasis | None = None, mic: Any = None
           ) -> Any:
    from avatar_cam.webrtc.peer import LocalAvatar

    # The script's landmarks drawn as dots: cheap, and no tracker needed (track=False).
    neutral = (person.neutral * (256 / person.crop_size)).astype(np.float32)
    source = SyntheticSource(neutral, (256, 256), fps=30.0)
    live_opts = live.LiveOptions(out_size=OUT, fps=30.0, resolution=256, track=False)
    return LocalAvatar(person, source, live_opts, opts, basis, mic=mic)


async def _call(a: Any, b: Any, seconds: float, until: Any = None) -> None:
    offer = await a.create_offer()
    answer = await b.accept_offer(offer)
    await a.accept_answer(answer)
    await a.wait_connected(15.0)
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end and not (until is not None and until()):
        await asyncio.sleep(0.1)


async def _hang_up(peers: tuple[Any, ...], locals_: tuple[Any, ...], runs: Any) -> None:
    """End a test call: close the peers, stop the local avatars, wait for their runs."""
    for peer in peers:
        await peer.close()
    for local in locals_:
        local.stop()
    await asyncio.gather(*runs)


def _setup_loop() -> None:
    from avatar_cam.webrtc.peer import configure_loop

    configure_loop(asyncio.get_running_loop())


