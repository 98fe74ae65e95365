"""User-facing errors: each says in one line what went wrong and how to fix it.

The CLI prints ``str(error)`` and exits with ``error.exit_code``; no traceback.
"""

from __future__ import annotations


class AvatarCamError(Exception):
    """Base class. ``problem`` names what went wrong, ``fix`` what to do about it."""

    exit_code = 2

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} -- {fix}" if fix else problem)


class CameraError(AvatarCamError):
    """A webcam that cannot be opened."""


class VideoError(AvatarCamError):
    """A video file that is missing, unreadable or not a video."""


class ImageError(AvatarCamError):
    """An image file that is missing or unreadable."""


class NoFaceError(AvatarCamError):
    """An enrollment photo or clip in which no face is found."""


class PersonError(AvatarCamError):
    """An unknown or damaged enrolled person."""


class SinkError(AvatarCamError):
    """An output (virtual camera, file, window) that cannot be opened."""


class ModelError(AvatarCamError):
    """A model or weights file that is corrupt or built for something else."""
