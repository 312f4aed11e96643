"""Gaze direction and eye openness from MediaPipe Iris's points and FaceMesh's landmarks: geometry, no network.

Gaze. Each eye is modelled as a ball fixed in the head: its centre lies midway between the eye's corners and
``EYEBALL_RADIUS_CM`` behind the lids (FaceMesh's lid-centre points), in MediaPipe's canonical face; the iris centre
sits ``IRIS_DISTANCE_CM`` from it along the line of sight. In the image, each eyeball centre is the midpoint of the
eye's corners as Iris places them (the same network and crop as the iris, so that their errors largely cancel),
moved back along the head's forward axis; the rigid fit of the landmarks to the canonical face
(``runtime.headpose``) gives that axis and the scale in pixels per canonical centimetre. The offset of each
observed iris centre from its eyeball centre, divided by ``IRIS_DISTANCE_CM`` in pixels, is the sideways part of
that eye's unit gaze vector (weak perspective: the camera looks along its z axis). The iris moves about 7 pixels
for 45 degrees on a face 100 pixels wide, so a pixel of error there is several degrees: give gaze faces of 200
pixels or more where you can.
The two eyes' vectors are averaged into one gaze per face. Its angles are given twice: in the camera's frame
(``gaze_yaw``, ``gaze_pitch``) and in the head's frame (``eye_yaw``, ``eye_pitch``: where the eyes point relative
to the face; unchanged when the whole head turns in the image plane). Signs follow head pose: yaw > 0 towards the
image's right, pitch > 0 up, 0/0 straight into the camera (camera frame) or straight ahead (head frame).

What it is not: there is no per-person calibration (eye sizes, the resting height of the iris between the lids and
the angle between the eye's optical and visual axes differ between people by several degrees), and no model of the
camera's focal length; use the angles to compare conditions and moments, not as a fixation point on a screen.

Openness: the area between the upper and lower lid (Iris's contour points 0-15) divided by the distance between
the eye's corners in the image is the mean lid gap; divided again by the corners' distance in 3-D (FaceMesh, so
that a turned head does not shorten it) it is a ratio, about 0.2-0.3 for an open eye and near 0 for a closed one.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from affectlab.models.facemesh import canonical_face
from affectlab.runtime.headpose import TO_CANONICAL_AXES, head_rotation

__all__ = [
    "EYEBALL_RADIUS_CM",
    "EYE_CORNERS",
    "IRIS_DISTANCE_CM",
    "direction_angles",
    "eye_openness",
    "gaze_angles",
]

#: FaceMesh's corner landmarks of each eye, the eye on the image's left first; each pair from the image's left.
EYE_CORNERS = ((33, 133), (362, 263))
#: FaceMesh's upper- and lower-lid centre points of each eye (same order): the front of the eyeball.
_LID_CENTRES = ((159, 145), (386, 374))
#: An adult eyeball's radius, 12 mm, in the canonical face's centimetres (its eyes are 2.66 cm corner to corner
#: against about 2.8 cm in adults: the mesh is 5 % small, and so is this).
EYEBALL_RADIUS_CM = 1.14
#: Distance of the iris's centre from the eyeball's centre (sqrt(12^2 - 6^2) mm for a 12 mm iris), in the same units.
IRIS_DISTANCE_CM = 0.99
#: Sideways part of a gaze vector at most (about 82 degrees off the camera axis): beyond, the iris is mislocated.
_MAX_SIDEWAYS = 0.99


@cache
def _eyeball_depth() -> float:
    """How far the eyeball centres lie behind the midpoint of the eye's corners, in canonical centimetres."""
    face = canonical_face()
    depths = [
        face[list(corners), 2].mean() - (face[list(lids), 2].mean() - EYEBALL_RADIUS_CM)
        for corners, lids in zip(EYE_CORNERS, _LID_CENTRES)
    ]
    return float(np.mean(depths))


def direction_angles(vector: np.ndarray) -> tuple[float, float]:
    """(yaw, pitch) in degrees of a direction in the canonical axes: yaw about the vertical axis, then pitch."""
    x, y, z = np.asarray(vector, dtype=np.float64) / np.linalg.norm(vector)
    return float(np.degrees(np.arctan2(x, z))), float(np.degrees(np.arcsin(np.clip(y, -1.0, 1.0))))


def gaze_angles(
    iris_centres: np.ndarray, eye_corners: np.ndarray, points: np.ndarray
) -> tuple[float, float, float, float]:
    """(gaze_yaw, gaze_pitch, eye_yaw, eye_pitch) in degrees from both irises' centres (2 x 2 image pixels, the eye
    on the image's left first), both eyes' corners as Iris places them (2 x 2 x 2: its contour points 0 and 8) and
    the face's 468 x 3 FaceMesh landmarks (image pixels), which give the head's rotation and scale."""
    observed = np.asarray(points, dtype=np.float64) * TO_CANONICAL_AXES
    face = canonical_face()
    rotation = head_rotation(points)
    centred = observed - observed.mean(axis=0)
    scale = np.sqrt((centred**2).sum() / ((face - face.mean(axis=0)) ** 2).sum())  # pixels per canonical cm
    # The eyeball centres: behind the corners' midpoint along the head's forward axis (its third column).
    middles = np.asarray(eye_corners, dtype=np.float64).mean(axis=1) * TO_CANONICAL_AXES[:2]
    eyeballs = middles - _eyeball_depth() * scale * rotation[:2, 2]
    irises = np.asarray(iris_centres, dtype=np.float64)[:, :2] * TO_CANONICAL_AXES[:2]
    sideways = ((irises - eyeballs) / (IRIS_DISTANCE_CM * scale)).mean(axis=0)
    length = np.linalg.norm(sideways)
    if length > _MAX_SIDEWAYS:
        sideways *= _MAX_SIDEWAYS / length
    gaze = np.array([*sideways, np.sqrt(1.0 - (sideways**2).sum())])
    return (*direction_angles(gaze), *direction_angles(rotation.T @ gaze))


def eye_openness(contour: np.ndarray, corners_3d: np.ndarray) -> float:
    """Mean lid gap over eye width for one eye: ``contour`` its 71 x 2+ Iris points in image pixels (lower lid 0-8
    corner to corner, upper lid 9-15), ``corners_3d`` its two FaceMesh corner landmarks (2 x 3, image pixels)."""
    lids = np.concatenate([contour[0:9, :2], contour[15:8:-1, :2]]).astype(np.float64)
    x, y = lids[:, 0], lids[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    width = float(np.linalg.norm(contour[8, :2] - contour[0, :2]))
    depth_width = float(np.linalg.norm(np.asarray(corners_3d[1]) - np.asarray(corners_3d[0])))
    if width <= 0 or depth_width <= 0:
        return 0.0
    return area / width / depth_width
