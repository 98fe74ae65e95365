"""Enrollment keeps one person: a clip that cuts to another face (here the same real
photo with its colours turned, which is what the colour heuristic judges) is sorted into
people by real MediaPipe landmarks, the other person's frames are dropped and counted;
crops never reach past the frame."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar_cam.calibrate.dataset import inside, prepare_clip, read_video
from avatar_cam.calibrate.identity import people, segments
from avatar_cam.errors import VideoError
from avatar_cam.footage import Footage
from avatar_cam.person import load_person
from avatar_cam.tracking import MediaPipeTracker

FIRST = 36  # frames of the first person; the 24 after them show "another" one


def _other(image: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) + 15) % 180
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


@pytest.fixture(scope="module")
def two_people(home: Path, tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    path = tmp_path_factory.mktemp("two") / "astro.mp4"
    Footage(load_person("astro", home / "calibration"), (320, 240)).write(path, 60)
    frames = list(read_video(path)())
    return frames[:FIRST] + [_other(f) for f in frames[FIRST:]]


def _prepare(frames: list[np.ndarray], who: int = 0) -> tuple[np.ndarray, dict]:
    def source() -> Iterator[np.ndarray]:
        return iter(frames)

    with MediaPipeTracker(smoothing=None) as tracker:
        clip = prepare_clip(source, tracker.track, 64, who=who)[0]
    return clip.index, clip.stats


def test_the_person_with_most_frames_is_kept(two_people: list[np.ndarray]) -> None:
    index, stats = _prepare(two_people)
    assert stats["people"] == 2
    assert (index < FIRST).all() and len(index) >= FIRST - 4
    assert stats["other_people"] >= 20 and stats["usable"] == len(index)


def test_the_other_person_can_be_chosen(two_people: list[np.ndarray]) -> None:
    index, stats = _prepare(two_people, who=1)
    assert (index >= FIRST).all() and len(index) >= 20
    with pytest.raises(VideoError, match="2 people"):
        _prepare(two_people, who=2)


def test_one_person_under_drifting_light_stays_one() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(128)
    drift = np.linspace(0, 1, 90)[:, None] * rng.random(128) * 0.6  # slow, large in all
    desc = np.sqrt(np.abs(base + drift + rng.normal(0, 0.01, (90, 128))))
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    assert segments(desc) == [(0, 90)] and (people(desc) == 0).all()


def test_returning_person_is_one_person() -> None:
    a, b = np.zeros(4), np.zeros(4)
    a[0], b[1] = 1.0, 1.0
    desc = np.stack([a] * 10 + [b] * 35 + [a] * 20)
    label = people(desc)
    assert (label[:10] == 1).all() and (label[10:45] == 0).all() and (label[45:] == 1).all()


@pytest.mark.parametrize(("box", "want"), [
    ((-30.0, -50.0, 200.0), (0.0, 0.0, 200.0)),  # off the top left: moved in
    ((250.0, 100.0, 100.0), (220.0, 100.0, 100.0)),  # off the right
    ((-100.0, -100.0, 600.0), (80.0, 0.0, 240.0)),  # larger than the frame: shrunk
    ((10.0, 20.0, 50.0), (10.0, 20.0, 50.0)),  # inside: unchanged
])
def test_crop_boxes_stay_inside_the_frame(box: tuple[float, float, float],
                                          want: tuple[float, float, float]) -> None:
    np.testing.assert_allclose(inside(np.array(box), (320, 240)), want)


def test_calibrate_takes_who() -> None:
    import argparse

    from avatar_cam.calibrate import commands

    parser = argparse.ArgumentParser()
    commands.add_parsers(parser.add_subparsers(dest="command", required=True))
    base = ["calibrate", "x", "--video", "a.mp4", "--consent", "test: a made-up statement"]
    assert parser.parse_args(base).who == 0
    assert parser.parse_args([*base, "--who", "1"]).who == 1
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--who", "-1"])
