"""Dense landmarks and head pose per detected face: FaceMesh on a crop around each detector box.

Each box is grown by ``margin`` (default 0.25 of its side on every side, so the crop is 1.5 box sides wide, about
the context MediaPipe gives the network), squared and resized to 192 x 192. Where the detector gives eye
landmarks (yuface), the crop is first rotated so that the eyes are level, as MediaPipe does, and the points are
rotated back. The network's face score (0-1) decides whether a face is kept: below ``min_score`` the face gets
no points and no pose, and its record says ``mesh_rejected``. Points are returned in source-image pixels, z on the
same scale as x (relative depth: smaller is nearer the camera).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from affectlab.data.images import resize_square, square_crop
from affectlab.errors import AffectlabError
from affectlab.models.facemesh import INPUT_SIZE, load_facemesh
from affectlab.runtime.faces import eye_angle
from affectlab.runtime.headpose import head_pose
from affectlab.runtime.results import Detection, Mesh

__all__ = ["DEFAULT_MESH_MARGIN", "DEFAULT_MIN_MESH_SCORE", "MeshLandmarker"]

DEFAULT_MESH_MARGIN = 0.25
#: Faces the mesh network scores below this get no landmarks. The network is confident either way: the
#: astronaut photo scores 1.0000 and noise or a blank wall below 0.001, so the threshold is not delicate.
DEFAULT_MIN_MESH_SCORE = 0.5


class MeshLandmarker:
    """FaceMesh on the faces of one image at a time: one network call for all its faces (two with ``refine``).

    The network was trained on upright faces: on a crop where the head is tilted by 30 degrees its points lean
    back towards upright and the roll comes out 10-15 degrees short. With ``refine`` (the default) each face is
    cropped a second time, rotated by the roll of the first pass so that it stands upright, and the second pass's
    points are kept: MediaPipe's own pipeline does the same with the previous video frame's landmarks.
    """

    def __init__(
        self, margin: float = DEFAULT_MESH_MARGIN, min_score: float = DEFAULT_MIN_MESH_SCORE, refine: bool = True
    ) -> None:
        if not 0 <= margin <= 2:
            raise AffectlabError(f"mesh margin must be between 0 and 2, got {margin}")
        if not 0 <= min_score <= 1:
            raise AffectlabError(f"mesh min_score must be between 0 and 1, got {min_score}")
        self.net = load_facemesh().to(memory_format=torch.channels_last)  # twice as fast as NCHW on CPU
        self.margin, self.min_score, self.refine = margin, min_score, refine

    def __call__(self, image: np.ndarray, faces: Sequence[Detection]) -> list[Mesh]:
        if not faces:
            return []
        angles = [0.0 if f.landmarks is None else eye_angle(f.landmarks) for f in faces]
        meshes = self._run(image, faces, angles)
        if self.refine:
            again = [i for i, m in enumerate(meshes) if m.roll is not None]
            if again:
                better = self._run(image, [faces[i] for i in again], [-(meshes[i].roll or 0.0) for i in again])
                for i, mesh in zip(again, better):
                    meshes[i] = mesh
        return meshes

    def _run(self, image: np.ndarray, faces: Sequence[Detection], angles: Sequence[float]) -> list[Mesh]:
        crops, transforms = zip(*(self._crop(image, f.box, a) for f, a in zip(faces, angles)))
        batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255.0)
        with torch.inference_mode():
            points, logits = self.net(batch.contiguous(memory_format=torch.channels_last))
        scores = torch.sigmoid(logits).numpy()
        return [self._mesh(float(s), p, t) for s, p, t in zip(scores, points.numpy().astype(np.float64), transforms)]

    def _crop(self, image: np.ndarray, box: tuple[int, int, int, int], angle: float) -> tuple[np.ndarray, np.ndarray]:
        """The 192 px crop of ``box``, turned ``angle`` degrees counter-clockwise, and the 2 x 3 affine taking crop
        pixels back to image pixels."""
        x, y, w, h = box
        side = max(w, h) * (1.0 + 2.0 * self.margin)
        cx, cy = x + w / 2.0, y + h / 2.0
        if angle == 0.0:  # axis-aligned: the same square crop and area resize as the expression model's
            x0, y0, whole = round(cx - side / 2), round(cy - side / 2), round(side)
            crop = resize_square(square_crop(image, (x0, y0, whole, whole)), INPUT_SIZE)
            scale = whole / INPUT_SIZE
            return crop, np.array([[scale, 0.0, x0], [0.0, scale, y0]])
        to_crop = cv2.getRotationMatrix2D((cx, cy), angle, INPUT_SIZE / side)
        to_crop[:, 2] += np.array([INPUT_SIZE / 2.0 - cx, INPUT_SIZE / 2.0 - cy])
        crop = cv2.warpAffine(
            image, to_crop, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        return crop, cv2.invertAffineTransform(to_crop)

    def _mesh(self, score: float, points: np.ndarray, back: np.ndarray) -> Mesh:
        if score < self.min_score:
            return Mesh(score)
        xy = points[:, :2] @ back[:, :2].T + back[:, 2]
        z = points[:, 2:] * np.sqrt(abs(np.linalg.det(back[:, :2])))
        placed = np.concatenate([xy, z], axis=1)
        yaw, pitch, roll = head_pose(placed)
        return Mesh(score, placed, yaw, pitch, roll)
