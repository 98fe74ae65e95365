"""Framing: where the avatar's head goes in the output, and the head re-centred in its
render square.

The adapter's landmarks carry the driver's whole head motion (turns, and moving about
and leaning in, relative to the driver's resting place). Rendered as they are, a driver
sitting off-centre slides the head out of its render square and a close-up grows it past
the square's edge. So ``Framer.frame`` splits them:

- the head, scaled and moved back to its resting size and place in the square (turns,
  tilts and expression kept): what the renderer draws, always whole inside its square;
- a ``Placement``: the move of the whole picture in the output (shift, and zoom about
  the head's resting centre), which the compositor applies as a camera that follows.

In ``follow`` mode the placement follows the head's motion (relative to the driver's
resting place, which the adapter re-centres slowly, as call apps auto-frame: when the
driver is gone the adapter eases to rest, and so the picture to the photo's framing),
within soft limits: each shift and the zoom pass through a soft knee
(``soft_limit``: slope 1 near rest, never past the limit) whose limits keep
the whole head, hair included, inside the frame with ``margin`` to spare. In ``fixed``
mode the head stays where the enrollment photo frames it. Either way, the head matte
follows the head's turns inside its square (``Placement.head``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from . import mesh
from .geometry import face_centre, fit_similarity, similarity_2x3
from .types import Landmarks, check_points

FRAMINGS = ("follow", "fixed")
_RIGID = list(mesh.RIGID)


@dataclass(frozen=True)
class Placement:
    """A move of the whole avatar picture in the output frame: scale ``k`` about the
    head's resting centre in output pixels, then shift by (``dx``, ``dy``) output pixels.
    The identity (k=1, no shift) shows the avatar as its enrollment photo frames it."""

    k: float = 1.0
    dx: float = 0.0
    dy: float = 0.0
    # The 2x3 similarity (crop pixels, flat) that moved the avatar's resting head to where
    # it is drawn inside its square now (turns, tilts): the head matte follows it.
    head: tuple[float, float, float, float, float, float] | None = None

    @property
    def identity(self) -> bool:
        """No move of the picture (the head may still turn inside its square)."""
        return self.k == 1.0 and self.dx == 0.0 and self.dy == 0.0


@dataclass(frozen=True)
class FramingConfig:
    """How the picture follows the head.

    mode: follow | fixed.
    recentre_s: time constant (s) of the driver's resting place (the adapter's): an
      offset held this long is about two-thirds re-centred.
    margin: of the output height, kept between the head (hair included) and the edges.
    zoom: (least, most) zoom of the picture when the driver leans back / in.
    """

    mode: str = "follow"
    recentre_s: float = 6.0
    margin: float = 0.04
    zoom: tuple[float, float] = (0.8, 1.3)

    def __post_init__(self) -> None:
        if self.mode not in FRAMINGS:
            raise ValueError(f"framing must be one of {FRAMINGS}, got {self.mode!r}")
        if not (math.isfinite(self.recentre_s) and self.recentre_s > 0):
            raise ValueError(f"recentre_s must be > 0, got {self.recentre_s}")
        if not 0 <= self.margin < 0.5:
            raise ValueError(f"margin must be in [0, 0.5), got {self.margin}")
        lo, hi = self.zoom
        if not 0 < lo <= 1 <= hi:
            raise ValueError(f"zoom must be (least <= 1, most >= 1), got {self.zoom}")


def soft_limit(x: float, lo: float, hi: float) -> float:
    """``x`` passed through a soft knee into (lo, hi), lo <= 0 <= hi: slope 1 at 0, and
    ``limit * tanh(x / limit)`` on each side, so it never reaches the limit."""
    if x >= 0:
        return hi * math.tanh(x / hi) if hi > 0 else 0.0
    return lo * math.tanh(x / lo) if lo < 0 else 0.0


class Framer:
    """frame(lm) -> (landmarks re-centred in the square, Placement).

    neutral: (478, 3) the avatar's neutral landmarks in crop pixels (the adapter's output
    space, ``lm.size`` = (crop, crop)); crop_to_out: output pixels per crop pixel at rest;
    head: the head box at rest, (x0, y0, x1, y1) in output pixels; out_size: (w, h).
    """

    def __init__(self, neutral: np.ndarray, crop_to_out: float,
                 head: tuple[float, float, float, float], out_size: tuple[int, int],
                 config: FramingConfig | None = None) -> None:
        pts = np.array(neutral, dtype=np.float32)
        check_points(pts)
        if not (math.isfinite(crop_to_out) and crop_to_out > 0):
            raise ValueError(f"crop_to_out must be > 0, got {crop_to_out}")
        self.config = config or FramingConfig()
        self.neutral = pts.astype(np.float64)
        self._centre = face_centre(self.neutral)
        self._k0 = float(crop_to_out)
        self._head = tuple(float(v) for v in head)
        self._size = (int(out_size[0]), int(out_size[1]))
        self.placement = Placement()  # the last one made (for stats and tests)

    def _limits(self, zoom: float) -> tuple[float, float, float, float]:
        """(lo_x, hi_x, lo_y, hi_y): the shifts that keep the head box, zoomed by
        ``zoom`` about its centre, inside the frame less the margin."""
        x0, y0, x1, y1 = self._head
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        hw, hh = zoom * (x1 - x0) / 2, zoom * (y1 - y0) / 2
        w, h = self._size
        m = self.config.margin * h
        return (min(0.0, m - (cx - hw)), max(0.0, w - m - (cx + hw)),
                min(0.0, m - (cy - hh)), max(0.0, h - m - (cy + hh)))

    def _place(self, offset: np.ndarray, log_s: float) -> tuple[float, float, float]:
        cfg = self.config
        x0, y0, x1, y1 = self._head
        w, h = self._size
        m = cfg.margin * h
        # The most zoom that still fits the head (with margins) in the frame.
        fit = min((w - 2 * m) / max(x1 - x0, 1e-6), (h - 2 * m) / max(y1 - y0, 1e-6))
        lo_z = math.log(min(cfg.zoom[0], 1.0))
        hi_z = math.log(max(1.0, min(cfg.zoom[1], fit)))
        zoom = math.exp(soft_limit(log_s, lo_z, hi_z))
        lo_x, hi_x, lo_y, hi_y = self._limits(zoom)
        d = self._k0 * offset
        return zoom, soft_limit(float(d[0]), lo_x, hi_x), soft_limit(float(d[1]), lo_y, hi_y)

    def frame(self, lm: Landmarks) -> tuple[Landmarks, Placement]:
        """The head at rest in its square, and where the picture goes."""
        p = lm.points.astype(np.float64)
        try:
            s, _, _ = fit_similarity(self.neutral[_RIGID], p[_RIGID])
        except ValueError:
            return lm, self.placement  # degenerate landmarks: keep the last framing
        c = face_centre(p)
        centred = (p - c) / s + self._centre
        head = similarity_2x3(self.neutral[_RIGID, :2], centred[_RIGID, :2])
        flat = (float(head[0]), float(head[1]), float(head[2]),
                float(head[3]), float(head[4]), float(head[5]))
        if self.config.mode == "fixed":
            placement = Placement(head=flat)
        else:
            k, dx, dy = self._place((c - self._centre)[:2], math.log(s))
            placement = Placement(k, dx, dy, flat)
        self.placement = placement
        out = Landmarks(lm.seq, lm.t_capture_ns, centred.astype(np.float32), lm.size,
                        dict(lm.timings), lm.cut)
        return out, placement

    def close(self) -> None:
        """Nothing to release; present for the stage protocol."""

    def __enter__(self) -> Framer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
