"""The landmark-only receiver draws the peer with the peer's own shared generator.

Real parts only: the demo identity's trained generator (calibration/demo) on the backend
``live.open_renderer`` picks on this machine (ONNX Runtime on the CPU here), its real
conditioning, the real compositor and watermark; damaged and missing generators are real
files in copies of that folder.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from avatar_cam import live
from avatar_cam.capture import SyntheticSource
from avatar_cam.person import Person, load_person
from avatar_cam.render.warp import WarpRenderer
from avatar_cam.types import Landmarks
from avatar_cam.webrtc.remote_look import RemoteLook, person_look

OUT = (640, 480)
RESOLUTION = 192  # the warp renderer's: small keeps the fallbacks cheap
# The motion script's frames at 30 fps: rest, a head turn, speech, a nod, a smile.
DRIVEN = (0, 17, 46, 95, 160)
FOLDER = ("person.json", "photo.png", "crop.png", "neutral.npy", "codec_basis.bin",
          "meta.json", "signature.json")


@pytest.fixture(scope="module")
def demo() -> Person:
    return load_person("demo")


def driven(person: Person) -> list[Landmarks]:
    """The person's neutral face and the demo driver's frames of it, in crop pixels, as
    the receiver's adapter hands them to the renderer."""
    size = (person.crop_size, person.crop_size)
    source = SyntheticSource(person.neutral, size, realtime=False)
    points = [person.neutral, *(source.landmarks_at(n) for n in DRIVEN)]
    return [Landmarks(n, 0, p.astype(np.float32), size) for n, p in enumerate(points)]


def copied(person: Person, dest: Path, generator: bytes | None) -> Person:
    """The person's folder copied under ``dest`` with ``generator`` as its weights file
    (None: no generator). Unverified: the signature covers the original weights, and
    what is tested is the renderer's own handling of a file that got past it."""
    folder = dest / "calibration" / person.name
    folder.mkdir(parents=True)
    for name in FOLDER:
        shutil.copy2(person.folder / name, folder / name)
    if generator is not None:
        (folder / "generator.safetensors").write_bytes(generator)
    return load_person(person.name, dest / "calibration", verify=False)


def check_warp(look: RemoteLook, person: Person) -> None:
    assert look.kind == "warp" and look.backend == "warp"
    assert isinstance(look.renderer, WarpRenderer)
    face = look.renderer.render(driven(person)[0])
    assert face.shape == (RESOLUTION, RESOLUTION, 3) and face.std() > 10  # a face, drawn
    frame = look.compositor.compose(face, 0, 0)
    assert frame.image.shape == (OUT[1], OUT[0], 3)


def test_forced_neural_draws_what_the_senders_renderer_draws(demo: Person) -> None:
    sender = live.open_renderer(demo, live.LiveOptions(out_size=OUT))
    look = person_look(demo, OUT, RESOLUTION, prefer="neural")
    try:
        assert look.kind == "neural", look.reason
        assert look.backend == sender.backend.describe()
        assert "asked for" in look.reason
        for lm in driven(demo):
            got, want = look.renderer.render(lm), sender.render(lm)
            # Pixel-identical: the same engine from the same cache on the same runtime,
            # the same conditioning code and the same rounding; ONNX Runtime on the CPU
            # is deterministic for one graph and thread count, so nothing may differ.
            assert got.shape == want.shape == (sender.resolution, sender.resolution, 3)
            assert np.array_equal(got, want), f"frame {lm.seq}: max diff " \
                f"{np.abs(got.astype(int) - want.astype(int)).max()}"
        # The driven frames are really different faces (the comparison is not of one).
        faces = [look.renderer.render(lm) for lm in driven(demo)[:3]]
        assert np.abs(faces[0].astype(int) - faces[2].astype(int)).mean() > 1.0
        # Framed and composited like the local avatar, with the owner's badge.
        lm, placement = look.framer.frame(driven(demo)[2])
        frame = look.compositor.compose(look.renderer.render(lm), 0, 0, True, placement)
        assert frame.image.shape == (OUT[1], OUT[0], 3)
    finally:
        sender.close()
        look.renderer.close()


def test_no_generator_is_warp(demo: Person, tmp_path: Path,
                              caplog: pytest.LogCaptureFixture) -> None:
    person = copied(demo, tmp_path, None)
    with caplog.at_level(logging.INFO, "avatar_cam.webrtc.remote_look"):
        look = person_look(person, OUT, RESOLUTION, prefer="neural")
    check_warp(look, person)
    assert look.reason == "the peer shared no generator"
    lines = [r.getMessage() for r in caplog.records if r.name.endswith("remote_look")]
    assert lines == ["the peer is drawn by the warp renderer (warp): the peer shared no "
                     "generator"]


def test_truncated_generator_is_warp_with_the_reason(demo: Person, tmp_path: Path) -> None:
    weights = (demo.folder / "generator.safetensors").read_bytes()
    person = copied(demo, tmp_path, weights[: len(weights) // 2])
    look = person_look(person, OUT, RESOLUTION)
    check_warp(look, person)
    assert look.reason.startswith("their generator could not be opened (")
    assert "generator.safetensors are corrupt" in look.reason
    assert look.neural_ms is None


def test_garbage_generator_is_warp_with_the_reason(demo: Person, tmp_path: Path) -> None:
    person = copied(demo, tmp_path, b"\xff" * 64)
    look = person_look(person, OUT, RESOLUTION, prefer="neural")
    check_warp(look, person)
    assert "could not be opened" in look.reason and "corrupt" in look.reason


def test_a_generator_too_slow_for_the_rate_is_warp_naming_the_time(demo: Person) -> None:
    look = person_look(demo, OUT, RESOLUTION, fps=1000.0)  # a 1 ms frame: nothing keeps up
    check_warp(look, demo)
    assert look.neural_ms is not None and look.neural_ms > 1.0
    assert f"neural p50 {look.neural_ms:.1f} ms per frame" in look.reason
    assert "1.0 ms frame period at 1000 fps" in look.reason
    assert look.reason.endswith("too slow, warp")


def test_warp_asked_for_and_a_bad_preference(demo: Person) -> None:
    look = person_look(demo, OUT, RESOLUTION, prefer="warp")
    check_warp(look, demo)
    assert look.reason == "the warp renderer was asked for"
    with pytest.raises(ValueError, match="prefer must be one of auto, neural, warp"):
        person_look(demo, OUT, RESOLUTION, prefer="fast")
