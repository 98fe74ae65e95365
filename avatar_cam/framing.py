"""Framing: where the avatar's head goes in the output, and the head re-centred in its
render square.

Placeholder text replaced below.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    """A move of the whole avatar picture in the output frame: scale ``k`` about the
    head's resting centre in output pixels, then shift by (``dx``, ``dy``) output pixels.
    The identity (k=1, no shift) shows the avatar as its enrollment photo frames it."""

    k: float = 1.0
    dx: float = 0.0
    dy: float = 0.0

    @property
    def identity(self) -> bool:
        return self.k == 1.0 and self.dx == 0.0 and self.dy == 0.0
