"""Iris points, eye openness and gaze per face: MediaPipe Iris on two eye crops cut with FaceMesh's landmarks.

Each eye is cropped as MediaPipe does: a square 2.3 times as wide as the distance between the eye's corners
(FaceMesh's points 33/133 and 362/263), centred between them and turned so that they are level, resized to
64 x 64. The network knows only the eye on the image's left (the person's right eye): the other eye's crop is
mirrored, and its points mirrored back. All eyes of an image go through the network in one call. Points come
back in source-image pixels; openness and gaze are the geometry of ``runtime.gaze``. A face whose mesh was rejected
(``Mesh.rejected``) gets an empty ``Eyes`` (``rejected``): no crop without the mesh's eye corners.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from affectlab.models.iris import INPUT_SIZE, load_iris
from affectlab.runtime.gaze import EYE_CORNERS, eye_openness, gaze_angles
from affectlab.runtime.results import Eyes, Mesh

__all__ = ["EYE_CROP_SCALE", "EyeLandmarker"]

#: Side of an eye crop over the distance between the eye's corners (MediaPipe's iris_landmark_landmarks_to_roi).
EYE_CROP_SCALE = 2.3
_MIRROR = np.array([[-1.0, 0.0, INPUT_SIZE - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


class EyeLandmarker:
    """MediaPipe Iris on both eyes of every face of one image whose mesh was kept (see the module's text)."""

    def __init__(self) -> None:
        self.net = load_iris().to(memory_format=torch.channels_last)

    def __call__(self, image: np.ndarray, meshes: Sequence[Mesh]) -> list[Eyes]:
        kept = [m.points for m in meshes if m.points is not None]
        if not kept:
            return [Eyes() for _ in meshes]
        crops, backs = [], []
        for points in kept:
            for side, (a, b) in enumerate(EYE_CORNERS):
                crop, back = eye_crop(image, points[a, :2], points[b, :2], mirror=side == 1)
                crops.append(crop)
                backs.append(back)
        batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255.0)
        with torch.inference_mode():
            contours, irises = self.net(batch.contiguous(memory_format=torch.channels_last))
        contour = [_to_image(c, back) for c, back in zip(contours.numpy().astype(np.float64), backs)]
        iris = [_to_image(i, back) for i, back in zip(irises.numpy().astype(np.float64), backs)]
        found = iter(range(len(kept)))
        return [Eyes() if m.points is None else _eyes(m.points, contour, iris, 2 * next(found)) for m in meshes]


def eye_crop(image: np.ndarray, start: np.ndarray, end: np.ndarray, mirror: bool) -> tuple[np.ndarray, np.ndarray]:
    """The 64 px crop of the eye whose corners are ``start`` and ``end`` (x, y image pixels, ``start`` on the
    image's left), turned so that they are level and mirrored if asked; and the 2 x 3 affine taking crop pixels
    back to image pixels. Pixel centres are integer coordinates on both sides, so mirroring an image mirrors the
    crop exactly."""
    start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    along = end - start
    width = float(np.hypot(*along)) or 1.0
    cos, sin = along / width
    k = INPUT_SIZE / (EYE_CROP_SCALE * width)
    centre = (start + end) / 2.0
    rotate = np.array([[cos, sin], [-sin, cos]]) * k
    to_crop = np.eye(3)
    to_crop[:2, :2] = rotate
    to_crop[:2, 2] = (INPUT_SIZE - 1) / 2.0 - rotate @ centre
    if mirror:
        to_crop = _MIRROR @ to_crop
    crop = cv2.warpAffine(
        image, to_crop[:2], (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return crop, cv2.invertAffineTransform(to_crop[:2])


def _to_image(points: np.ndarray, back: np.ndarray) -> np.ndarray:
    """Network points (x, y, z in crop pixels; a pixel spans [i, i + 1), so its centre is i + 0.5) in image pixels,
    z on the scale of x."""
    xy = (points[:, :2] - 0.5) @ back[:, :2].T + back[:, 2]
    return np.concatenate([xy, points[:, 2:] * np.sqrt(abs(np.linalg.det(back[:, :2])))], axis=1)


def _eyes(points: np.ndarray, contours: list[np.ndarray], irises: list[np.ndarray], first: int) -> Eyes:
    contour = np.stack(contours[first : first + 2])
    iris = np.stack(irises[first : first + 2])
    openness = tuple(eye_openness(contour[i], points[list(EYE_CORNERS[i])]) for i in range(2))
    gaze_yaw, gaze_pitch, eye_yaw, eye_pitch = gaze_angles(iris[:, 0, :2], contour[:, [0, 8], :2], points)
    return Eyes(iris, contour, (openness[0], openness[1]), gaze_yaw, gaze_pitch, eye_yaw, eye_pitch)
