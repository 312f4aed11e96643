"""Scenes with known face boxes, generated at run time from face crops: for the "Faces in scenes" section of
every evaluation (``evaluation.faces_in_scenes``) and for the detection benchmarks.

Each scene is a generated non-face background (smooth gradients, multi-scale noise, random shapes and stripes)
with several faces pasted at random sizes (log-uniform, so small faces are as common as large ones), each rotated
in-plane by up to ``max_angle`` degrees, and (per ``SceneSpec``) some blurred, relit or partly covered by a block
of colour. A face is pasted through a feathered elliptical mask, so no square edge gives it away. Its true box is
the upright square of the pasted crop (the dataset's own face box, the one the models are trained on), centred
where it was pasted: an in-plane rotation does not change the face's size or centre.

Two ways to fill scenes: ``scenes`` draws random crops for benchmarks of detectors; ``scenes_of`` pastes every
given face exactly once, in order, so that each test face is scored once. Nothing is written to disk: scenes are
rebuilt from the seed every run (the same seed gives the same scenes), so the data's licence is respected.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from affectlab.errors import AffectlabError

__all__ = ["Box", "Scene", "SceneSpec", "background", "load_crops", "make_scene", "scenes", "scenes_of"]

Box = tuple[int, int, int, int]  # x, y, width, height


@dataclass
class Scene:
    """One generated image and where its faces are."""

    image: np.ndarray  # RGB uint8
    boxes: list[Box]  # true face boxes (x, y, w, h)
    sources: list[int] = field(default_factory=list)  # index of each face in the crop list
    angles: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class SceneSpec:
    """How scenes are drawn: frame size, face sides (pixels, log-uniform), faces per scene, and what is done to
    each face (in-plane rotation up to ``max_angle`` degrees; probabilities of blur, relighting, occlusion)."""

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
    crops = []
    for path in paths:
        image = cv2.imread(str(path))
        if image is None:
            raise AffectlabError(f"{path}: not a readable image")
        crops.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return crops


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


def _face_patch(
    crop: np.ndarray, side: int, angle: float, rng: np.random.Generator, spec: SceneSpec
) -> tuple[np.ndarray, np.ndarray]:
    """The crop resized to ``side``, rotated, with lighting, blur and occlusion; plus its alpha mask."""
    face = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA if side < crop.shape[0] else cv2.INTER_LINEAR)
    mask: np.ndarray = np.zeros((side, side), np.float32)
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


def _paste(canvas: np.ndarray, scene: Scene, rng: np.random.Generator, crop: np.ndarray, index: int, box: Box,
           spec: SceneSpec) -> None:  # fmt: skip
    """Paste ``crop`` (face ``index``) into ``canvas`` at ``box``, and record it on ``scene``."""
    x, y, side, _ = box
    angle = float(rng.uniform(-spec.max_angle, spec.max_angle))
    face, mask = _face_patch(crop, side, angle, rng, spec)
    region = canvas[y : y + side, x : x + side]
    region[:] = region * (1 - mask[..., None]) + face * mask[..., None]
    scene.boxes.append(box)
    scene.sources.append(index)
    scene.angles.append(angle)


def _side(rng: np.random.Generator, spec: SceneSpec) -> int:
    side = round(np.exp(rng.uniform(np.log(spec.min_face), np.log(spec.max_face))))
    return int(min(side, spec.width, spec.height))


def make_scene(rng: np.random.Generator, crops: Sequence[np.ndarray], spec: SceneSpec = SceneSpec()) -> Scene:
    """One scene: background plus randomly chosen crops; see the module docstring."""
    canvas = background(rng, spec.height, spec.width).astype(np.float32)
    scene = Scene(image=np.empty(0), boxes=[])
    wanted = int(rng.integers(spec.faces[0], spec.faces[1] + 1))
    for _ in range(wanted):
        side = _side(rng, spec)
        box = _place(rng, side, scene.boxes, spec.width, spec.height)
        if box is None:
            continue
        index = int(rng.integers(0, len(crops)))
        _paste(canvas, scene, rng, crops[index], index, box, spec)
    scene.image = canvas.astype(np.uint8)
    return scene


def scenes(seed: int, crops: Sequence[np.ndarray], n: int, spec: SceneSpec = SceneSpec()) -> Iterator[Scene]:
    """``n`` scenes of randomly chosen crops from one seed: the same seed gives the same scenes."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield make_scene(rng, crops, spec)


def scenes_of(faces: Sequence[np.ndarray], seed: int, spec: SceneSpec) -> Iterator[Scene]:
    """Scenes that hold every face of ``faces`` exactly once, in order (``Scene.sources`` are their indices).

    Each scene is meant to take a number of faces drawn from ``spec.faces``; a face that finds no free place
    (after 50 tries) opens the next scene instead, so no face is ever dropped. The same seed gives the same
    scenes.
    """
    rng = np.random.default_rng(seed)
    index = 0
    while index < len(faces):
        canvas = background(rng, spec.height, spec.width).astype(np.float32)
        scene = Scene(image=np.empty(0), boxes=[])
        wanted = int(rng.integers(spec.faces[0], spec.faces[1] + 1))
        while len(scene.boxes) < wanted and index < len(faces):
            side = _side(rng, spec)
            box = _place(rng, side, scene.boxes, spec.width, spec.height)
            if box is None:  # never in an empty frame (a face is at most the frame's shorter side)
                break  # this face opens the next scene
            _paste(canvas, scene, rng, faces[index], index, box, spec)
            index += 1
        scene.image = canvas.astype(np.uint8)
        yield scene
