"""Scenes with known face boxes, built at run time from AffectNet face crops, for the detection benchmarks.

Each scene is a generated non-face background (smooth gradients, multi-scale noise, random shapes and stripes)
with several faces pasted at random sizes (20-250 px by default, log-uniform so small faces are as common as
large ones), each rotated in-plane by up to +-30 degrees, and some blurred, darkened or brightened, or partly
covered by a block of colour. A face is pasted through a feathered elliptical mask, so no square edge gives
it away. Its true box is the upright square of the pasted crop (AffectNet's own face box, the one the models
are trained on), centred where it was pasted: an in-plane rotation does not change the face's size or centre.

Nothing is written to disk: scenes are rebuilt from the seed every run, so the data's licence is respected.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

Box = tuple[int, int, int, int]


@dataclass
class Scene:
    image: np.ndarray  # RGB uint8
    boxes: list[Box]  # true face boxes (x, y, w, h)
    sources: list[int] = field(default_factory=list)  # index of each face in the crop list
    angles: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class SceneSpec:
    width: int = 640
    height: int = 480
    min_face: int = 20
    max_face: int = 250
    faces: tuple[int, int] = (1, 6)  # inclusive range of faces per scene
    max_angle: float = 30.0
    p_blur: float = 0.3
    p_light: float = 0.5
    p_occlude: float = 0.25


def load_crops(paths: Sequence[Path]) -> list[np.ndarray]:
    """Decode face crops as RGB."""
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A non-face texture: a colour gradient plus multi-scale noise, shapes and sometimes stripes."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    start, end = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    angle = rng.uniform(0, np.pi)
    t = (np.cos(angle) * xx + np.sin(angle) * yy) / (abs(np.cos(angle)) * width + abs(np.sin(angle)) * height)
    t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
    image = start[None, None] * (1 - t[..., None]) + end[None, None] * t[..., None]
    for cell in (4, 16, 64):  # value noise at three scales
        small = rng.normal(0, 1, (height // cell + 2, width // cell + 2, 3)).astype(np.float32)
        image += rng.uniform(5, 25) * cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 15))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(10, max(11, min(width, height) // 3)))
        kind = rng.integers(0, 3)
        if kind == 0:
            cv2.rectangle(image, (x, y), (x + size, y + int(rng.integers(5, size + 6))), colour, -1)
        elif kind == 1:
            cv2.circle(image, (x, y), size // 2, colour, -1, cv2.LINE_AA)
        else:
            cv2.line(
                image,
                (x, y),
                (int(rng.integers(0, width)), int(rng.integers(0, height))),
                colour,
                int(rng.integers(1, 6)),
                cv2.LINE_AA,
            )
    if rng.random() < 0.3:
        period = int(rng.integers(6, 40))
        stripes = ((xx if rng.random() < 0.5 else yy) // period % 2).astype(np.float32)[..., None]
        image = np.clip(image * (0.8 + 0.2 * stripes), 0, 255).astype(np.uint8)
    return image


def _place(rng: np.random.Generator, side: int, taken: list[Box], width: int, height: int) -> Box | None:
    """A square of ``side`` inside the frame that does not touch any box already placed (None after 50 tries)."""
    for _ in range(50):
        x, y = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
        if all(x + side <= a or a + c <= x or y + side <= b or b + d <= y for a, b, c, d in taken):
            return (x, y, side, side)
    return None


def _face_patch(crop: np.ndarray, side: int, angle: float, rng: np.random.Generator, spec: SceneSpec):  # type: ignore[no-untyped-def]
    """The crop resized to ``side``, rotated, with lighting, blur and occlusion; plus its alpha mask."""
    face = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA if side < crop.shape[0] else cv2.INTER_LINEAR)
    mask = np.zeros((side, side), np.float32)
    cv2.ellipse(mask, (side // 2, side // 2), (int(side * 0.47), int(side * 0.49)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.5, side * 0.03))
    rotation = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
    face = cv2.warpAffine(face, rotation, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    mask = cv2.warpAffine(mask, rotation, (side, side), flags=cv2.INTER_LINEAR)
    face = face.astype(np.float32)
    if rng.random() < spec.p_light:
        face = face * rng.uniform(0.35, 1.4) + rng.uniform(-30, 30)
    if rng.random() < spec.p_blur:
        face = cv2.GaussianBlur(face, (0, 0), rng.uniform(0.6, 0.6 + side / 60))
    if rng.random() < spec.p_occlude:  # a block of colour over 20-40 % of the face, from one side
        cover = int(side * rng.uniform(0.2, 0.4))
        colour = rng.integers(0, 256, 3).astype(np.float32)
        where = rng.integers(0, 4)
        if where == 0:
            face[:cover] = colour
        elif where == 1:
            face[-cover:] = colour
        elif where == 2:
            face[:, :cover] = colour
        else:
            face[:, -cover:] = colour
    return np.clip(face, 0, 255), mask


def make_scene(rng: np.random.Generator, crops: Sequence[np.ndarray], spec: SceneSpec = SceneSpec()) -> Scene:
    """One scene: background plus faces; see the module docstring."""
    canvas = background(rng, spec.height, spec.width).astype(np.float32)
    scene = Scene(image=np.empty(0), boxes=[])
    wanted = int(rng.integers(spec.faces[0], spec.faces[1] + 1))
    for _ in range(wanted):
        side = round(np.exp(rng.uniform(np.log(spec.min_face), np.log(spec.max_face))))
        side = min(side, spec.width, spec.height)
        box = _place(rng, side, scene.boxes, spec.width, spec.height)
        if box is None:
            continue
        index = int(rng.integers(0, len(crops)))
        angle = float(rng.uniform(-spec.max_angle, spec.max_angle))
        face, mask = _face_patch(crops[index], side, angle, rng, spec)
        x, y = box[0], box[1]
        region = canvas[y : y + side, x : x + side]
        region[:] = region * (1 - mask[..., None]) + face * mask[..., None]
        scene.boxes.append(box)
        scene.sources.append(index)
        scene.angles.append(angle)
    scene.image = canvas.astype(np.uint8)
    return scene


def scenes(seed: int, crops: Sequence[np.ndarray], n: int, spec: SceneSpec = SceneSpec()) -> Iterator[Scene]:
    """``n`` scenes from one seed: the same seed gives the same scenes."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield make_scene(rng, crops, spec)
