"""A clip or a few photos -> aligned training crops with their landmarks.

Clips (``prepare_clip``), in two passes so a long clip never sits in memory whole:

1. track every frame (``scan``; MediaPipe, video mode, no smoothing: smoothing lags the
   pixels; ``scan.scan_video`` splits a video file among processes);
   a frame without a face is dropped, and so is a blurred one: variance of the Laplacian
   over the face's box below ``BLUR_RATIO`` times the clip's median (relative, because
   sharpness depends on the camera and the face).
   Then one person: a clip can show others (``identity.people``, by face colour); the
   frames of person ``who`` (default: the one in the most frames) are kept, the others
   counted in the stats. Frames with a hand over the face are dropped too (``cover``:
   MediaPipe Hands on every few frames), or the generator would learn to draw the hand.
2. a crop box per frame (``ingest.crop_box``: the face centred, sized by its oval),
   averaged over the neighbouring frames of the same shot to damp landmark jitter. Per
   frame rather than one box per clip because real footage zooms, pans and cuts; the
   generator then learns a face of constant framing, which is what the adapter drives.
   The box is then moved (and if larger than the frame, shrunk) into the frame
   (``inside``): a crop reaching past the edge would be filled with smeared edge
   pixels, which the generator would learn to draw and evaluation would score.

Split (``split``): the held-out slice is the LAST ``holdout`` fraction of the usable
frames in time, contiguous (a random split would put near-duplicate neighbours of every
test frame in training); of the frames before it every ``1 / val``-th one validates
(early stopping) and the rest train. Interleaved, not a block before the held-out
slice: a block there would take the shot the held-out slice continues out of training
(on the Megamind clip it held out the only frames of the second character's last shot).
The person's photo (the warp source) is a frame before the held-out slice: the most
frontal, closed-mouthed face with open eyes and no hand over it (``photo``).
Training frames beyond ``max_frames`` are thinned by farthest-point sampling on
normalized landmarks, which keeps the rare poses and expressions.

Photos (``widen_photos``): 1 to 8 photos are too few to learn a mouth that opens or an
eye that blinks, so the warp renderer renders the warp-source photo under random motions
(``motion.Motion``: head turns, jaw, blinks, smile, brows); the held-out set is the motion
script (``motion.script``), which no training sample follows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .. import mesh, motion
from ..errors import NoFaceError, VideoError
from ..person import Person
from ..types import Landmarks
from .cover import covered_frames
from .identity import people
from .ingest import Track, crop_box
from .photo import CANDIDATES, Covered, choose, ranking, to_check
from .scan import Scan, scan

BLUR_RATIO = 0.35  # below this share of the clip's median sharpness a frame is "blurred"
MIN_FRAMES = 12  # fewer usable frames than this cannot train anything
HOLDOUT = 0.2  # share of usable frames held out for evaluation (the last ones)
VAL = 0.1  # share of the others used for early stopping


@dataclass
class Clip:
    """Aligned samples. crops: (N, R, R, 3) uint8 BGR; points: (N, 478, 3) float32 in crop
    pixels; index: (N,) source frame numbers (time order)."""

    crops: np.ndarray
    points: np.ndarray
    index: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.crops)

    def take(self, idx: np.ndarray | slice) -> Clip:
        return Clip(self.crops[idx], self.points[idx], self.index[idx], dict(self.stats))

    @property
    def resolution(self) -> int:
        return int(self.crops.shape[1])


def read_video(path: Path) -> Callable[[], Iterator[np.ndarray]]:
    """A re-startable frame reader for a video file, or VideoError."""
    if not Path(path).is_file():
        raise VideoError(f"video {path} does not exist", "check the path")
    cap = cv2.VideoCapture(str(path))
    ok = cap.isOpened() and cap.read()[0]
    cap.release()
    if not ok:
        raise VideoError(f"{path} is not a readable video", "use an mp4/avi/mkv clip")

    def frames() -> Iterator[np.ndarray]:
        cap = cv2.VideoCapture(str(path))
        try:
            while True:
                ok, img = cap.read()
                if not ok:
                    return
                yield img
        finally:
            cap.release()

    return frames


def box_affine(x0: float, y0: float, side: float, resolution: int) -> np.ndarray:
    """(2, 3) affine crop pixel -> frame pixel."""
    k = side / resolution
    return np.array([[k, 0.0, x0], [0.0, k, y0]])


def to_crop(points: np.ndarray, crop_to_frame: np.ndarray) -> np.ndarray:
    k, x0, y0 = crop_to_frame[0, 0], crop_to_frame[0, 2], crop_to_frame[1, 2]
    out = points.astype(np.float64).copy()
    out[:, 0] = (out[:, 0] - x0) / k
    out[:, 1] = (out[:, 1] - y0) / k
    out[:, 2] /= k
    return out.astype(np.float32)


def crop_image(image: np.ndarray, crop_to_frame: np.ndarray, resolution: int) -> np.ndarray:
    k = crop_to_frame[0, 0]
    inv = cv2.invertAffineTransform(crop_to_frame)
    return cv2.warpAffine(image, inv, (resolution, resolution),
                          flags=cv2.INTER_AREA if k > 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def prepare_clip(frames: Callable[[], Iterator[np.ndarray]], track: Track, resolution: int,
                 what: str = "the clip", who: int = 0, covered: Covered | None = None
                 ) -> tuple[Clip, np.ndarray, np.ndarray]:
    """Track, filter and crop a clip. Returns (clip in time order, the crop_to_frame (2, 3)
    affine of the person's photo, and that full frame; see ``photo``).
    ``who``: which of the clip's people to keep (``identity.people``: 0 = most frames).
    ``covered(image, face points)``: is a hand over that face (``tracking.HandFinder``);
    it judges a sample of the frames (``cover``), and the frames a hand covers are
    dropped (``stats["hand_covered"]``), and the photo's candidates, which must be clear
    (``stats["photo_passed_over"]`` counts better-ranked frames turned down). Without it
    nothing is judged and the photo is chosen from the landmarks alone."""
    return prepare_scanned(frames, scan(frames(), track, covered), resolution, what, who,
                           covered)


def prepare_scanned(frames: Callable[[], Iterator[np.ndarray]], scanned: Scan,
                    resolution: int, what: str = "the clip", who: int = 0,
                    covered: Covered | None = None) -> tuple[Clip, np.ndarray, np.ndarray]:
    """``prepare_clip`` after its first pass (``scan.scan`` or, in several processes,
    ``scan.scan_video``)."""
    found, samples, total, frame_size = (scanned.found, scanned.samples, scanned.total,
                                         scanned.frame_size)
    if not found:
        raise NoFaceError(f"no face found in any of the {total} frames of {what}",
                          "record the face well lit and facing the camera")
    med = float(np.median([s for _, _, s, _ in found]))
    sharp = [(n, p, c) for n, p, s, c in found if s >= BLUR_RATIO * med]
    label = people(np.stack([c for _, _, c in sharp])) if sharp else np.zeros(0, np.int64)
    n_people = int(label.max()) + 1 if len(label) else 0
    if sharp and not 0 <= who < n_people:
        raise VideoError(f"{what} shows {n_people} people (told apart by face colour); "
                         f"there is no person {who}", f"pick 0 to {n_people - 1}")
    mine = [(n, p) for (n, p, _), k in zip(sharp, label, strict=True) if k == who]
    hand = covered_frames(samples, [n for n, *_ in found])
    usable = [(n, p) for n, p in mine if n not in hand]
    if len(usable) < MIN_FRAMES:
        raise VideoError(
            f"only {len(usable)} usable frames in {what} ({total} frames, {len(found)} with "
            f"a face, {len(found) - len(sharp)} blurred, {len(sharp) - len(mine)} of "
            f"another person, {len(mine) - len(usable)} with a hand over the face); at "
            f"least {MIN_FRAMES} are needed",
            "record a longer clip (10 s or more), facing the camera, in good light, "
            "hands away from the face")
    boxes = smooth_boxes(np.array([n for n, _ in usable]),
                         np.array([crop_box(p) for _, p in usable]))
    boxes = np.array([inside(b, frame_size) for b in boxes])
    affines = {n: box_affine(b[0], b[1], b[2], resolution)
               for (n, _), b in zip(usable, boxes, strict=True)}
    keep = {n: p for n, p in usable}
    ranked = [usable[i][0] for i in ranking(np.stack([p for _, p in usable]),
                                            len(usable) - held_count(len(usable)))]
    faces = {n: p for n, p, *_ in found if n not in hand}  # neighbours of candidates
    want = to_check(ranked[:CANDIDATES], set(faces)) if covered is not None else {ranked[0]}
    crops, points, index = [], [], []
    images: dict[int, np.ndarray] = {}
    for n, image in enumerate(frames()):
        if n in keep:
            crops.append(crop_image(image, affines[n], resolution))
            points.append(to_crop(keep[n], affines[n]))
            index.append(n)
        if n in want:
            images[n] = image.copy()
    if len(images) != len(want) or len(crops) != len(usable):
        raise VideoError(f"{what} changed while it was read", "use a finished video file")

    def fetch(wanted: set[int]) -> dict[int, np.ndarray]:  # one more read, kept small
        if wanted <= set(images):
            return images
        return {n: image for n, image in enumerate(frames()) if n in wanted}

    best, hands = choose(ranked, faces, covered, fetch, hand) if covered is not None \
        else (ranked[0], 0)
    photo = fetch({best})[best]
    stats = {"frames": total, "with_face": len(found), "blurred": len(found) - len(sharp),
             "people": n_people, "other_people": len(sharp) - len(mine),
             "hand_covered": len(mine) - len(usable), "hands_judged": len(samples),
             "usable": len(usable), "photo_frame": int(best), "photo_passed_over": hands}
    clip = Clip(np.stack(crops), np.stack(points), np.array(index, np.int32), stats)
    return clip, affines[best], photo


def smooth_boxes(index: np.ndarray, boxes: np.ndarray, radius: int = 2) -> np.ndarray:
    """(N, 3) boxes (x0, y0, side) averaged over neighbours within ``radius`` frames that
    belong to the same shot (a cut moves or resizes the box by more than a fifth)."""
    centre = boxes[:, :2] + boxes[:, 2:] / 2
    out = boxes.copy()
    for i in range(len(boxes)):
        near = [j for j in range(max(0, i - radius), min(len(boxes), i + radius + 1))
                if abs(int(index[j]) - int(index[i])) <= radius
                and abs(boxes[j, 2] / boxes[i, 2] - 1) < 0.2
                and np.linalg.norm(centre[j] - centre[i]) < 0.2 * boxes[i, 2]]
        side = float(boxes[near, 2].mean())
        c = centre[near].mean(0)
        out[i] = (c[0] - side / 2, c[1] - side / 2, side)
    return out


def inside(box: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The (x0, y0, side) box shrunk to the frame's short side if larger, then moved into
    the frame: the crop holds only real pixels, no edge pixels smeared outwards."""
    x0, y0, side = (float(v) for v in box)
    w, h = size
    fit = min(side, float(w), float(h))
    x0, y0 = x0 + (side - fit) / 2, y0 + (side - fit) / 2
    return np.array([min(max(x0, 0.0), w - fit), min(max(y0, 0.0), h - fit), fit])


def photo_choice(points: np.ndarray) -> int:
    """Index of the best-ranked photo among a clip's (N, 478, 3) landmarks in time order
    by the landmarks alone (``photo.ranking``; never a held-out frame)."""
    return int(ranking(points, len(points) - held_count(len(points)))[0])


def photo_index(clip: Clip) -> int:
    """Index into ``clip`` of the photo ``prepare_clip`` chose (``stats["photo_frame"]``)."""
    at = np.flatnonzero(clip.index == clip.stats.get("photo_frame", -1))
    if not len(at):
        raise VideoError("the prepared clip does not hold its photo frame",
                         "prepare the clip again")
    return int(at[0])


def diverse(points: np.ndarray, count: int) -> np.ndarray:
    """Indices (sorted) of ``count`` samples by farthest-point sampling on normalized
    landmarks (centred, divided by inter-ocular distance)."""
    if len(points) <= count:
        return np.arange(len(points))
    xy = points[:, :, :2].astype(np.float64)
    iod = np.array([mesh.inter_ocular(p) for p in points])[:, None, None]
    feats = ((xy - xy.mean(1, keepdims=True)) / np.maximum(iod, 1e-6)).reshape(len(xy), -1)
    chosen = [0]
    dist = np.linalg.norm(feats - feats[0], axis=1)
    for _ in range(count - 1):
        i = int(np.argmax(dist))
        chosen.append(i)
        dist = np.minimum(dist, np.linalg.norm(feats - feats[i], axis=1))
    return np.sort(np.array(chosen))


def held_count(n: int, holdout: float = HOLDOUT) -> int:
    """How many of ``n`` usable frames (the last ones) are held out."""
    return max(1, int(round(n * holdout)))


def split(clip: Clip, holdout: float = HOLDOUT, val: float = VAL,
          max_frames: int = 2000) -> tuple[Clip, Clip, Clip]:
    """(train, val, held-out) in time order; see the module docstring."""
    n = len(clip)
    n_test = held_count(n, holdout)
    every = max(2, int(round(1 / val)))
    rest = np.arange(n - n_test)
    is_val = rest % every == every // 2
    if (~is_val).sum() < MIN_FRAMES // 2 or not is_val.any():
        raise VideoError(f"{n} usable frames are too few to train and hold some out",
                         "record a longer clip (10 s or more)")
    train = clip.take(rest[~is_val])
    train = train.take(diverse(train.points, max_frames))
    return train, clip.take(rest[is_val]), clip.take(slice(n - n_test, n))


def random_motion(rng: np.random.Generator) -> motion.Motion:
    """A random pose and expression inside the range the warp renderer handles well."""
    talk = rng.random() < 0.6
    blink = rng.random() < 0.25
    return motion.Motion(
        yaw=float(rng.uniform(-22, 22)), pitch=float(rng.uniform(-12, 12)),
        roll=float(rng.uniform(-10, 10)),
        jaw_open=float(rng.uniform(0, 1) if talk else 0.0),
        blink_left=float(rng.uniform(0.5, 1) if blink else rng.uniform(0, 0.2)),
        blink_right=float(rng.uniform(0.5, 1) if blink else rng.uniform(0, 0.2)),
        smile=float(rng.uniform(0, 1) if rng.random() < 0.35 else 0.0),
        brow_raise=float(rng.uniform(0, 1) if rng.random() < 0.3 else 0.0),
        offset_x=float(rng.uniform(-0.06, 0.06)), offset_y=float(rng.uniform(-0.04, 0.04)))


def widen_photos(person: Person, resolution: int, count: int = 400, held: int = 48,
                 seed: int = 0) -> tuple[Clip, Clip]:
    """(train, held-out) warp renders of the person's crop: random motions for training,
    ``held`` frames of the motion script (a quarter second apart) held out."""
    from ..render.warp import WarpRenderer

    rng = np.random.default_rng(seed)
    s = person.crop_size
    scale = np.float32(resolution / s)

    def render(warp: WarpRenderer, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        img = warp.render(Landmarks(0, 0, pts, (s, s)))
        return img, (pts * scale).astype(np.float32)

    with WarpRenderer(person.crop, person.neutral, resolution=resolution) as warp:
        train = [render(warp, person.neutral)]
        train += [render(warp, motion.animate(person.neutral, random_motion(rng)))
                  for _ in range(count - 1)]
        test = [render(warp, motion.animate(person.neutral, motion.script(0.25 * i + 0.1)))
                for i in range(held)]

    def pack(items: list[tuple[np.ndarray, np.ndarray]]) -> Clip:
        return Clip(np.stack([i for i, _ in items]), np.stack([p for _, p in items]),
                    np.arange(len(items), dtype=np.int32),
                    {"frames": len(items), "source": "warp renders"})

    return pack(train), pack(test)


def save_clip(clip: Clip, folder: Path) -> None:
    """PNG frames (NNNNN.png) + points.npy + index.npy; no pickles."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(clip.crops):
        if not cv2.imwrite(str(folder / f"{i:05d}.png"), img):
            raise OSError(f"cannot write {folder / f'{i:05d}.png'}")
    np.save(folder / "points.npy", clip.points.astype(np.float32), allow_pickle=False)
    np.save(folder / "index.npy", clip.index.astype(np.int32), allow_pickle=False)


def load_clip(folder: Path) -> Clip:
    """Read what ``save_clip`` wrote; VideoError naming the folder when it is damaged."""
    fix = "re-run `avatar-cam calibrate` for this person"
    try:
        points = np.load(folder / "points.npy", allow_pickle=False)
        index = np.load(folder / "index.npy", allow_pickle=False)
        crops = [cv2.imread(str(folder / f"{i:05d}.png"), cv2.IMREAD_COLOR)
                 for i in range(len(points))]
    except (OSError, ValueError) as exc:
        raise VideoError(f"held-out set in {folder} is unreadable ({exc})", fix) from exc
    if (any(c is None for c in crops) or points.ndim != 3 or points.shape[1:] != (478, 3)
            or len(index) != len(points) or len(points) == 0):
        raise VideoError(f"held-out set in {folder} is incomplete", fix)
    return Clip(np.stack(crops), points.astype(np.float32), index.astype(np.int32))
