"""Renderers: target landmarks -> a picture of the enrolled face.

warp.py    WarpRenderer: piecewise-affine warp of the enrollment crop (no training).
neural.py  the personalized generator behind a backend.

Nothing is imported here, so that using one renderer never loads the other's dependencies.
"""
