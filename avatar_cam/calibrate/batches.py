"""Training batches for enrollment: draw the random choices, then make the pictures.

A step's batch is a set of training crops with their landmarks, jointly jittered (small
random scale, rotation and shift of image and landmarks alike, plus sub-pixel landmark
noise), and the conditioning re-made from the jittered landmarks. Making it (warping the
crops, rasterizing the sketches, the warp renders) costs about 12 ms a frame at 256 px on
one core: next to a GPU's training step that is most of the time. So the two halves are
apart:

- ``draw`` takes every random choice of a step (which frames, the transforms, the noise)
  from the one seeded generator, in the caller's process and in step order;
- ``make`` turns a draw into (crops, conditioning) and uses no randomness.

With scenes (``scenes.py``) each sample's warp render is made from its own scene's
reference, one ``Conditioner`` per scene.

``Batches`` makes them in the caller's process (``workers=0``, the default on a CPU,
where the training step already uses every core), or in spawned worker processes a few
steps ahead (on a GPU). A seed gives the same batches either way.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..render.condition import Conditioner, Reference

if TYPE_CHECKING:
    from .dataset import Clip
    from .scenes import Scenes
    from .train_common import TrainConfig


@dataclass(frozen=True)
class Draw:
    """One step's random choices: frame indices (B,), similarity transforms (B, 2, 3) in
    crop pixels, their scales (B,) and the landmark noise (B, N, 2) in pixels; with
    scenes, which conditioner (scene) makes each sample's conditioning (B,)."""

    idx: np.ndarray
    mats: np.ndarray
    scales: np.ndarray
    noise: np.ndarray
    scene: np.ndarray | None = None


def draw(rng: np.random.Generator, n_frames: int, batch: int, resolution: int,
         n_points: int, tc: TrainConfig) -> Draw:
    """The random choices of one step; without augmentation the transforms are identity
    and the noise zero."""
    idx = rng.integers(0, n_frames, batch)
    r = resolution
    mats = np.tile(np.eye(2, 3), (batch, 1, 1))
    scales = np.ones(batch)
    noise = np.zeros((batch, n_points, 2))
    if tc.augment:
        for i in range(batch):
            s = 1.0 + rng.uniform(-tc.jitter_scale, tc.jitter_scale)
            m = np.array(cv2.getRotationMatrix2D(
                (r / 2, r / 2), rng.uniform(-tc.jitter_rotate, tc.jitter_rotate), s),
                np.float64)
            m[:, 2] = m[:, 2] + rng.uniform(-tc.jitter_shift, tc.jitter_shift, 2) * r
            mats[i], scales[i] = m, s
            noise[i] = rng.normal(0, tc.landmark_noise * r / 256, (n_points, 2))
    return Draw(idx, mats, scales, noise)


def jitter(crops: np.ndarray, points: np.ndarray,
           d: Draw) -> tuple[np.ndarray, np.ndarray]:
    """Move each (crop, landmarks) pair by its transform; noise on the landmarks."""
    r = crops.shape[1]
    out_c, out_p = np.empty_like(crops), np.empty_like(points)
    for i in range(len(crops)):
        out_c[i] = cv2.warpAffine(crops[i], d.mats[i], (r, r), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
        # Landmark pixels use the edge convention; OpenCV's matrix maps pixel centres.
        xy = points[i, :, :2].astype(np.float64) - 0.5
        out_p[i, :, :2] = xy @ d.mats[i, :, :2].T + d.mats[i, :, 2] + 0.5 + d.noise[i]
        out_p[i, :, 2] = points[i, :, 2] * d.scales[i]
    return out_c, out_p


def augment(crops: np.ndarray, points: np.ndarray, tc: TrainConfig,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Jitter each (crop, landmarks) pair by the same random similarity transform; also
    returns the (B, 2, 3) transforms (for the warp render: see ``conditions``)."""
    d = draw(rng, 1, len(crops), crops.shape[1], points.shape[1], tc)
    c, p = jitter(crops, points, d)
    return c, p, d.mats


def conditions(conditioner: Conditioner, points: np.ndarray, source: np.ndarray | None = None,
               mats: np.ndarray | None = None) -> np.ndarray:
    """(B, R, R, C) conditioning for jittered ``points``. The warp render is made on the
    un-jittered ``source`` landmarks and then moved by the same transform as the crop:
    rendered on the jittered landmarks, its background (which the warp keeps where the
    photo has it) would disagree with the jittered target's, and G would spend itself
    learning to move backgrounds."""
    if conditioner.channels == 3 or source is None or mats is None:
        return conditioner.batch(points)
    r = conditioner.resolution
    out = np.empty((len(points), r, r, conditioner.channels), np.uint8)
    for i in range(len(points)):
        out[i, :, :, :3] = conditioner.sketch(points[i])
        out[i, :, :, 3:] = cv2.warpAffine(conditioner.warped(source[i]), mats[i], (r, r),
                                          flags=cv2.INTER_LINEAR,
                                          borderMode=cv2.BORDER_REPLICATE)
    return out


def make(conds: Sequence[Conditioner], crops: np.ndarray, points: np.ndarray,
         d: Draw) -> tuple[np.ndarray, np.ndarray]:
    """(crops (B, R, R, 3), conditioning (B, R, R, C)) uint8 for the drawn frames
    ``crops``/``points`` (already indexed by ``d.idx``), sample i conditioned by
    ``conds[d.scene[i]]`` (``conds[0]`` without scenes)."""
    c, p = jitter(crops, points, d)
    if d.scene is None or len(conds) == 1:
        return c, conditions(conds[0], p, points, d.mats)
    return c, np.concatenate([conditions(conds[k], p[i:i + 1], points[i:i + 1],
                                         d.mats[i:i + 1]) for i, k in enumerate(d.scene)])


_worker: list[Conditioner] = []  # per worker process, one per reference


def _start_worker(resolution: int, warp: bool, references: list[Reference | None]) -> None:
    cv2.setNumThreads(1)  # the workers are the parallelism
    _worker[:] = [Conditioner(resolution, warp, r) for r in references]


def _make_in_worker(crops: np.ndarray, points: np.ndarray,
                    d: Draw) -> tuple[np.ndarray, np.ndarray]:
    assert _worker, "worker not started"
    return make(_worker, crops, points, d)


def default_workers(device: str) -> int:
    """0 on a CPU (the step itself uses the cores); on a GPU the cores but one, up to 8."""
    if not device.startswith("cuda"):
        return 0
    return max(0, min(8, (os.cpu_count() or 1) - 1))


class Batches:
    """Training batches of ``train`` in step order: ``next()`` -> (crops, conditioning),
    both uint8 (B, R, R, ·). ``workers`` > 0 makes them in that many processes, up to
    twice as many steps ahead. With ``scenes`` (a sketch+warp generator's), each frame is
    conditioned by its scene's reference (``scenes.py``): ``conditioner`` and
    ``reference`` are then the photo's, used for nothing here."""

    def __init__(self, train: Clip, conditioner: Conditioner, reference: Reference | None,
                 tc: TrainConfig, rng: np.random.Generator, workers: int = 0,
                 scenes: Scenes | None = None) -> None:
        self._train, self._tc, self._rng = train, tc, rng
        refs: list[Reference | None] = [reference] if scenes is None else [*scenes.references]
        self._scene = None if scenes is None else scenes.of(train.index)
        self._own = [] if scenes is None or workers > 0 else \
            [Conditioner(conditioner.resolution, True, r) for r in refs]
        self._conds = self._own or [conditioner]
        self._pool: ProcessPoolExecutor | None = None
        self._ahead: deque[Future[tuple[np.ndarray, np.ndarray]]] = deque()
        if workers > 0:
            self._pool = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(conditioner.resolution, conditioner.channels == 6, refs))
            for _ in range(2 * workers):
                self._submit()

    def _draw(self) -> tuple[np.ndarray, np.ndarray, Draw]:
        t = self._train
        d = draw(self._rng, len(t), self._tc.batch, t.resolution, t.points.shape[1], self._tc)
        if self._scene is not None:
            d = replace(d, scene=self._scene[d.idx])
        return t.crops[d.idx], t.points[d.idx], d

    def _submit(self) -> None:
        assert self._pool is not None
        self._ahead.append(self._pool.submit(_make_in_worker, *self._draw()))

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        if self._pool is None:
            return make(self._conds, *self._draw())
        self._submit()
        return self._ahead.popleft().result()

    def close(self) -> None:
        for c in self._own:
            c.close()
        self._own = []
        if self._pool is not None:
            for f in self._ahead:
                f.cancel()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Batches:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
