"""Checks that a received frame still says it is synthetic: the visible label and the
invisible watermark, after whatever the sink or the network did to it."""

from __future__ import annotations

import numpy as np

from avatar_cam.honesty.label import Label


def label_visible(image: np.ndarray, label: Label | None = None) -> bool:
    """True when the badge's white text stands out from its dark box at the badge's place."""
    label = label or Label()
    h, w = image.shape[:2]
    probe = np.full((h, w, 3), 128, np.uint8)
    label.apply(probe)
    gray = probe[..., 1]
    text, box = gray > 190, (gray < 100)
    if text.sum() < 5 or box.sum() < 5:
        return False
    seen = image[..., 1].astype(float)
    return bool(seen[text].mean() - seen[box].mean() > 60)
