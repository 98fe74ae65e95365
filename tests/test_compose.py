import numpy as np
import pytest

from avatar_cam.compose import Compositor, feather_mask, make_layout


@pytest.fixture
def photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)


C2P = np.array([[0.5, 0.0, 100.0], [0.0, 0.5, 40.0]])  # a 256 crop covering 128 px of the photo


def test_layout_centres_face_and_fills_frame(photo: np.ndarray) -> None:
    layout = make_layout(photo, C2P, 256, (1280, 720), "photo", face_height=0.9)
    assert layout.background.shape == (720, 1280, 3)
    assert layout.side == 648
    assert (layout.x, layout.y) == ((1280 - 648) // 2, (720 - 648) // 2)


def test_photo_background_lines_up_with_the_crop(photo: np.ndarray) -> None:
    """Pasting the photo's own crop back must be invisible: same pixels as the background."""
    import cv2

    layout = make_layout(photo, C2P, 256, (640, 360), "photo")
    crop = cv2.warpAffine(photo, cv2.invertAffineTransform(C2P), (256, 256))
    out = Compositor(layout).compose(crop, 0, 0).image
    x, y, s = layout.x, layout.y, layout.side
    inner = slice(s // 4, 3 * s // 4)
    diff = np.abs(out[y:y + s, x:x + s][inner, inner].astype(int)
                  - layout.background[y:y + s, x:x + s][inner, inner].astype(int))
    # Only resampling differences (random-noise photo, so they are large-ish per pixel).
    assert diff.mean() < 40


def test_face_replaces_background_inside_and_blends_at_edge(photo: np.ndarray) -> None:
    layout = make_layout(photo, C2P, 256, (640, 360), "plain", plain_color=(0, 0, 0))
    face = np.full((256, 256, 3), 200, np.uint8)
    frame = Compositor(layout, feather=0.1).compose(face, 7, 123, face_found=False)
    assert frame.seq == 7 and frame.t_capture_ns == 123 and not frame.face_found
    img = frame.image
    cy, cx = 180, 320
    assert (img[cy, cx] == 200).all()
    assert (img[5, 5] == 0).all()  # background outside the face square
    edge = img[cy, layout.x + 2]
    assert 0 < edge[0] < 200  # feathered
    assert "compose" in frame.timings


def test_backgrounds_differ(photo: np.ndarray) -> None:
    a = make_layout(photo, C2P, 256, background="photo").background
    b = make_layout(photo, C2P, 256, background="blur").background
    c = make_layout(photo, C2P, 256, background="plain").background
    assert a.std() > b.std() > c.std() == 0


def test_bad_inputs(photo: np.ndarray) -> None:
    with pytest.raises(ValueError, match="background"):
        make_layout(photo, C2P, 256, background="video")
    comp = Compositor(make_layout(photo, C2P, 256, (640, 360)))
    with pytest.raises(ValueError, match=r"\(R, R, 3\) uint8"):
        comp.compose(np.zeros((10, 20, 3), np.uint8), 0, 0)
    with pytest.raises(ValueError):
        comp.compose(np.zeros((64, 64, 3), np.float32), 0, 0)


def test_feather_mask_shape_and_range() -> None:
    m = feather_mask(100, 0.1)
    assert m.shape == (100, 100) and m.dtype == np.float32
    assert m[50, 50] == 1.0 and m[0, 50] < 0.1 and m.min() >= 0
