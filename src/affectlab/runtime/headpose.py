"""Head pose from FaceMesh's 3-D landmarks: the rotation of a rigid fit to MediaPipe's canonical face.

The landmarks (x right, y down in pixels, z depth with smaller nearer the camera) are turned into the canonical
mesh's frame (x right, y up, z towards the viewer) by negating y and z, a proper rotation. Kabsch's least-squares
fit (Umeyama without the scale, which does not change the rotation) then gives the rotation R taking the canonical
face to the observed one, and R is split as ``Rz(roll) @ Ry(yaw) @ Rx(-pitch)``: roll is the in-plane turn, applied
last, so rotating an image by an angle adds that angle to roll.

Signs, as a viewer sees the image: yaw > 0 when the face turns towards the image's right (the person's left);
pitch > 0 when it looks up; roll > 0 when the head tilts counter-clockwise. Angles are in degrees, 0 for a face
looking straight into the camera. A weak-perspective fit: near a wide-angle camera's edge the angles are a few
degrees off.
"""

from __future__ import annotations

import numpy as np

from affectlab.models.facemesh import canonical_face

__all__ = ["TO_CANONICAL_AXES", "head_pose", "head_rotation", "rigid_rotation"]


def rigid_rotation(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 3 x 3 rotation (determinant +1) that best maps centred ``source`` points onto centred ``target``."""
    a = source - source.mean(axis=0)
    b = target - target.mean(axis=0)
    u, _, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    return u @ np.diag([1.0, 1.0, d]) @ vt


#: Image pixels (x right, y down, z away from the viewer) to the canonical mesh's axes (y up, z towards the viewer).
TO_CANONICAL_AXES = np.array([1.0, -1.0, -1.0])


def head_rotation(points: np.ndarray) -> np.ndarray:
    """The 3 x 3 rotation taking the canonical face to 468 x 3 FaceMesh landmarks in image pixels, in the
    canonical axes (``TO_CANONICAL_AXES``); gaze (``runtime.gaze``) turns eye directions into the camera's frame
    with it."""
    observed = np.asarray(points, dtype=np.float64) * TO_CANONICAL_AXES
    return rigid_rotation(canonical_face(), observed)


def head_pose(points: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from 468 x 3 FaceMesh landmarks in image pixels."""
    r = head_rotation(points)
    yaw = np.degrees(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))
    pitch = -np.degrees(np.arctan2(r[2, 1], r[2, 2]))
    roll = np.degrees(np.arctan2(r[1, 0], r[0, 0]))
    return float(yaw), float(pitch), float(roll)
