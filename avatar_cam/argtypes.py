"""argparse value types shared by every subcommand: a bad value is a usage error that
names the accepted range (exit status 2, no traceback)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def size_in(lo: tuple[int, int], hi: tuple[int, int]) -> Callable[[str], tuple[int, int]]:
    """WIDTHxHEIGHT, both even, within [lo, hi]."""

    def parse(text: str) -> tuple[int, int]:
        try:
            w, h = (int(v) for v in text.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
        if not (lo[0] <= w <= hi[0] and lo[1] <= h <= hi[1]) or w % 2 or h % 2:
            raise argparse.ArgumentTypeError(
                f"size {text} out of range (even, {lo[0]}..{hi[0]} x {lo[1]}..{hi[1]})")
        return w, h

    return parse


def int_in(lo: int, hi: int, what: str = "value") -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a whole number, got {text!r}") \
                from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{what} must be in {lo}..{hi}, got {value}")
        return value

    return parse


def float_in(lo: float, hi: float, what: str = "value") -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{what} must be in {lo:g}..{hi:g}, got {value:g}")
        return value

    return parse
