"""Sources: video files written here, the synthetic script, and a webcam that vanishes.

There is no webcam on test machines, so WebcamSource runs against a recording fake of
cv2.VideoCapture (the one fake in these tests: the hardware is missing), and a fake
clock so the reconnect backoff of many seconds takes no real time.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from recording_cam import astronaut

from avatar_cam.capture import (
    BACKOFF_MAX_S,
    Pacer,
    SyntheticSource,
    VideoFileSource,
    WebcamSource,
    list_cameras,
    sane_fps,
)
from avatar_cam.errors import CameraError, VideoError
from avatar_cam.motion import animate, script
from avatar_cam.pipeline import SourceEndedError
from avatar_cam.types import Frame

W, H, N_FRAMES = 64, 48, 12


class FakeClock:
    """Monotonic seconds that only advance when someone sleeps (or ``advance`` is called)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0.0, seconds
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


def write_video(path: Path, n: int = N_FRAMES, fps: float = 30.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (W, H))
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((H, W, 3), 10 + i * 20, np.uint8))
    writer.release()
    return path


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.mp4")


def drain(source: Any, limit: int = 1000) -> list[Frame]:
    frames = []
    with pytest.raises(SourceEndedError):
        for _ in range(limit):
            frames.append(source.read())
    return frames


# --- video files ---------------------------------------------------------------------

def test_video_file_reads_every_frame_then_ends(video: Path) -> None:
    with VideoFileSource(video, realtime=False) as src:
        assert src.size == (W, H) and src.fps == pytest.approx(30.0)
        frames = drain(src)
    assert [f.seq for f in frames] == list(range(N_FRAMES))
    assert all(f.image.shape == (H, W, 3) and f.image.dtype == np.uint8 for f in frames)
    assert all(not f.placeholder and f.truth is None for f in frames)
    t = [f.t_capture_ns for f in frames]
    assert t == sorted(t)
    # The frames come in file order (each was written brighter than the last).
    means = [float(f.image.mean()) for f in frames]
    assert np.all(np.diff(means) > 5)


def test_a_paced_file_frame_read_late_is_stamped_at_its_due_time(video: Path) -> None:
    """A slow decode or a busy core is latency, not a later picture: frame 1 of a 30 fps
    file read 0.2 s after frame 0 (due 1/30 s after it) carries the instant it was due,
    which is where a microphone file paced from frame 0 has the same moment."""
    clock = FakeClock()
    with VideoFileSource(video, clock=clock, sleep=clock.sleep) as src:
        src.read()
        clock.advance(0.2)
        before = time.monotonic_ns()
        late = src.read()
        after = time.monotonic_ns()
        next_one = src.read()  # frame 2 is overdue too: it goes at once, stamped its due
        after_next = time.monotonic_ns()
    due_ago_ns = round((0.2 - 1 / 30) * 1e9)
    assert before - due_ago_ns <= late.t_capture_ns <= after - due_ago_ns
    period_ns = round(1e9 / 30)
    spacing = next_one.t_capture_ns - late.t_capture_ns
    assert period_ns - 1 <= spacing <= period_ns + (after_next - before)


def test_video_file_loops(video: Path) -> None:
    with VideoFileSource(video, realtime=False, loop=True) as src:
        frames = [src.read() for _ in range(2 * N_FRAMES + 5)]
        assert src.loops == 2
    means = np.array([f.image.mean() for f in frames])
    np.testing.assert_allclose(means[N_FRAMES:2 * N_FRAMES], means[:N_FRAMES], atol=3)
    assert [f.seq for f in frames] == list(range(len(frames)))


def test_closed_source_ends(video: Path) -> None:
    src = VideoFileSource(video, realtime=False)
    src.close()
    with pytest.raises(SourceEndedError):
        src.read()


@pytest.mark.parametrize("reported, expected", [(0.0, 30.0), (float("nan"), 30.0),
                                                (-5.0, 30.0), (float("inf"), 30.0),
                                                (25.0, 25.0), (59.94, 59.94)])
def test_fps_fallback(reported: float, expected: float) -> None:
    assert sane_fps(reported) == pytest.approx(expected)


def test_video_file_fps_comes_from_the_file(tmp_path: Path) -> None:
    with VideoFileSource(write_video(tmp_path / "c.mp4", n=3, fps=15.0)) as src:
        assert src.fps == pytest.approx(15.0)


def test_missing_file_is_a_video_error(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="nope.mp4.*not found") as err:
        VideoFileSource(tmp_path / "nope.mp4")
    assert err.value.fix  # says what to do
    with pytest.raises(VideoError, match="not found"):
        VideoFileSource(tmp_path)  # a folder is not a video either


@pytest.mark.parametrize("content", [b"just some notes, not a video\n" * 20, b""])
def test_not_a_video_is_a_video_error(tmp_path: Path, content: bytes) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_bytes(content)
    with pytest.raises(VideoError, match="notes.mp4") as err:
        VideoFileSource(fake)
    assert "mp4" in err.value.fix


def test_realtime_paces_reads_to_the_file_rate(video: Path) -> None:
    clock = FakeClock()
    with VideoFileSource(video, realtime=True, clock=clock, sleep=clock.sleep) as src:
        start = clock.now
        for _ in range(5):
            src.read()
    assert clock.now - start == pytest.approx(4 / 30.0)
    fast = FakeClock()
    with VideoFileSource(video, realtime=False, clock=fast, sleep=fast.sleep) as src:
        for _ in range(5):
            src.read()
    assert fast.sleeps == []


def test_pacer_schedules_from_the_start_and_never_sleeps_when_late() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock, clock.sleep)
    t0 = clock.now
    pacer.wait()  # frame 0: at once
    assert clock.sleeps == []
    clock.advance(0.03)  # the consumer took 30 ms
    pacer.wait()  # frame 1 is due at t0 + 0.1
    assert clock.now == pytest.approx(t0 + 0.1)
    clock.advance(0.15)  # late for frame 2 (due at t0 + 0.2)
    pacer.wait()
    assert len(clock.sleeps) == 1  # no sleep for a late reader
    pacer.wait()  # frame 3 due at t0 + 0.3: back on the original schedule
    assert clock.now == pytest.approx(t0 + 0.3)


def test_pacer_reanchors_after_a_long_stall() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock, clock.sleep)
    pacer.wait()
    clock.advance(5.0)  # e.g. the machine was suspended
    pacer.wait()
    pacer.wait()  # paced again from the stall, not a burst of 50 catch-up frames
    assert clock.sleeps == [pytest.approx(0.1)]


# --- the synthetic source ---------------------------------------------------------------

@pytest.fixture(scope="module")
def neutral() -> np.ndarray:
    return astronaut()[1]


def test_synthetic_source_plays_the_script(neutral: np.ndarray) -> None:
    with SyntheticSource(neutral, (512, 512), fps=25.0, realtime=False, frames=6,
                         start_s=1.0) as src:
        assert src.size == (512, 512) and src.fps == 25.0
        frames = drain(src)
    assert [f.seq for f in frames] == list(range(6))
    for n, f in enumerate(frames):
        assert f.truth is not None and f.truth.shape == (478, 3) and f.truth.dtype == np.float32
        np.testing.assert_array_equal(f.truth, animate(neutral, script(1.0 + n / 25.0)))
        assert f.image.shape == (512, 512, 3) and f.image.dtype == np.uint8
        # The default drawing puts a dot on each landmark.
        x, y = np.rint(f.truth[1, :2]).astype(int)
        assert f.image[y, x].max() > 60 and f.image[5, 5].max() < 30


def test_synthetic_source_is_deterministic(neutral: np.ndarray) -> None:
    runs = []
    for _ in range(2):
        with SyntheticSource(neutral, (320, 240), realtime=False, frames=4) as src:
            runs.append(drain(src))
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.truth, b.truth)


def test_synthetic_source_uses_the_renderer_and_checks_it(neutral: np.ndarray) -> None:
    seen: list[np.ndarray] = []

    def render(points: np.ndarray) -> np.ndarray:
        seen.append(points)
        return np.full((120, 160, 3), 77, np.uint8)

    with SyntheticSource(neutral, (160, 120), realtime=False, frames=2, render=render) as src:
        f = src.read()
    assert len(seen) == 1 and (f.image == 77).all()
    np.testing.assert_array_equal(seen[0], f.truth)  # type: ignore[arg-type]

    def bad_render(points: np.ndarray) -> np.ndarray:
        return np.zeros((120, 160), np.uint8)

    with SyntheticSource(neutral, (160, 120), realtime=False, render=bad_render) as src, \
            pytest.raises(ValueError, match=r"\(120, 160, 3\) uint8"):
        src.read()


def test_synthetic_source_endless_and_paced(neutral: np.ndarray) -> None:
    clock = FakeClock()
    with SyntheticSource(neutral, (64, 64), fps=20.0, clock=clock, sleep=clock.sleep) as src:
        start = clock.now
        for _ in range(41):
            src.read()
    assert clock.now - start == pytest.approx(2.0)


def test_synthetic_source_rejects_bad_arguments(neutral: np.ndarray) -> None:
    with pytest.raises(ValueError, match="478"):
        SyntheticSource(neutral[:468], (64, 64))
    with pytest.raises(ValueError, match="fps"):
        SyntheticSource(neutral, (64, 64), fps=0.0)


# --- the webcam ---------------------------------------------------------------------------

class FakeCamera:
    """A camera that can be unplugged: the factory the WebcamSource is given as opener.

    Records every open (device, time) and checks how each capture is used: geometry
    set before reading, no reads after release, exactly one release.
    """

    def __init__(self, clock: FakeClock, present: bool = True, delivers: bool = True,
                 read_raises: bool = False) -> None:
        self.clock = clock
        self.present = present
        self.delivers = delivers  # False: opens but never yields a frame
        self.read_raises = read_raises  # like a backend throwing cv2.error mid-run
        self.opens: list[tuple[int | str, float]] = []
        self.captures: list[FakeCapture] = []
        self.misuse: list[str] = []  # kept even where the source swallows the exception

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.misuse.append(what)
            raise AssertionError(what)

    def __call__(self, device: int | str) -> FakeCapture:
        self.opens.append((device, self.clock.now))
        cap = FakeCapture(self, opened=self.present)
        self.captures.append(cap)
        return cap


class FakeCapture:
    """Records what a cv2.VideoCapture is asked; behaves like one for a UVC camera."""

    def __init__(self, camera: FakeCamera, opened: bool) -> None:
        self.camera = camera
        self.opened = opened
        self.props: dict[int, float] = {}
        self.set_calls: list[tuple[int, float]] = []
        self.reads = 0
        self.releases = 0

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        self.camera.check(self.releases == 0, "isOpened() after release()")
        return self.opened

    def set(self, prop: int, value: float, /) -> bool:
        self.camera.check(self.opened and self.releases == 0, "set() on a closed capture")
        self.set_calls.append((prop, value))
        self.props[prop] = value
        return True

    def get(self, prop: int, /) -> float:
        return self.props.get(prop, 0.0)

    def read(self) -> tuple[bool, Any]:
        self.camera.check(self.releases == 0, "read() after release()")
        self.camera.check(cv2.CAP_PROP_FRAME_WIDTH in self.props, "read() before set(size)")
        self.reads += 1
        if self.camera.read_raises and not self.camera.present:
            raise cv2.error("VIDIOC_DQBUF: No such device")
        if not (self.opened and self.camera.present and self.camera.delivers):
            return False, None
        w = int(self.props[cv2.CAP_PROP_FRAME_WIDTH])
        h = int(self.props[cv2.CAP_PROP_FRAME_HEIGHT])
        return True, np.full((h, w, 3), 128, np.uint8)

    def release(self) -> None:
        self.releases += 1
        self.camera.check(self.releases == 1, "release() called twice")


def test_webcam_opens_with_the_requested_geometry() -> None:
    clock = FakeClock()
    cam = FakeCamera(clock)
    with WebcamSource(2, 640, 480, 24.0, opener=cam, clock=clock, sleep=clock.sleep) as src:
        f = src.read()
        assert src.size == (640, 480) and src.fps == 24.0
    assert cam.opens == [(2, 100.0)]
    props = cam.captures[0].props
    assert props[cv2.CAP_PROP_FRAME_WIDTH] == 640 and props[cv2.CAP_PROP_FRAME_HEIGHT] == 480
    assert props[cv2.CAP_PROP_FPS] == 24.0
    assert f.image.shape == (480, 640, 3) and f.seq == 0 and not f.placeholder
    assert cam.captures[0].releases == 1  # close() released it
    assert cam.misuse == []


def test_missing_camera_at_start_is_a_camera_error() -> None:
    clock = FakeClock()
    cam = FakeCamera(clock, present=False)
    with pytest.raises(CameraError, match="camera 0 could not be opened") as err:
        WebcamSource(0, opener=cam, clock=clock, sleep=clock.sleep)
    assert "avatar-cam devices" in err.value.fix
    assert cam.captures[0].releases == 1  # the failed handle is not leaked

    def exploding(device: int | str) -> FakeCapture:
        raise OSError("device node vanished")

    with pytest.raises(CameraError, match="/dev/video7"):
        WebcamSource("/dev/video7", opener=exploding)


@pytest.mark.parametrize("read_raises", [False, True])
def test_webcam_survives_unplugging_with_backoff_and_recovers(read_raises: bool) -> None:
    clock = FakeClock()
    cam = FakeCamera(clock, read_raises=read_raises)
    fps = 30.0
    src = WebcamSource(0, 320, 240, fps, opener=cam, clock=clock, sleep=clock.sleep)
    frames = [src.read() for _ in range(3)]
    assert not any(f.placeholder for f in frames)

    cam.present = False  # unplugged
    lost_at = clock.now
    while clock.now - lost_at < 40.0:
        f = src.read()
        assert f.placeholder and f.image.shape == (240, 320, 3) and f.image.dtype == np.uint8
        assert f.image.mean() < 40  # a dark stand-in, with some text on it
        frames.append(f)
    assert cam.captures[0].releases == 1
    assert src.lost and src.reconnects == 0
    # Placeholders come at the camera's rate while it is gone.
    placeholder_t = len([f for f in frames if f.placeholder]) / 40.0
    assert placeholder_t == pytest.approx(fps, rel=0.05)
    # Retries after 0.5 s, then doubling waits capped at 8 s; one open per attempt.
    retry_times = [t - lost_at for _, t in cam.opens[1:]]
    gaps = np.diff([0.0, *retry_times])
    expected = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    np.testing.assert_allclose(gaps[:len(expected)], expected[:len(gaps)], atol=1.5 / fps)
    assert len(retry_times) == src.reconnect_attempts == 8
    assert max(gaps) <= BACKOFF_MAX_S + 1.0 / fps
    assert all(c.releases == 1 for c in cam.captures)  # every failed handle released

    cam.present = True  # plugged back in: real frames at the next attempt
    attempts = src.reconnect_attempts
    back = [src.read() for _ in range(int(9 * fps))]
    first_real = next(i for i, f in enumerate(back) if not f.placeholder)
    assert all(not f.placeholder for f in back[first_real:])
    assert src.reconnects == 1 and src.reconnect_attempts == attempts + 1
    assert not src.lost
    seqs = [f.seq for f in frames + back]
    assert seqs == list(range(len(seqs)))  # numbering carries on through the gap

    cam.present = False  # a second loss starts the backoff from 0.5 s again
    opens = len(cam.opens)
    lost_at = clock.now
    while len(cam.opens) == opens:
        assert src.read().placeholder
    assert cam.opens[-1][1] - lost_at == pytest.approx(0.5, abs=1.5 / fps)
    src.close()
    assert cam.captures[-1].releases == 1
    assert cam.misuse == []


def test_webcam_that_opens_but_delivers_nothing_keeps_backing_off() -> None:
    clock = FakeClock()
    cam = FakeCamera(clock, delivers=False)
    with WebcamSource(0, 160, 120, 10.0, opener=cam, clock=clock, sleep=clock.sleep) as src:
        frames = [src.read() for _ in range(300)]  # 30 s at 10 fps
    assert all(f.placeholder for f in frames)
    gaps = np.diff([t for _, t in cam.opens])
    # Opening succeeds each time, yet the waits still grow instead of hammering it.
    assert gaps[-1] >= 4.0 and np.all(np.diff(gaps) >= -1e-9)
    assert src.reconnects == 0
    assert cam.misuse == [] and all(c.releases == 1 for c in cam.captures)


def _video_node(dev: Path, sysfs: Path, n: int, name: str, index: int = 0) -> None:
    """A /dev/videoN stand-in and its sysfs entry (name, node index)."""
    (dev / f"video{n}").touch()
    (sysfs / f"video{n}").mkdir(parents=True)
    (sysfs / f"video{n}" / "name").write_text(name + "\n")
    (sysfs / f"video{n}" / "index").write_text(f"{index}\n")


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="elsewhere list_cameras probes indices, not /dev")


@linux_only
def test_list_cameras_with_none_is_empty_and_said(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "vfio").touch()  # not a video node
    assert list_cameras(dev=tmp_path / "dev", sysfs=tmp_path / "sys") == []
    # `avatar-cam devices` says so in words rather than printing an empty section.
    from avatar_cam import capture, cli

    monkeypatch.setattr(capture, "list_cameras", lambda: [])
    assert cli.main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "cameras:\n  none found (a webcam shows up as /dev/video* on Linux)\n" in out


@linux_only
def test_list_cameras_describes_each(tmp_path: Path) -> None:
    dev, sysfs = tmp_path / "dev", tmp_path / "sys"
    dev.mkdir()
    _video_node(dev, sysfs, 0, "Integrated Camera: Integrated C")
    _video_node(dev, sysfs, 1, "Integrated Camera: Integrated C", index=1)  # metadata node
    _video_node(dev, sysfs, 2, "Dummy video device (0x0000)")  # v4l2loopback
    _video_node(dev, sysfs, 10, "USB Camera")
    cams = list_cameras(dev=dev, sysfs=sysfs)
    assert cams == [
        {"device": 0, "path": str(dev / "video0"), "name": "Integrated Camera: Integrated C",
         "loopback": False},
        {"device": 2, "path": str(dev / "video2"), "name": "Dummy video device (0x0000)",
         "loopback": True},
        {"device": 10, "path": str(dev / "video10"), "name": "USB Camera", "loopback": False},
    ]


def test_list_cameras_on_this_machine_does_not_hang() -> None:
    t0 = time.monotonic()
    cams = list_cameras()
    assert time.monotonic() - t0 < 5.0
    for c in cams:
        assert {"device", "path", "name", "loopback"} == set(c)
        assert c["path"].startswith("/dev/video")
