"""avatar-cam: a real-time personalized video-call avatar.

The embedding API, what `avatar-cam run` and `avatar-cam demo` are built on:

- ``open_person(name_or_folder)``: an enrolled person (``"demo"`` ships with avatar-cam).
- ``Avatar(person, options)``: the avatar's stages, built once; ``render(image)`` turns
  one camera frame (BGR, tracked with MediaPipe) into one output frame,
  ``render_landmarks(points, size)`` does it from 478 landmarks you tracked yourself.
- ``open_source(spec)`` and ``stream(person, source, sink, options)``: a whole run, a
  video file, a webcam or the demo driver into a file, the virtual camera, a window or
  nowhere, through the live pipeline (its threads, pacing and statistics).
- ``Options``: output size, frame rate, renderer, background, framing, label placement
  (``live.LiveOptions``; its defaults are the product's).
- ``AvatarCamError``: what a user can get wrong (unknown person, unreadable video, no
  camera), one line naming the problem and the fix.

Every frame the API makes says it is synthetic, as `avatar-cam run`'s do: the visible
"AI avatar" label and the invisible watermark (this model's fingerprint) are always on.

``import avatar_cam`` is light: torch, MediaPipe and OpenCV load when first needed.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import AvatarCamError

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from .live import FrameSink, FrameSource, LiveRun, Stages, Voice
    from .live import LiveOptions as Options
    from .person import Person
    from .tracking import MediaPipeTracker
    from .types import AvatarFrame, Landmarks

__version__ = "0.1.0"
__all__ = ["Avatar", "AvatarCamError", "Options", "__version__", "open_person",
           "open_source", "stream"]


def __getattr__(name: str) -> Any:
    if name == "Options":  # live imports OpenCV: only when asked for
        from .live import LiveOptions

        return LiveOptions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_person(person: str | os.PathLike[str]) -> Person:
    """An enrolled person, by name (looked up in $AVATAR_CAM_HOME/calibration, else
    ./calibration, else the checkout's calibration/, where ``"demo"`` ships) or by the
    folder `avatar-cam calibrate` made. Its signature is checked: a tampered or unsigned
    model is refused. Raises ``AvatarCamError`` (unknown, damaged or tampered person)."""
    from .errors import PersonError
    from .person import load_person

    if isinstance(person, os.PathLike) or (isinstance(person, str) and (
            os.sep in person or (os.altsep is not None and os.altsep in person))):
        folder = Path(person)
        if not (folder / "person.json").is_file():
            raise PersonError(f"{folder} is not an enrolled person's folder (no "
                              "person.json in it)", "give a folder that `avatar-cam "
                              "calibrate` made, or a person's name")
        return load_person(folder.name, folder.parent)
    if not isinstance(person, str):
        raise TypeError(f"person must be a name or a folder, got {type(person).__name__}")
    return load_person(person)


def _person(person: Person | str | os.PathLike[str]) -> Person:
    from .person import Person

    return person if isinstance(person, Person) else open_person(person)


def _options(options: Options | None) -> Options:
    from .live import LiveOptions

    opts = LiveOptions() if options is None else options
    if not isinstance(opts, LiveOptions):
        raise TypeError(f"options must be avatar_cam.Options, got {type(opts).__name__}")
    if not opts.label:
        raise ValueError("the API never makes a frame without the visible 'AI avatar' "
                         "label: leave Options.label at True")
    return opts


def open_source(spec: str | os.PathLike[str], *, person: Person | None = None,
                fps: float = 30.0, realtime: bool = True, loop: bool = False,
                size: tuple[int, int] = (1280, 720)) -> FrameSource:
    """A source of camera frames for ``stream``: ``"demo"`` (the motion script acted by
    ``person``'s own face, endless: give ``Options.frames``), ``"camera:0"`` or
    ``"camera:/dev/video0"`` (a webcam at ``size`` and ``fps``), or a video file's path
    (paced to its own frame rate unless ``realtime=False``; ``loop`` replays it)."""
    from . import live

    if isinstance(spec, str) and spec == "demo":
        if person is None:
            raise ValueError("the demo source acts a person's face: give person=")
        return live.demo_source(person, fps, realtime=realtime)
    if isinstance(spec, str) and spec.startswith("camera:"):
        device = spec.partition(":")[2]
        if not device:
            raise ValueError("give the camera as camera:INDEX or camera:DEVICE_PATH")
        return live.open_source(device, None, fps, loop, realtime, size)
    if not isinstance(spec, str | os.PathLike):
        raise TypeError(f"source must be 'demo', 'camera:...' or a video path, "
                        f"got {type(spec).__name__}")
    return live.open_source(None, Path(spec), fps, loop, realtime, size)


def stream(person: Person | str | os.PathLike[str], source: str | os.PathLike[str]
           | FrameSource = "demo", sink: str | FrameSink = "null",
           options: Options | None = None, *,
           on_frame: Callable[[AvatarFrame], None] | None = None,
           voice: Voice | None = None) -> LiveRun:
    """A run of the live pipeline, as `avatar-cam run` does it: ``source`` (an
    ``open_source`` spec or a source) through the avatar into ``sink``
    (``"file:PATH.mp4"``, ``"virtualcam"``, ``"window"``, ``"null"``, or an object with
    ``send(frame)`` and ``close()``). Call ``.run()`` on it: it returns the run's
    ``Stats`` once the source ends, ``options.frames`` frames were sent, ``.stop()`` was
    called or Ctrl-C was pressed, and closes everything, the source included.
    ``on_frame`` is called with each frame sent (on the pipeline's sending thread);
    ``voice``: sound held back to follow the picture (``audio.relay.VoiceRelay``)."""
    from . import live

    who = _person(person)
    opts = _options(options)
    if isinstance(source, str | os.PathLike):
        source = open_source(source, person=who, fps=opts.fps)
    return live.LiveRun(who, source, sink, opts, on_frame=on_frame, voice=voice)


class Avatar:
    """An enrolled person's avatar, frame by frame, with the stages the live pipeline
    runs (``live.build_stages``): the renderer (the person's generator, else the warp
    renderer), the adapter onto their face, the framer and the compositor with the label
    and the watermark. Successive calls are one video: smoothing, framing and the
    hold-then-ease when the face is lost follow from frame to frame. One thread at a
    time; ``close()`` (or ``with``) frees the renderer and MediaPipe."""

    def __init__(self, person: Person | str | os.PathLike[str],
                 options: Options | None = None) -> None:
        from . import live

        self.person = _person(person)
        self.options = _options(options)
        # The tracker starts with the first camera frame: driving from landmarks alone
        # never loads MediaPipe.
        self._stages: Stages | None = live.build_stages(
            self.person, dataclasses.replace(self.options, track=False))
        self._tracker: MediaPipeTracker | None = None
        self._seq = 0

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames it makes."""
        return self.options.out_size

    def render(self, image: np.ndarray, t_ns: int | None = None) -> AvatarFrame:
        """The output frame for one camera frame, ``image``: (H, W, 3) uint8 BGR, its face
        tracked with MediaPipe. ``t_ns``: when it was captured (``time.monotonic_ns()``,
        the default: now). With no face found, the avatar holds, then eases to rest
        (``face_found`` is then False)."""
        from . import live
        from .tracking import check_image
        from .types import Frame

        stages = self._open()
        if self._tracker is None:
            self._tracker = live.live_tracker()
        t = time.monotonic_ns() if t_ns is None else t_ns
        lm = self._tracker.track(Frame(self._seq, t, check_image(image)))
        return self._drive(stages, lm, t)

    def render_landmarks(self, points: np.ndarray, size: tuple[int, int],
                         t_ns: int | None = None) -> AvatarFrame:
        """The output frame for 478 face landmarks (MediaPipe's face mesh with its iris
        points): ``points`` (478, 3), x and y in pixels of a driver frame of ``size``
        (width, height), z in x's units (MediaPipe's z times the width)."""
        import numpy as np

        from .types import N_LANDMARKS, Landmarks

        stages = self._open()
        pts = np.asarray(points)
        if pts.shape != (N_LANDMARKS, 3) or not np.issubdtype(pts.dtype, np.number):
            raise ValueError(f"landmarks must be ({N_LANDMARKS}, 3) numbers, got "
                             f"{pts.shape} {pts.dtype}")
        if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
            raise ValueError(f"size must be (width, height) in pixels, got {size!r}")
        t = time.monotonic_ns() if t_ns is None else t_ns
        return self._drive(stages, Landmarks(self._seq, t, pts.astype(np.float32),
                                             (size[0], size[1])), t)

    def _open(self) -> Stages:
        if self._stages is None:
            raise RuntimeError("this Avatar is closed")
        return self._stages

    def _drive(self, stages: Stages, lm: Landmarks | None, t: int) -> AvatarFrame:
        """What the pipeline's drive and render threads do to one frame, in order."""
        seq, self._seq = self._seq, self._seq + 1
        driven = stages.adapter.drive(lm, seq, t)
        driven, placement = stages.framer.frame(driven)
        face = stages.renderer.render(driven)
        return stages.compositor.compose(face, seq, t, lm is not None, placement)

    def close(self) -> None:
        from .live import close_stages

        if self._stages is not None:
            close_stages([self._tracker])
            self._stages.close()
            self._stages, self._tracker = None, None

    def __enter__(self) -> Avatar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
