"""The peer's face at the receiver of a landmark-only call, drawn with the peer's own model.

``person_look`` turns the person that crossed the "model" data channel (model_share,
``load_person``) into the renderer, compositor and framer that ``receive.Look.use``
takes, built through the same layer as the local pipeline (``live.open_renderer``: the
shared neural generator on the fastest backend there is, ONNX Runtime on the CPU,
CUDA/TensorRT where present). The warp renderer over the peer's crop draws them instead
when they shared no generator, when it cannot be opened (it came from the network: a
damaged or foreign file is a reason, never a crash), or when it cannot keep up: the
render thread's work per frame (render + compose) is timed on a few real frames at open
and must fit in ``HEADROOM`` of the frame period. Which one draws the peer, and why, is
logged in one line and kept (``RemoteLook.kind``, ``.reason``) for the call's stats.

Blocking (opening a backend, the timed renders): the caller runs it in its executor.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..compose import Compositor
from ..errors import AvatarCamError
from ..framing import Framer
from ..live import (
    LiveOptions,
    avatar_layout,
    compositor_for,
    framer_for,
    open_renderer,
)
from ..person import Person
from ..render.neural import has_neural
from ..render.warp import WarpRenderer
from ..types import Landmarks

log = logging.getLogger(__name__)

PREFERENCES = ("auto", "neural", "warp")
# The render thread (render + compose, which is what is timed) may use this share of the
# frame period; the rest is for the work that shares the cores with it on a receiver: the
# drive thread's framer, the sink, and the call's event loop (packets, jitter buffer,
# voice). With less left the pipeline drops frames whenever any of those takes a turn.
HEADROOM = 0.8
WARMUP = 1  # untimed renders first: ONNX Runtime and torch plan their kernels on call 1
TIMED = 8  # timed renders: enough for a stable median, well under a second at 30 fps


@dataclass(frozen=True)
class RemoteLook:
    """What draws the peer: ``stages`` is what ``receive.Look.use`` takes. ``kind`` is
    "neural" or "warp"; ``reason`` says why (for the log and the stats); ``backend``
    names the runtime ("onnxruntime-cpu fp32 (...)", or "warp"); ``neural_ms`` is the
    measured median render + compose time of the neural look (None when not timed)."""

    renderer: Any
    compositor: Compositor
    framer: Framer
    kind: str
    reason: str
    backend: str
    neural_ms: float | None = None

    @property
    def stages(self) -> tuple[Any, Compositor, Framer]:
        return self.renderer, self.compositor, self.framer

    def describe(self) -> str:
        return f"{self.kind} renderer ({self.backend}): {self.reason}"


def person_look(person: Person, out_size: tuple[int, int], resolution: int, *,
                backend: str = "auto", precision: str = "auto", fps: float = 30.0,
                prefer: str = "auto") -> RemoteLook:
    """The peer's face from their own model, framed as their local avatar is.

    ``prefer``: auto (neural when they shared a generator that opens and keeps ``fps``,
    else warp), neural (their generator whenever it opens, untimed), warp (never the
    generator). ``resolution`` is the warp renderer's; the generator renders at its own.
    """
    if prefer not in PREFERENCES:
        raise ValueError(f"prefer must be one of {', '.join(PREFERENCES)}, got {prefer!r}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    opts = LiveOptions(out_size=out_size, resolution=resolution, fps=fps, renderer="neural",
                       backend=backend, precision=precision)
    layout = avatar_layout(person, opts)
    # Every frame we make says it is synthetic, here too, and whose model it is.
    owner = person.owner.name if person.owner is not None else None
    liveness = person.owner.liveness if person.owner is not None else None
    compositor = compositor_for(person, layout, opts, owner, liveness)
    framer = framer_for(person, layout, opts)
    kind, renderer, reason, runtime, ms = _choose(person, opts, compositor, prefer)
    look = RemoteLook(renderer, compositor, framer, kind, reason, runtime, ms)
    log.info("the peer is drawn by the %s", look.describe())
    return look


def _choose(person: Person, opts: LiveOptions, compositor: Compositor, prefer: str
            ) -> tuple[str, Any, str, str, float | None]:
    """(kind, renderer, reason, backend, neural ms) for ``person_look``."""
    if prefer == "warp":
        return ("warp", _warp(person, opts), "the warp renderer was asked for", "warp",
                None)
    if not has_neural(person.folder):
        return ("warp", _warp(person, opts), "the peer shared no generator", "warp", None)
    try:
        neural = open_renderer(person, opts)
    except (AvatarCamError, ValueError, OSError) as exc:
        return ("warp", _warp(person, opts), f"their generator could not be opened ({exc})",
                "warp", None)
    runtime = _runtime(neural)
    if prefer == "neural":
        return "neural", neural, f"the neural renderer was asked for, on {runtime}", \
            runtime, None
    try:
        ms = time_look(neural, compositor, person)
    except (AvatarCamError, ValueError, OSError) as exc:
        neural.close()
        return ("warp", _warp(person, opts), f"their generator failed on a test frame "
                f"({exc})", "warp", None)
    period = 1000.0 / opts.fps
    budget = HEADROOM * period
    timing = (f"neural p50 {ms:.1f} ms per frame (render + compose) on {runtime}, budget "
              f"{budget:.1f} ms ({HEADROOM:.0%} of the {period:.1f} ms frame period at "
              f"{opts.fps:g} fps)")
    if ms <= budget:
        return "neural", neural, timing, runtime, ms
    neural.close()
    return "warp", _warp(person, opts), f"{timing}: too slow, warp", "warp", ms


def time_look(renderer: Any, compositor: Compositor, person: Person,
              warmup: int = WARMUP, runs: int = TIMED) -> float:
    """Median milliseconds of render + compose of the person's neutral face: the render
    thread's work per frame (the watermark and label included)."""
    lm = Landmarks(0, 0, person.neutral, (person.crop_size, person.crop_size))
    times = []
    for n in range(warmup + runs):
        t0 = time.perf_counter()
        compositor.compose(np.asarray(renderer.render(lm)), n, 0)
        if n >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def _warp(person: Person, opts: LiveOptions) -> WarpRenderer:
    return WarpRenderer(person.crop, person.neutral, resolution=opts.resolution)


def _runtime(renderer: Any) -> str:
    from ..backends.renderer import BackendRenderer  # torch: only once a generator opens

    if isinstance(renderer, BackendRenderer):
        return renderer.backend.describe()
    return type(renderer).__name__
