"""The conditioning-image rasterizer: exact, versioned, and drawn where the landmarks are.

The frozen checksums below pin ``sketch-v1`` bit-exactly. If one fails, the drawing
changed: a landmark-only receiver with the old code would draw something else, so bump
``RASTER_VERSION`` (and the checksums) rather than just updating the numbers.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from avatar_cam import mesh
from avatar_cam.raster import (
    MAX_RESOLUTION,
    MIN_RESOLUTION,
    PARTS,
    RASTER_VERSION,
    line_thickness,
    rasterize,
)


def synthetic_points() -> np.ndarray:
    """478 points with values exact in float32 (no transcendental functions), so the
    checksums below depend on the rasterizer only."""
    i = np.arange(478)
    x = 8 + (i * 37 % 241) + (i % 16) / 16
    y = 8 + (i * 53 % 239) + (i % 8) / 8
    return np.stack([x, y, (i % 5) - 2.0], axis=1).astype(np.float32)


GOLDEN = [
    ((256, 256), 64, "69a0b75847ac5e4ce91122add1d28501898b2b236126483bcae54b8f35ef397a"),
    ((256, 256), 256, "e62033cce98d37070d6691ca42d22723cd3bc0b08256e6d51d3f85e6470e4a56"),
    ((320, 240), 128, "74e69872a22bb3f117c1995e6d77ed6369e1dbe04fc6c44cccce6dd2119c633e"),
]


@pytest.fixture(scope="module")
def face(astronaut: np.ndarray) -> np.ndarray:
    """MediaPipe's landmarks of the astronaut photo, pixels of (512, 512)."""
    import mediapipe as mp

    image = np.ascontiguousarray(astronaut[:, :, ::-1])  # RGB, what MediaPipe wants
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True,
                                         refine_landmarks=True) as tracker:
        found = tracker.process(image).multi_face_landmarks
    assert found, "MediaPipe found no face in the astronaut photo"
    h, w = image.shape[:2]
    return np.array([[p.x * w, p.y * h, p.z * w] for p in found[0].landmark], np.float32)


def test_version_is_pinned() -> None:
    assert RASTER_VERSION == "sketch-v1"


@pytest.mark.parametrize(("size", "resolution", "digest"), GOLDEN)
def test_frozen_checksum(size: tuple[int, int], resolution: int, digest: str) -> None:
    image = rasterize(synthetic_points(), size, resolution)
    assert hashlib.sha256(image.tobytes()).hexdigest() == digest, (
        f"the {RASTER_VERSION} drawing changed: bump RASTER_VERSION and the checksums"
    )


def test_same_input_same_bytes(face: np.ndarray) -> None:
    first = rasterize(face, (512, 512), 256)
    second = rasterize(face.copy(), (512, 512), 256)
    assert first.shape == (256, 256, 3) and first.dtype == np.uint8
    assert first.tobytes() == second.tobytes()


def test_every_part_has_its_own_colour_where_its_landmarks_are(face: np.ndarray) -> None:
    image = rasterize(face, (512, 512), 256)
    colours = [colour for _, _, colour in PARTS]
    assert len(set(colours)) == len(PARTS) == 12
    # LINE_8 draws without blending: every lit pixel is exactly one part colour.
    lit = image[image.any(axis=2)]
    palette = np.array(colours, dtype=np.uint8)
    assert (lit[:, None, :] == palette[None]).all(axis=2).any(axis=1).all()
    pad = line_thickness(256) + 1
    for name, lines, colour in PARTS:
        ys, xs = np.nonzero((image == np.array(colour, np.uint8)).all(axis=2))
        assert xs.size > 0, f"{name} not drawn"
        pts = face[[i for line in lines for i in line], :2] / 2  # 512 -> 256
        lo, hi = pts.min(axis=0) - pad, pts.max(axis=0) + pad
        assert lo[0] <= xs.min() and xs.max() <= hi[0], name
        assert lo[1] <= ys.min() and ys.max() <= hi[1], name


def test_different_landmarks_give_a_different_image(face: np.ndarray) -> None:
    base = rasterize(face, (512, 512), 256)
    opened = face.copy()
    opened[list(mesh.LOWER_INNER_LIP[1:-1]), 1] += 10
    assert rasterize(opened, (512, 512), 256).tobytes() != base.tobytes()
    nudged = face.copy()
    nudged[mesh.NOSE_TIP, 0] += 3
    assert rasterize(nudged, (512, 512), 256).tobytes() != base.tobytes()


def test_size_and_resolution_scale_consistently(face: np.ndarray) -> None:
    # Halving the points and the size is exact in floating point: identical bytes.
    half = (face / 2).astype(np.float32)
    assert rasterize(face, (512, 512), 128).tobytes() == rasterize(half, (256, 256), 128).tobytes()
    # The same face at two resolutions: each part lands at the same relative place.
    small, large = rasterize(face, (512, 512), 256), rasterize(face, (512, 512), 512)
    for name, _, colour in PARTS:
        c_small = np.argwhere((small == np.array(colour, np.uint8)).all(axis=2)).mean(axis=0)
        c_large = np.argwhere((large == np.array(colour, np.uint8)).all(axis=2)).mean(axis=0)
        assert np.abs((c_large + 0.5) / 2 - (c_small + 0.5)).max() < 1.5, name


def test_non_square_size_maps_each_axis() -> None:
    points = np.zeros((478, 3), np.float32)
    points[:, 0], points[:, 1] = 320.0, 120.0  # the centre of a 640 x 240 image
    image = rasterize(points, (640, 240), 64)
    ys, xs = np.nonzero(image.any(axis=2))
    assert xs.size > 0 and np.all(np.abs(xs - 31.5) <= 1) and np.all(np.abs(ys - 31.5) <= 1)


def test_line_width_rule() -> None:
    assert [line_thickness(r) for r in (32, 128, 191, 192, 256, 512, 2048)] == \
        [1, 1, 1, 2, 2, 4, 16]


def test_far_off_points_do_not_crash(face: np.ndarray) -> None:
    far = (face * 1e6).astype(np.float32)
    image = rasterize(far, (512, 512), 64)
    assert image.shape == (64, 64, 3)
    assert not rasterize(far + 1e9, (512, 512), 64).any()


@pytest.mark.parametrize(
    ("points", "size", "resolution", "error"),
    [
        (np.zeros((468, 3), np.float32), (256, 256), 64, ValueError),
        (np.zeros((478, 3), np.float64), (256, 256), 64, ValueError),
        (np.full((478, 3), np.nan, np.float32), (256, 256), 64, ValueError),
        ([[0.0, 0.0, 0.0]] * 478, (256, 256), 64, TypeError),
        (np.zeros((478, 3), np.float32), (0, 256), 64, ValueError),
        (np.zeros((478, 3), np.float32), (256.0, 256.0), 64, ValueError),
        (np.zeros((478, 3), np.float32), (256,), 64, ValueError),
        (np.zeros((478, 3), np.float32), (256, 256), MIN_RESOLUTION - 1, ValueError),
        (np.zeros((478, 3), np.float32), (256, 256), MAX_RESOLUTION + 1, ValueError),
        (np.zeros((478, 3), np.float32), (256, 256), 64.0, ValueError),
        (np.zeros((478, 3), np.float32), (256, 256), True, ValueError),
    ],
)
def test_invalid_input_is_refused(points: object, size: object, resolution: object,
                                  error: type[Exception]) -> None:
    with pytest.raises(error):
        rasterize(points, size, resolution)  # type: ignore[arg-type]

