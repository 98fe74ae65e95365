"""Sinks: a virtual camera (through a recording pyvirtualcam backend), mp4 files,
windows (none here), the null sink, and the spec parser."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import pyvirtualcam
import recording_cam
from recording_cam import RecordingBackend

from avatar_cam.errors import SinkError
from avatar_cam.sinks import (
    MODPROBE,
    FileSink,
    NullSink,
    VirtualCamSink,
    WindowSink,
    loopback_devices,
    open_sink,
    virtualcam_status,
)
from avatar_cam.types import AvatarFrame

W, H, FPS = 64, 48, 30.0


def frame(seq: int, image: np.ndarray | None = None) -> AvatarFrame:
    if image is None:
        image = np.zeros((H, W, 3), np.uint8)
        image[:, :, 0] = 200  # blue in BGR: a channel swap would show
        image[: H // 2, :, 2] = (seq * 37) % 256
    return AvatarFrame(seq=seq, t_capture_ns=time.monotonic_ns(), image=image)


@pytest.fixture
def recorder() -> type[RecordingBackend]:
    recording_cam.register()
    RecordingBackend.instances.clear()
    return RecordingBackend


def test_virtualcam_sends_bgr_frames_to_the_backend(recorder: type[RecordingBackend]) -> None:
    sent = [frame(i) for i in range(5)]
    with VirtualCamSink(W, H, FPS, backend="recording") as sink:
        assert sink.backend == "recording" and sink.device == "recording0"
        for f in sent:
            sink.send(f)
        assert sink.frames_sent == 5
    (cam,) = recorder.instances
    assert (cam.width, cam.height, cam.fps) == (W, H, FPS)
    assert cam.fourcc == "24BG"  # BGR goes through unconverted
    assert cam.frames_sent == 5 and cam.shape == (H, W, 3)
    assert cam.frame_facts == [((W * H * 3,), "uint8")] * 5
    np.testing.assert_array_equal(cam.last_bgr(), sent[-1].image)
    assert cam.closed and cam.close_calls == 1


def test_virtualcam_passes_the_device_through(recorder: type[RecordingBackend]) -> None:
    with VirtualCamSink(W, H, FPS, backend="recording", device="/dev/video9") as sink:
        assert sink.device == "/dev/video9"
    assert recorder.instances[-1].device() == "/dev/video9"


def test_virtualcam_accepts_non_contiguous_frames(recorder: type[RecordingBackend]) -> None:
    big = np.zeros((H, 2 * W, 3), np.uint8)
    big[:, ::2, 1] = 99
    view = big[:, ::2]  # a strided view, as a crop or a resize might hand over
    with VirtualCamSink(W, H, FPS, backend="recording") as sink:
        sink.send(frame(0, view))
    np.testing.assert_array_equal(recorder.instances[-1].last_bgr(), view)


@pytest.mark.parametrize("image, error, match", [
    (np.zeros((H, W + 1, 3), np.uint8), ValueError, r"\(48, 64, 3\) uint8 BGR.*\(48, 65, 3\)"),
    (np.zeros((H, W), np.uint8), ValueError, r"\(48, 64, 3\).*\(48, 64\)"),
    (np.zeros((H, W, 4), np.uint8), ValueError, r"\(48, 64, 3\).*\(48, 64, 4\)"),
    (np.zeros((H, W, 3), np.float32), TypeError, r"\(48, 64, 3\) uint8.*float32"),
    ([[0, 0, 0]], TypeError, r"numpy array, got list"),
])
def test_wrong_frames_are_refused_at_the_boundary(
        recorder: type[RecordingBackend], image: object, error: type[Exception],
        match: str) -> None:
    with VirtualCamSink(W, H, FPS, backend="recording") as sink:
        sink.send(frame(0))
        with pytest.raises(error, match=match):
            sink.send(AvatarFrame(seq=1, t_capture_ns=0, image=image))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="AvatarFrame"):
            sink.send(frame(2).image)  # type: ignore[arg-type]
        assert sink.frames_sent == 1
    assert recorder.instances[-1].frames_sent == 1  # nothing bad reached the camera


def test_send_after_close_is_refused(recorder: type[RecordingBackend]) -> None:
    sink = VirtualCamSink(W, H, FPS, backend="recording")
    sink.close()
    sink.close()  # idempotent: the backend sees one close
    with pytest.raises(RuntimeError, match="closed"):
        sink.send(frame(0))
    assert recorder.instances[-1].close_calls == 1


def test_unknown_backend_lists_the_known_ones(recorder: type[RecordingBackend]) -> None:
    with pytest.raises(SinkError, match="'obs9'") as err:
        VirtualCamSink(W, H, FPS, backend="obs9")
    assert "recording" in err.value.fix


def test_missing_v4l2loopback_says_how_to_load_it(monkeypatch: pytest.MonkeyPatch) -> None:
    if loopback_devices():
        pytest.skip("this machine has a v4l2loopback device")
    # The default backend list, without the recording backend other tests register.
    monkeypatch.delitem(pyvirtualcam.camera.BACKENDS, recording_cam.BACKEND_NAME,
                        raising=False)
    for make in (lambda: VirtualCamSink(W, H, FPS),
                 lambda: open_sink("virtualcam:v4l2loopback", W, H, FPS)):
        with pytest.raises(SinkError) as err:
            make()
        message = str(err.value)
        assert MODPROBE in message
        assert 'card_label="avatar-cam"' in message and "v4l2loopback-dkms" in message
        assert "\n" not in message  # one line for the CLI


def test_file_sink_writes_a_readable_mp4(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    with FileSink(path, W, H, FPS) as sink:
        for i in range(7):
            sink.send(frame(i))
        assert sink.frames_sent == 7
    cap = cv2.VideoCapture(str(path))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS)
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    assert len(frames) == 7
    assert all(f.shape == (H, W, 3) for f in frames)
    # Mostly blue, as sent (BGR order kept).
    assert frames[0][:, :, 0].mean() > 150 and frames[0][:, :, 1].mean() < 60


def test_file_sink_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="does not exist") as err:
        FileSink(tmp_path / "missing" / "out.mp4", W, H, FPS)
    assert "create the folder" in err.value.fix
    (tmp_path / "taken.mp4").mkdir()
    with pytest.raises(SinkError, match="taken.mp4") as err:
        FileSink(tmp_path / "taken.mp4", W, H, FPS)
    assert "writable" in err.value.fix
    with FileSink(tmp_path / "ok.mp4", W, H, FPS) as sink, \
            pytest.raises(ValueError, match=r"\(48, 64, 3\)"):
        sink.send(frame(0, np.zeros((H * 2, W * 2, 3), np.uint8)))


def test_window_without_a_display_suggests_other_sinks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    for make in (lambda: WindowSink(W, H), lambda: open_sink("window", W, H, FPS)):
        with pytest.raises(SinkError, match="no display") as err:
            make()
        assert "file:out.mp4" in err.value.fix and "virtualcam" in err.value.fix
    # A DISPLAY naming a server that is not running must not reach Qt (it would abort).
    monkeypatch.setenv("DISPLAY", ":9917")
    with pytest.raises(SinkError, match=":9917 is not running"):
        WindowSink(W, H)
    monkeypatch.delenv("DISPLAY")
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    with pytest.raises(SinkError, match="X11"):
        WindowSink(W, H)


def test_null_sink_counts_and_checks() -> None:
    with NullSink() as sink:
        for i in range(3):
            sink.send(frame(i))
        sink.send(frame(3, np.zeros((10, 20, 3), np.uint8)))  # any size
        with pytest.raises(TypeError, match="uint8"):
            sink.send(frame(4, np.zeros((10, 20, 3), np.float64)))
    assert sink.frames_sent == 4


def test_open_sink_parses_specs(tmp_path: Path, recorder: type[RecordingBackend]) -> None:
    with open_sink("null", W, H, FPS) as s:
        assert isinstance(s, NullSink)
    with open_sink(f"file:{tmp_path / 'a.mp4'}", W, H, FPS) as s:
        assert isinstance(s, FileSink) and s.path == tmp_path / "a.mp4"
    with open_sink("virtualcam:recording", W, H, FPS) as s:
        assert isinstance(s, VirtualCamSink) and s.backend == "recording"
        s.send(frame(0))
    assert recorder.instances[-1].frames_sent == 1


@pytest.mark.parametrize("spec", ["bogus", "file:", "null:3", "window:big", "", "virtual"])
def test_open_sink_rejects_unknown_specs(spec: str) -> None:
    with pytest.raises(SinkError, match="unknown sink") as err:
        open_sink(spec, W, H, FPS)
    for valid in ("virtualcam", "window", "file:", "null"):
        assert valid in err.value.fix


def test_virtualcam_status_reports_backends_and_what_is_missing() -> None:
    lines = virtualcam_status()
    assert lines and lines[0].startswith("pyvirtualcam ")
    if not loopback_devices():
        assert any(MODPROBE in line for line in lines)
