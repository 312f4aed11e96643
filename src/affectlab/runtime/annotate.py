"""Draw predictions on an image: a box and label per face, and a small valence/arousal dial.

The dial is a circle in the corner of the face's box (valence on x, arousal on y, the circumplex model's axes) with a dot
where the face sits, so V/A can be read at a glance on a video. Drawing sizes scale with the face box, so the
marks stay readable on both a 96 px crop and a 4K frame. Faces with a FaceMesh (``--landmarks``) also get their
468 points as dots and their head pose as a line of text under the box (``mesh rejected`` where the mesh network
did not take the face for one). A page that shows the image at a known size asks for it to
be drawn at that size (``fit``), so that the text is readable there however large the photo was; it can also number
the faces, so that they match a table listing them in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np

__all__ = ["EMOTION_COLOURS", "draw_result"]

#: RGB colour per emotion name; unknown names are drawn in white.
EMOTION_COLOURS: dict[str, tuple[int, int, int]] = {
    "Neutral": (200, 200, 200),
    "Happy": (255, 200, 0),
    "Sad": (60, 120, 255),
    "Surprise": (255, 120, 220),
    "Fear": (160, 80, 255),
    "Disgust": (60, 190, 60),
    "Anger": (255, 50, 40),
    "Contempt": (255, 140, 40),
}
_FONT = cv2.FONT_HERSHEY_SIMPLEX


class Mesh(Protocol):
    """What is drawn of a face's mesh (``results.Mesh``)."""

    @property
    def points(self) -> np.ndarray | None: ...
    @property
    def yaw(self) -> float | None: ...
    @property
    def pitch(self) -> float | None: ...
    @property
    def roll(self) -> float | None: ...


class FaceResult(Protocol):
    """What is drawn of a face (``results.FaceResult``); a protocol, so that results.py can draw with this
    module (``ImageResult.plot``) without an import loop."""

    @property
    def box(self) -> tuple[int, int, int, int]: ...
    @property
    def label(self) -> str | None: ...
    @property
    def confidence(self) -> float | None: ...
    @property
    def valence(self) -> float | None: ...
    @property
    def arousal(self) -> float | None: ...
    @property
    def mesh(self) -> Mesh | None: ...
    @property
    def prediction_set(self) -> tuple[str, ...] | None: ...


class ImageResult(Protocol):
    """What is drawn of an image's result (``results.ImageResult``)."""

    @property
    def no_face(self) -> bool: ...
    @property
    def faces(self) -> Sequence[FaceResult]: ...


#: Smallest text scale when drawing at a display size (``fit``): about 11 px high, readable where it is shown.
_DISPLAY_TEXT_SCALE = 0.5


def draw_result(image: np.ndarray, result: ImageResult, numbered: bool = False, fit: int | None = None) -> np.ndarray:
    """An annotated RGB copy of ``image`` (RGB uint8); the input is not modified.

    ``numbered`` puts each face's index (0, 1, ...) before its label, as a table of the faces numbers them.
    ``fit`` first resizes the image so that its longer side is ``fit`` pixels, for a page that shows it at about
    that size: the boxes are drawn at that scale and no text is smaller than is readable there.
    """
    factor, min_scale = 1.0, 0.35
    if fit is not None:
        factor, min_scale = fit / max(image.shape[:2]), _DISPLAY_TEXT_SCALE
        size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    out = np.ascontiguousarray(image.copy())
    if result.no_face:
        _text(out, "no face", (4, 4), (255, 255, 255), max(0.4, min_scale, min(out.shape[:2]) / 400))
    for index, face in enumerate(result.faces):
        box = tuple(round(v * factor) for v in face.box)
        _draw_face(out, face, box, min_scale, index if numbered else None)  # type: ignore[arg-type]
    return out


def _draw_face(
    out: np.ndarray, face: FaceResult, box: tuple[int, int, int, int], min_scale: float, number: int | None
) -> None:
    """Label and confidence above the box; V/A values, a prediction set of more than one emotion and the mesh
    below it; the V/A dial in the box's top-right corner."""
    x, y, w, h = box
    side = max(w, h)
    thickness = max(1, side // 80)
    scale = max(min_scale, side / 260)
    colour = EMOTION_COLOURS.get(face.label or "", (255, 255, 255))
    cv2.rectangle(out, (x, y), (x + w, y + h), colour, thickness, cv2.LINE_AA)
    title = [] if number is None else [str(number)]
    if face.label:
        title.append(f"{face.label} {face.confidence:.2f}")
    if title:
        _text(out, ": ".join(title), (x, y), colour, scale, above=True)
    below = y + h + 2
    if face.valence is not None and face.arousal is not None:
        below = _text(out, f"V {face.valence:+.2f}  A {face.arousal:+.2f}", (x, below), (235, 235, 235), scale * 0.85)
        radius = max(8, side // 8)
        _va_dial(out, (x + w - radius - 3, y + radius + 3), radius, face.valence, face.arousal, colour)
    if face.prediction_set is not None and len(face.prediction_set) > 1:
        below = _text(out, "{" + " | ".join(face.prediction_set) + "}", (x, below), (235, 235, 235), scale * 0.85)
    if face.mesh is not None:
        _draw_mesh(out, face.mesh, (x, below), scale)


def _draw_mesh(out: np.ndarray, mesh: Mesh, origin: tuple[int, int], scale: float) -> None:
    """The mesh's points as dots and its head pose as text at ``origin`` (below the V/A line)."""
    if mesh.points is None or mesh.yaw is None or mesh.pitch is None or mesh.roll is None:
        _text(out, "mesh rejected", origin, (235, 235, 235), scale * 0.85)
        return
    span = float(np.ptp(mesh.points[:, 0]))
    radius = 1 if span < 300 else 2
    for px, py in np.round(mesh.points[:, :2]).astype(int):
        cv2.circle(out, (int(px), int(py)), radius, (80, 255, 160), -1)
    pose = f"yaw {mesh.yaw:+.0f} pitch {mesh.pitch:+.0f} roll {mesh.roll:+.0f}"
    _text(out, pose, origin, (235, 235, 235), scale * 0.85)


def _text(
    out: np.ndarray,
    text: str,
    origin: tuple[int, int],
    colour: tuple[int, int, int],
    scale: float,
    above: bool = False,
) -> int:
    """Text on a dark band, kept inside the image; returns the row just below the band."""
    thickness = max(1, int(scale * 2))
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thickness)
    x = int(np.clip(origin[0], 0, max(0, out.shape[1] - tw - 4)))
    y = origin[1] - th - base - 4 if above else origin[1]
    y = int(np.clip(y, 0, max(0, out.shape[0] - th - base - 4)))
    band = out[y : y + th + base + 4, x : x + tw + 4]
    band[:] = (band * 0.35).astype(np.uint8)
    cv2.putText(out, text, (x + 2, y + th + 2), _FONT, scale, colour, thickness, cv2.LINE_AA)
    return y + th + base + 4


def _va_dial(
    out: np.ndarray,
    centre: tuple[int, int],
    radius: int,
    valence: float,
    arousal: float,
    colour: tuple[int, int, int],
) -> None:
    """Circle of ``radius`` at ``centre`` (kept inside the image): valence on x, arousal on y, dot at (V, A)."""
    cx = int(np.clip(centre[0], radius, out.shape[1] - radius - 1))
    cy = int(np.clip(centre[1], radius, out.shape[0] - radius - 1))
    cv2.circle(out, (cx, cy), radius, (20, 20, 20), -1, cv2.LINE_AA)
    cv2.circle(out, (cx, cy), radius, (230, 230, 230), 1, cv2.LINE_AA)
    cv2.line(out, (cx - radius, cy), (cx + radius, cy), (120, 120, 120), 1)
    cv2.line(out, (cx, cy - radius), (cx, cy + radius), (120, 120, 120), 1)
    v, a = float(np.clip(valence, -1, 1)), float(np.clip(arousal, -1, 1))
    dot = (int(round(cx + v * (radius - 2))), int(round(cy - a * (radius - 2))))
    cv2.circle(out, dot, max(2, radius // 5), colour, -1, cv2.LINE_AA)
