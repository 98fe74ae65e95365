"""The items that travel between pipeline stages.

Every item carries ``seq`` (capture order) and ``t_capture_ns`` (``time.monotonic_ns()``
when the source produced the frame) unchanged to the sink, so latency and per-stage
times are measured rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

N_LANDMARKS = 478  # MediaPipe face mesh with refine_landmarks=True (468 + 2 x 5 iris)


@dataclass
class Frame:
    """A captured camera/video/synthetic frame.

    image: (H, W, 3) uint8 BGR (OpenCV order).
    truth: optional ground-truth landmarks (synthetic sources only), (478, 3) float32
      in pixels, for tests and for the demo, which needs no tracker.
    """

    seq: int
    t_capture_ns: int
    image: np.ndarray
    truth: np.ndarray | None = None
    placeholder: bool = False  # True when the camera is gone and this is a stand-in


@dataclass
class Landmarks:
    """Face landmarks of one frame.

    points: (478, 3) float32. x and y in pixels of ``size`` (width, height); z in the
      same units as x (MediaPipe's z times the image width), smaller is nearer.
    """

    seq: int
    t_capture_ns: int
    points: np.ndarray
    size: tuple[int, int]
    timings: dict[str, float] = field(default_factory=dict)  # stage -> ms
    # The tracker's word that this face is not the one of the frame before (a cut, another
    # person, a jump no head makes in one frame): what was learned of the driver is stale.
    cut: bool = False

    def __post_init__(self) -> None:
        check_points(self.points)


@dataclass
class AvatarFrame:
    """A composited output frame: (H, W, 3) uint8 BGR."""

    seq: int
    t_capture_ns: int
    image: np.ndarray
    face_found: bool = True
    timings: dict[str, float] = field(default_factory=dict)  # stage -> ms
    # Where the rendered face square landed, (x0, y0, x1, y1) in output pixels (it may
    # overhang the frame); None when no face square was composited.
    face_box: tuple[int, int, int, int] | None = None


def check_points(points: np.ndarray) -> None:
    """Raise ValueError unless ``points`` is a finite (478, 3) float32 array."""
    if not isinstance(points, np.ndarray):
        raise TypeError(f"landmarks must be a numpy array, got {type(points).__name__}")
    if points.shape != (N_LANDMARKS, 3) or points.dtype != np.float32:
        raise ValueError(
            f"landmarks must be ({N_LANDMARKS}, 3) float32, got {points.shape} {points.dtype}"
        )
    if not np.isfinite(points).all():
        raise ValueError("landmarks contain NaN or infinite values")
