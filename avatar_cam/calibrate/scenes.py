"""Scenes: pair each training frame with a warp reference lit as it is.

A ``sketch+warp`` generator corrects the warp render of one picture of the person. Live,
that picture is the photo. Trained only on the photo, G also learns to relight the photo
into the light of every other scene of the clip, because a training frame from another
scene differs from the photo's render by that light. That correction is wrong for the
frames lit like the photo: the photo's own scene, and live the person's own camera.

With scenes, each training and validation frame is paired with a reference from its own
scene instead: the photo in the photo's scene, and in every other scene that scene's best
photo candidate (``photo.ranking``) among its training frames. G then learns what a warp
of a picture lit like the frame still misses (the inside of the mouth, eyelids, shading
that follows the pose) and keeps its reference's light. Live and in evaluation it is
given the photo, as before.

A scene ends where the source frame numbers skip more than ``GAP`` frames (another
person, faceless or blurred frames, a cut) or where the face's colours jump
(``identity.segments``: the cut detector that sorts people).

Measured at 256 px, 1500 steps, seed 0, on the Megamind clip (benchmarks/README.md,
quality). On the man, judged on the issue baseline's held-out frames 216-269 (65 training
frames from his two scenes, the photo from the second): trained on the photo alone he
gets held-out SSIM 0.739, below the warp renderer alone (0.750), and was already at 0.741
by step 25. With scenes he gets 0.754, and it stayed between 0.750 and 0.756 at every
evaluation. Where the photo's scene already has most of the training frames, the change
is within seed-to-seed spread, which is about 0.01 (the photo alone with seed 1 gives
0.757):
- the man's own split: 0.761 with scenes, 0.769 on the photo alone;
- the woman: 0.648 with scenes, 0.660 on the photo alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..render.condition import Conditioner, Reference
from .dataset import Clip
from .identity import colours, segments
from .photo import ranking

GAP = 15  # source frames missing in a row that end a scene (half a second at 30 fps)


@dataclass(frozen=True)
class Scenes:
    """The first source frame number of each scene (ascending) and each scene's warp
    reference (the person's crop and landmarks)."""

    starts: np.ndarray
    references: list[Reference]

    def __post_init__(self) -> None:
        if len(self.starts) != len(self.references) or len(self.starts) == 0:
            raise ValueError("one reference per scene, and at least one scene")
        if np.any(np.diff(self.starts) <= 0):
            raise ValueError("scene starts must ascend")

    def __len__(self) -> int:
        return len(self.starts)

    def of(self, frames: np.ndarray) -> np.ndarray:
        """(N,) scene number of each source frame number (frames before the first scene
        belong to it)."""
        return np.maximum(np.searchsorted(self.starts, frames, side="right") - 1, 0)


def starts(clip: Clip) -> np.ndarray:
    """Source frame numbers where ``clip``'s scenes begin (the first frame's included)."""
    desc = np.stack([colours(c, p) for c, p in zip(clip.crops, clip.points, strict=True)])
    first = {a for a, _ in segments(desc)}
    first |= {i + 1 for i in np.flatnonzero(np.diff(clip.index) > GAP + 1)}
    return np.array([int(clip.index[i]) for i in sorted(first | {0})], np.int64)


def find(clip: Clip, train: Clip, photo: Reference, photo_frame: int) -> Scenes:
    """The scenes of ``clip`` (the whole prepared clip, time order); the photo is the
    reference of its own scene, the best-ranked training frame of each other scene is
    theirs (the photo for a scene with no training frame: no held-out frame ever is)."""
    first = starts(clip)
    scenes = Scenes(first, [photo] * len(first))
    scene_of_train = scenes.of(train.index)
    mine = int(scenes.of(np.array([photo_frame]))[0])
    refs: list[Reference] = []
    for s in range(len(first)):
        members = np.flatnonzero(scene_of_train == s)
        if s == mine or len(members) == 0:
            refs.append(photo)
            continue
        best = int(members[ranking(train.points[members], len(members))[0]])
        refs.append((train.crops[best], train.points[best]))
    return Scenes(first, refs)


def by_scene(scenes: Scenes, clip: Clip) -> np.ndarray:
    """(N, R, R, 6) sketch+warp conditioning of ``clip``'s frames, each warped from its
    own scene's reference."""
    which = scenes.of(clip.index)
    out = np.empty((len(clip), clip.resolution, clip.resolution, 6), np.uint8)
    for k in np.unique(which):
        sel = np.flatnonzero(which == k)
        with Conditioner(clip.resolution, True, scenes.references[k]) as c:
            out[sel] = c.batch(clip.points[sel])
    return out
