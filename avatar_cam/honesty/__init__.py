"""Honest avatars: a visible label, an invisible watermark, signed personal models and
a verifier, so that every frame we make says it is synthetic and a model is its owner's.

label.Label and watermark.Watermarker run per output frame (the compositor calls them);
signing and verify are used by enrollment, loading and the `avatar-cam verify` command.
"""

from .detection import Detection, Detector, detect
from .label import Label
from .watermark import ALGORITHM_VERSION, Watermarker

__all__ = ["ALGORITHM_VERSION", "Detection", "Detector", "Label", "Watermarker", "detect"]
