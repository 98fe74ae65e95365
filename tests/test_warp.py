"""WarpRenderer on a real face: the astronaut photo, real MediaPipe before and after.

The key check is the last group: MediaPipe run on the warped picture must find a face
whose landmarks are where the renderer was asked to put them.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
from face_checks import detect

from avatar_cam import mesh
from avatar_cam.render.warp import WarpRenderer, build_mesh, mouth_gap, warp_face
from avatar_cam.types import Landmarks

S = 256  # crop side
INNER = list(mesh.LIPS_INNER[:-1])
OVAL = list(mesh.FACE_OVAL[:-1])


@pytest.fixture(scope="module")
def tracker(face_mesh: Any) -> Any:
    return face_mesh


@pytest.fixture(scope="module")
def astro(tracker: Any, astronaut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's square face crop (S x S, BGR) and its landmarks (smiling, teeth)."""
    photo = astronaut
    pts = detect(tracker, photo)
    centre = (pts[:, :2].min(axis=0) + pts[:, :2].max(axis=0)) / 2
    scale = S / (2.0 * float(np.ptp(pts[:, :2], axis=0).max()))
    m = np.array([[scale, 0, S / 2 - scale * centre[0]], [0, scale, S / 2 - scale * centre[1]]])
    crop = cv2.warpAffine(photo, m, (S, S), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_REPLICATE)
    return crop, detect(tracker, crop)


@pytest.fixture(scope="module")
def closed(tracker: Any, astro: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A one-photo person with a closed mouth: the astronaut warped shut, re-tracked."""
    crop, neutral = astro
    shut = warp_face(crop, neutral, jaw(neutral, -mouth_gap(neutral.astype(np.float64))))
    return shut, detect(tracker, shut)


# -- targets -------------------------------------------------------------------------------
def similarity(points: np.ndarray, angle_deg: float = 0.0, scale: float = 1.0,
               shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Rotate/scale about the face centre, then shift; z scales along."""
    p = points.astype(np.float64).copy()
    c = p[:468, :2].mean(axis=0)
    t = np.deg2rad(angle_deg)
    rot = scale * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    p[:, :2] = (p[:, :2] - c) @ rot.T + c + np.array(shift)
    p[:, 2] *= scale
    return p.astype(np.float32)


def turn(points: np.ndarray, yaw_deg: float = 0.0, pitch_deg: float = 0.0) -> np.ndarray:
    """Rotate the head in depth about its centre (x, y in pixels, z in the same units)."""
    p = points.astype(np.float64).copy()
    c = p[:468].mean(axis=0)
    y, x = np.deg2rad(yaw_deg), np.deg2rad(pitch_deg)
    r_yaw = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    r_pitch = np.array([[1, 0, 0], [0, np.cos(x), np.sin(x)], [0, -np.sin(x), np.cos(x)]])
    p = (p - c) @ (r_pitch @ r_yaw).T + c
    return p.astype(np.float32)


def jaw(points: np.ndarray, amount: float) -> np.ndarray:
    """Drop the jaw by ``amount`` px (negative closes): the lower lips and the chin move
    down, fading out towards the sides of the face; the upper lip stays."""
    p = points.astype(np.float64).copy()
    a, b = p[78, :2], p[308, :2]
    u = (b - a) / np.linalg.norm(b - a)
    n = np.array([-u[1], u[0]])
    half = 0.5 * float(np.ptp(p[OVAL, :2] @ u))
    rel = p[:, :2] - (a + b) / 2
    down, across = rel @ n, rel @ u
    upper = list(mesh.UPPER_INNER_LIP)  # runs corner to corner: increasing ``across``
    below_lip = down - np.interp(across, across[upper], down[upper])
    weight = np.clip(below_lip / (0.1 * half), 0, 1) * np.clip(1 - (across / half) ** 2, 0, 1)
    lower = list(mesh.LOWER_INNER_LIP[1:-1])
    weight[lower] = np.clip(1 - (across[lower] / (0.6 * half)) ** 2, 0, 1)
    weight[468:] = 0
    p[:, :2] += (amount * weight)[:, None] * n
    return p.astype(np.float32)


def render(renderer: WarpRenderer, points: np.ndarray, size: int = S) -> np.ndarray:
    return renderer.render(Landmarks(0, 0, points, (size, size)))


def polygon_mask(points: np.ndarray, index: list[int], shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round((points[index, :2] - 0.5) * 16).astype(np.int32)], (1,),
                 cv2.LINE_8, 4)
    return mask.astype(bool)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    err = float(((a.astype(np.float64) - b.astype(np.float64))[mask] ** 2).mean())
    return 10 * np.log10(255.0**2 / max(err, 1e-10))


def nme(found: np.ndarray, target: np.ndarray) -> float:
    """Mean landmark error over the 468 mesh points / inter-ocular distance."""
    err = np.linalg.norm(found[:468, :2] - target[:468, :2], axis=1).mean()
    return float(err / mesh.inter_ocular(target))


# -- geometry --------------------------------------------------------------------------------
def test_neutral_reproduces_the_crop(astro: tuple[np.ndarray, np.ndarray]) -> None:
    crop, neutral = astro
    face = polygon_mask(neutral, OVAL, (S, S))
    mouth = cv2.dilate(polygon_mask(neutral, INNER, (S, S)).astype(np.uint8),
                       np.ones((5, 5), np.uint8)).astype(bool)
    with WarpRenderer(crop, neutral) as renderer:
        assert renderer.mesh.mouth_source  # teeth show in the neutral: warp them
        out = render(renderer, neutral)
    assert out.shape == (S, S, 3) and out.dtype == np.uint8
    assert psnr(out, crop, face) > 30
    assert psnr(out, crop, face & ~mouth) > 40
    assert psnr(out, crop, ~face) > 40
    with WarpRenderer(crop, neutral, mouth="drawn") as drawn:  # painted mouth, same face
        assert psnr(render(drawn, neutral), crop, face & ~mouth) > 40


def test_deterministic_and_rescaled(astro: tuple[np.ndarray, np.ndarray]) -> None:
    crop, neutral = astro
    target = jaw(similarity(neutral, 5, 1.03, (4, -3)), 8)
    with WarpRenderer(crop, neutral) as renderer:
        first = render(renderer, target)
        assert render(renderer, target).tobytes() == first.tobytes()
        # The same landmarks given in pixels of a 2x larger image: the same picture.
        assert render(renderer, target * 2, 2 * S).tobytes() == first.tobytes()
    with WarpRenderer(crop, neutral) as again:
        assert render(again, target).tobytes() == first.tobytes()
    for resolution in (64, 384, 512):
        with WarpRenderer(crop, neutral, resolution) as renderer:
            assert render(renderer, target).shape == (resolution, resolution, 3)
    assert warp_face(crop, neutral, target).tobytes() == first.tobytes()


def test_translation_moves_the_face(astro: tuple[np.ndarray, np.ndarray]) -> None:
    crop, neutral = astro
    dx, dy = 9.0, -6.0
    with WarpRenderer(crop, neutral) as renderer:
        out = render(renderer, similarity(neutral, shift=(dx, dy)))
    x0, y0 = np.floor(neutral[:468, :2].min(axis=0)).astype(int)
    x1, y1 = np.ceil(neutral[:468, :2].max(axis=0)).astype(int)
    before = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)[y0:y1, x0:x1].astype(np.float32)
    after = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)[y0:y1, x0:x1].astype(np.float32)
    window = cv2.createHanningWindow((x1 - x0, y1 - y0), cv2.CV_32F)
    (sx, sy), _ = cv2.phaseCorrelate(before, after, window)
    assert abs(sx - dx) < 1.0 and abs(sy - dy) < 1.0
    # Inside the moved face the picture is the crop, shifted.
    face = polygon_mask(neutral, OVAL, (S, S))
    face = cv2.erode(face.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    shifted = cv2.warpAffine(crop, np.array([[1, 0, dx], [0, 1, dy]], np.float32), (S, S))
    moved = np.roll(face, (int(dy), int(dx)), axis=(0, 1))
    assert psnr(out, shifted, moved) > 35
    # The picture edge stays put.
    assert psnr(out, crop, np.pad(np.zeros((S - 2, S - 2), bool), 1, constant_values=True)) > 35


def test_rotation_rotates_the_face(astro: tuple[np.ndarray, np.ndarray]) -> None:
    crop, neutral = astro
    angle = 10.0
    target = similarity(neutral, angle)
    with WarpRenderer(crop, neutral) as renderer:
        out = render(renderer, target)
    c = neutral[:468, :2].astype(np.float64).mean(axis=0)
    rot = cv2.getRotationMatrix2D((float(c[0]) - 0.5, float(c[1]) - 0.5), -angle, 1.0)
    rotated = cv2.warpAffine(crop, rot, (S, S), flags=cv2.INTER_LINEAR)
    face = polygon_mask(target, OVAL, (S, S))
    face = cv2.erode(face.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert psnr(out, rotated, face) > 30
    assert psnr(out, crop, face) < 25  # it did move


# -- the mouth -------------------------------------------------------------------------------
def interior_share(before: np.ndarray, after: np.ndarray, region: np.ndarray) -> tuple[float,
                                                                                      float]:
    """Of the pixels in ``region``: the share that was skin or lip before (reddish) and the
    share that is mouth interior after (a quarter darker than before, or pale teeth)."""
    b = before[region].astype(int)
    a = after[region].astype(int)
    skin = (b[:, 2] > 110) & (b[:, 2] > b[:, 0] + 25)
    darker = a.max(axis=1) < 0.75 * b.max(axis=1)
    teeth = (a.min(axis=1) > 130) & (np.ptp(a, axis=1) < 70)
    return float(skin.mean()), float((darker | teeth).mean())


@pytest.mark.parametrize("person", ["astro", "closed"])
def test_opening_the_mouth_shows_its_interior(person: str, request: pytest.FixtureRequest) -> None:
    crop, neutral = request.getfixturevalue(person)
    target = jaw(neutral, 0.16 * mesh.inter_ocular(neutral))
    with WarpRenderer(crop, neutral) as renderer:
        assert renderer.mesh.mouth_source == (person == "astro")
        before, after = render(renderer, neutral), render(renderer, target)
    kernel = np.ones((3, 3), np.uint8)
    was = cv2.dilate(polygon_mask(neutral, INNER, (S, S)).astype(np.uint8), kernel)
    now = cv2.erode(polygon_mask(target, INNER, (S, S)).astype(np.uint8), kernel)
    region = now.astype(bool) & ~was.astype(bool)
    assert region.sum() > 150
    skin_before, interior_after = interior_share(before, after, region)
    assert skin_before > 0.8
    assert interior_after > 0.8


def test_closing_the_mouth_hides_the_teeth(astro: tuple[np.ndarray, np.ndarray]) -> None:
    crop, neutral = astro
    with WarpRenderer(crop, neutral) as renderer:
        shut = render(renderer, jaw(neutral, -mouth_gap(neutral.astype(np.float64))))
    mouth = cv2.erode(polygon_mask(neutral, INNER, (S, S)).astype(np.uint8),
                      np.ones((3, 3), np.uint8)).astype(bool)

    def teeth(image: np.ndarray) -> np.ndarray:
        """Pale and not pink (lips are pale too, but far redder than green)."""
        red_minus_green = image[..., 2].astype(int) - image[..., 1]
        return np.asarray((image.min(axis=2) > 140) & (red_minus_green < 35) & mouth)

    assert teeth(crop).sum() > 100  # the astronaut smiles with her teeth
    # A few specks stay: the tracked inner-lip contour runs a pixel inside the teeth.
    assert teeth(shut).sum() < 0.25 * teeth(crop).sum()


def test_mesh_leaves_the_mouth_open(astro: tuple[np.ndarray, np.ndarray],
                                    closed: tuple[np.ndarray, np.ndarray]) -> None:
    upper, lower = set(mesh.UPPER_INNER_LIP[1:-1]), set(mesh.LOWER_INNER_LIP[1:-1])
    for _, neutral in (astro, closed):
        built = build_mesh(neutral, (S, S), S)
        triangles = built.triangles.tolist()
        # No triangle joins the upper and the lower lip across the mouth ...
        assert not [t for t in triangles if set(t) & upper and set(t) & lower]
        # ... and every mesh point (iris excepted) is used.
        assert set(range(468)) <= set(built.triangles.ravel().tolist())
    # Lips sealed exactly (upper and lower inner lip on the same points) still leave a
    # hole that opens into a drawn mouth.
    crop, neutral = closed
    sealed = neutral.copy()
    sealed[list(mesh.LOWER_INNER_LIP)] = sealed[list(mesh.UPPER_INNER_LIP)]
    with WarpRenderer(crop, sealed) as renderer:
        assert not renderer.mesh.mouth_source
        assert not [t for t in renderer.mesh.triangles.tolist()
                    if set(t) & upper and set(t) & lower]
        target = jaw(sealed, 12)
        out = render(renderer, target)
    mouth = cv2.erode(polygon_mask(target, INNER, (S, S)).astype(np.uint8),
                      np.ones((3, 3), np.uint8)).astype(bool)
    assert mouth.sum() > 100 and out[mouth].max(axis=1).mean() < 170  # cavity and teeth
    assert crop[mouth].max(axis=1).mean() > 170  # where lips and skin were
    # The open neutral mouth: no triangle inside it.
    neutral = astro[1]
    poly = neutral[INNER, :2]
    built = build_mesh(neutral, (S, S), S)
    for t in built.triangles:
        centre = built.source[t].mean(axis=0)
        assert cv2.pointPolygonTest(poly, (float(centre[0]), float(centre[1])), False) <= 0


# -- robustness ------------------------------------------------------------------------------
def test_degenerate_targets_do_not_crash(astro: tuple[np.ndarray, np.ndarray]) -> None:
    crop, neutral = astro
    rng = np.random.default_rng(0)
    mirrored = neutral.copy()
    mirrored[:, 0] = S - mirrored[:, 0]
    flat = neutral.copy()
    flat[:, 1] = 128.0
    targets = [
        np.full((478, 3), 100.0, np.float32),  # everything on one spot
        (neutral * 40 - 5000).astype(np.float32),  # far outside
        rng.uniform(-50, S + 50, (478, 3)).astype(np.float32),  # noise
        mirrored,
        flat,
        similarity(neutral, 170, 3.0),
        jaw(neutral, 200),  # mouth through the chin
        jaw(neutral, -40),  # lips crossed
    ]
    with WarpRenderer(crop, neutral) as renderer, \
            WarpRenderer(crop, neutral, mouth="drawn") as drawn:
        for target in targets:
            for r in (renderer, drawn):
                out = render(r, target)
                assert out.shape == (S, S, 3) and out.dtype == np.uint8
                assert render(r, target).tobytes() == out.tobytes()


def test_bad_arguments_are_refused(astro: tuple[np.ndarray, np.ndarray]) -> None:
    crop, neutral = astro
    with pytest.raises(ValueError, match="square"):
        WarpRenderer(crop[:, :200], neutral)
    with pytest.raises(ValueError, match="uint8"):
        WarpRenderer(crop.astype(np.float32), neutral)
    with pytest.raises(ValueError, match="resolution"):
        WarpRenderer(crop, neutral, 16)
    with pytest.raises(ValueError, match="mouth"):
        WarpRenderer(crop, neutral, mouth="open")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="grid"):
        WarpRenderer(crop, neutral, grid=8)
    with pytest.raises(ValueError):
        WarpRenderer(crop, neutral[:468])
    with pytest.raises(ValueError, match="degenerate"):
        WarpRenderer(crop, np.zeros((478, 3), np.float32))
    renderer = WarpRenderer(crop, neutral)
    with pytest.raises(ValueError, match="size"):
        renderer.render(Landmarks(0, 0, neutral, (0, S)))
    renderer.close()
    with pytest.raises(RuntimeError):
        render(renderer, neutral)


# -- the important one: does the result still look like this face to a tracker? ------------
TARGETS = {
    "neutral": lambda p: p,
    "shift": lambda p: similarity(p, shift=(8, -5)),
    "roll 8": lambda p: similarity(p, 8),
    "zoom 1.08": lambda p: similarity(p, scale=1.08),
    "yaw 15": lambda p: turn(p, 15),
    "yaw -15": lambda p: turn(p, -15),
    "pitch 10": lambda p: turn(p, pitch_deg=10),
    "jaw 8": lambda p: jaw(p, 8),
    "jaw 16": lambda p: jaw(p, 16),
    "roll + jaw": lambda p: jaw(similarity(p, -6, 0.95, (-4, 3)), 6),
}


@pytest.mark.parametrize("person", ["astro", "closed"])
def test_mediapipe_finds_the_target_face(person: str, tracker: Any,
                                         request: pytest.FixtureRequest) -> None:
    crop, neutral = request.getfixturevalue(person)
    errors = {}
    with WarpRenderer(crop, neutral) as renderer:
        for name, make in TARGETS.items():
            target = make(neutral)
            errors[name] = nme(detect(tracker, render(renderer, target)), target)
        # The measure can fail: the unmoved face is far from a moved target.
        moved = similarity(neutral, shift=(8, -5))
        control = nme(detect(tracker, render(renderer, neutral)), moved)
    assert control > 0.08, control
    assert max(errors.values()) < 0.05, errors
