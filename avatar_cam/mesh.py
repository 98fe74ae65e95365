"""Named parts of the MediaPipe 478-point face mesh, as ordered polylines.

Fixed constants (not read from mediapipe at import) because the rasterizer, which a
landmark-only receiver must reproduce bit-exactly, draws them in this order.
"Left"/"right" are the subject's, as in MediaPipe.
"""

from __future__ import annotations

import numpy as np

FACE_OVAL = (10, 109, 67, 103, 54, 21, 162, 127, 234, 93, 132, 58, 172, 136, 150, 149, 176,
             148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323, 454, 356, 389, 251, 284,
             332, 297, 338, 10)
LIPS_OUTER = (0, 37, 39, 40, 185, 61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270,
              269, 267, 0)
# Upper inner lip runs 78 -> 13 -> 308 along 191..312; lower inner lip 78 -> 14 -> 308.
LIPS_INNER = (13, 82, 81, 80, 191, 78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310,
              311, 312, 13)
UPPER_INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
RIGHT_EYE = (7, 33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)
LEFT_EYE = (249, 263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249)
# Upper lids (corner to corner over the top) and lower lids.
RIGHT_UPPER_LID = (33, 246, 161, 160, 159, 158, 157, 173, 133)
RIGHT_LOWER_LID = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_UPPER_LID = (263, 466, 388, 387, 386, 385, 384, 398, 362)
LEFT_LOWER_LID = (263, 249, 390, 373, 374, 380, 381, 382, 362)
RIGHT_BROW = ((46, 53, 52, 65, 55), (70, 63, 105, 66, 107))
LEFT_BROW = ((276, 283, 282, 295, 285), (300, 293, 334, 296, 336))
NOSE_BRIDGE = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2)
NOSE_BOTTOM = (98, 97, 2, 326, 327)
NOSE_WINGS = ((64, 48, 115, 220, 45, 4), (294, 278, 344, 440, 275, 4))
RIGHT_IRIS = (469, 470, 471, 472, 469)  # 468 is the right iris centre
LEFT_IRIS = (474, 475, 476, 477, 474)  # 473 is the left iris centre
RIGHT_IRIS_CENTER = 468
LEFT_IRIS_CENTER = 473

# Single points used to measure a face.
RIGHT_EYE_OUTER, RIGHT_EYE_INNER = 33, 133
LEFT_EYE_OUTER, LEFT_EYE_INNER = 263, 362
MOUTH_RIGHT, MOUTH_LEFT = 61, 291
UPPER_LIP_INNER_MID, LOWER_LIP_INNER_MID = 13, 14
CHIN = 152
FOREHEAD = 10
NOSE_TIP = 1

# The face oval pushed out by this factor about its centre: the ring around the face that
# carries hair and neck (the warp renderer moves it with the head; the head matte covers it).
RING_SCALE = 1.45

# Points that barely move with expression: used to estimate head pose (rigid part).
RIGID = (10, 109, 67, 103, 338, 297, 332, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1,
         33, 133, 263, 362, 127, 356, 234, 454, 93, 323, 98, 327, 64, 294, 2)


def inter_ocular(points: np.ndarray) -> float:
    """Distance between the outer eye corners of (478, >=2) points, in their units."""
    p = np.asarray(points, dtype=np.float64)
    return float(np.linalg.norm(p[RIGHT_EYE_OUTER, :2] - p[LEFT_EYE_OUTER, :2]))


def eye_opening(points: np.ndarray) -> float:
    """Mean over both eyes of the lid gap (mid upper to mid lower lid) over the eye's
    width: about 0.3 for open eyes, under 0.1 for closed ones."""
    p = np.asarray(points, dtype=np.float64)[:, :2]
    gap = np.linalg.norm(p[[159, 386]] - p[[145, 374]], axis=1)
    width = np.linalg.norm(p[[33, 263]] - p[[133, 362]], axis=1)
    return float((gap / np.maximum(width, 1e-6)).mean())
