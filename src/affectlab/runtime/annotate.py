"""Draw predictions on an image: a box and label per face, and a small valence/arousal dial.

The dial is a circle in the corner of the face's box (valence on x, arousal on y, the circumplex model's axes) with a dot
where the face sits, so V/A can be read at a glance on a video. Drawing sizes scale with the face box, so the
marks stay readable on both a 96 px crop and a 4K frame. Faces with a FaceMesh (``--landmarks``) also get their
468 points as dots and their head pose as a line of text under the box (``mesh rejected`` where the mesh network
did not take the face for one); with ``--eyes``, each iris as a circle, the gaze as an arrow from between the eyes
and its angles and the eyes' openness as another line of text. A page that shows the image at a known size asks for it to
be drawn at that size (``fit``), so that the text is readable there however large the photo was; it can also number
the faces, so that they match a table listing them in order. On a group photo the text of each face is laid out
(``label_layout.place_labels``) so that it covers no other face and no other face's text; a face whose text fits
nowhere near it gets a number, and its text goes to a legend under the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from affectlab.runtime.label_layout import Rect, Size, place_labels

__all__ = ["EMOTION_COLOURS", "GAZE_COLOUR", "TextItem", "TextPlan", "draw_result", "eye_text", "plan_text"]

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


class Eyes(Protocol):
    """What is drawn of a face's eyes (``results.Eyes``)."""

    @property
    def iris(self) -> np.ndarray | None: ...
    @property
    def openness(self) -> tuple[float, float] | None: ...
    @property
    def gaze_yaw(self) -> float | None: ...
    @property
    def gaze_pitch(self) -> float | None: ...
    @property
    def blinks(self) -> int | None: ...
    @property
    def rejected(self) -> bool: ...


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
    @property
    def eyes(self) -> Eyes | None: ...


class ImageResult(Protocol):
    """What is drawn of an image's result (``results.ImageResult``)."""

    @property
    def no_face(self) -> bool: ...
    @property
    def faces(self) -> Sequence[FaceResult]: ...


#: Smallest text scale when drawing at a display size (``fit``): about 11 px high, readable where it is shown.
_DISPLAY_TEXT_SCALE = 0.5
#: Text no smaller than this fraction of the image's longer side (scale 1 is about 22 px high), so that a label
#: stays readable when a 12 MP photo is shown at screen size: about 30 px high at 4000 px, 9 px at 1 MP.
_IMAGE_TEXT_SCALE = 1 / 3000
_DETAIL = (235, 235, 235)
_LEGEND_BACKGROUND = (24, 24, 24)


@dataclass(frozen=True)
class TextItem:
    """One line of text: the rectangle of its dark band on the image (x, y, width, height), text, colour, scale."""

    rect: Rect
    text: str
    colour: tuple[int, int, int]
    scale: float


@dataclass(frozen=True)
class TextPlan:
    """All the text of an annotated image: the lines of each face (near its box, or its number inside the box),
    and the legend's lines for faces whose full text fits nowhere near their box."""

    faces: list[list[TextItem]]
    legend: list[tuple[str, tuple[int, int, int]]] = field(default_factory=list)
    legend_scale: float = 0.5


def draw_result(
    image: np.ndarray, result: ImageResult, numbered: bool = False, fit: int | None = None, legend: bool = True
) -> np.ndarray:
    """An annotated RGB copy of ``image`` (RGB uint8); the input is not modified.

    ``numbered`` puts each face's index (0, 1, ...) before its label, as a table of the faces numbers them.
    ``fit`` first resizes the image so that its longer side is ``fit`` pixels, for a page that shows it at about
    that size: the boxes are drawn at that scale and no text is smaller than is readable there.
    On a group photo, a face whose text fits nowhere near its box without covering another face or its text
    shows its label alone, or its number, and with ``legend`` its full text is listed in a strip added under the
    image (the copy is then taller than the image; a video, whose frames keep their size, passes False).
    """
    factor, min_scale = 1.0, 0.35
    if fit is not None:
        factor, min_scale = fit / max(image.shape[:2]), _DISPLAY_TEXT_SCALE
        size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    out = np.ascontiguousarray(image.copy())
    if result.no_face:
        _band(out, "no face", (4, 4), (255, 255, 255), max(0.4, min_scale, min(out.shape[:2]) / 400))
    boxes: list[Rect] = [tuple(round(v * factor) for v in face.box) for face in result.faces]  # type: ignore[misc]
    plan = plan_text(result.faces, boxes, (out.shape[1], out.shape[0]), numbered, min_scale, legend)
    for face, box in zip(result.faces, boxes, strict=True):
        _draw_marks(out, face, box)
    for items in plan.faces:
        for item in items:
            _band(out, item.text, item.rect[:2], item.colour, item.scale)
    return _with_legend(out, plan) if plan.legend else out


def plan_text(
    faces: Sequence[FaceResult],
    boxes: Sequence[Rect],
    image_size: Size,
    numbered: bool = False,
    min_scale: float = 0.35,
    legend: bool = True,
) -> TextPlan:
    """Where every face's text goes (``boxes`` as drawn, ``image_size`` as width, height); see ``place_labels``."""
    floor = max(min_scale, max(image_size) * _IMAGE_TEXT_SCALE)
    texts = [_face_text(face, box, i, numbered, legend, floor) for i, (face, box) in enumerate(zip(faces, boxes))]
    placements = place_labels(
        boxes,
        [[_block_size(block) for block in text.blocks] for text in texts],
        [None if text.short is None else _block_size([text.short]) for text in texts],
        image_size,
        gap=max(2, round(floor * 4)),
    )
    plan = TextPlan([], legend_scale=max(0.45, floor))
    for i, (text, placement, box) in enumerate(zip(texts, placements, boxes, strict=True)):
        if placement is not None and not placement.short:
            rects = placement.rects
            plan.faces.append([item for block, rect in zip(text.blocks, rects) for item in _lines(block, rect)])
            continue
        if placement is not None and text.short is not None:
            plan.faces.append(_lines([text.short], placement.rects[0]))
        else:
            plan.faces.append(_number_tag(i, box, text.scale, image_size) if legend or numbered else [])
        if legend:
            plan.legend.append((text.full if numbered else f"{i}: {text.full}", text.colour))
    return plan


_Line = tuple[str, tuple[int, int, int], float]  # text, colour, scale


@dataclass(frozen=True)
class _FaceText:
    """A face's text blocks (its label line, then the lines under it), its short text (the label alone, numbered
    when a legend lists the rest), all of it on one line for a legend, and the scale and colour of its label."""

    blocks: list[list[_Line]]
    short: _Line | None
    full: str
    scale: float
    colour: tuple[int, int, int]


def _face_text(face: FaceResult, box: Rect, index: int, numbered: bool, legend: bool, floor: float) -> _FaceText:
    scale = max(floor, max(box[2], box[3]) / 260)
    colour = EMOTION_COLOURS.get(face.label or "", (255, 255, 255))
    title = [] if not numbered else [str(index)]
    if face.label:
        title.append(f"{face.label} {face.confidence:.2f}")
    details: list[_Line] = []
    full = [": ".join(title)] if title else []
    if face.valence is not None and face.arousal is not None:
        details.append((f"V {face.valence:+.2f}  A {face.arousal:+.2f}", _DETAIL, scale * 0.85))
    widest = max([box[2], *(_size(line)[0] for line in details)])
    if title:
        widest = max(widest, _size((": ".join(title), colour, scale))[0])
    full += [line[0] for line in details]
    if face.prediction_set is not None and len(face.prediction_set) > 1:
        details += [(text, _DETAIL, scale * 0.85) for text in _wrap(face.prediction_set, widest, scale * 0.85)]
        full.append("{" + " | ".join(face.prediction_set) + "}")
    if face.mesh is not None:
        details.append((_pose_text(face.mesh), _DETAIL, scale * 0.85))
        full.append(details[-1][0])
    if face.eyes is not None:
        details.append((eye_text(face.eyes), _DETAIL, scale * 0.85))
        full.append(details[-1][0])
    blocks = [block for block in ([(": ".join(title), colour, scale)] if title else [], details) if block]
    short = None
    if face.label:
        short_title = title if numbered or not legend else [str(index), *title]
        short = (": ".join(short_title), colour, scale)
    return _FaceText(blocks, short, "  ".join(full), scale, colour)


def _wrap(names: Sequence[str], width: int, scale: float) -> list[str]:
    """``{A | B | C}`` on as few lines as fit ``width`` (a name never split)."""
    lines = ["{" + names[0]]
    for name in names[1:]:
        longer = f"{lines[-1]} | {name}"
        if _size((longer + "}", _DETAIL, scale))[0] <= width:
            lines[-1] = longer
        else:
            lines.append(f"| {name}")
    lines[-1] += "}"
    return lines


def _pose_text(mesh: Mesh) -> str:
    if mesh.points is None or mesh.yaw is None or mesh.pitch is None or mesh.roll is None:
        return "mesh rejected"
    return f"yaw {mesh.yaw:+.0f} pitch {mesh.pitch:+.0f} roll {mesh.roll:+.0f}"


def _size(line: _Line) -> Size:
    """The size of a line's dark band."""
    text, _, scale = line
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, _thickness(scale))
    return tw + 4, th + base + 4


def _block_size(block: Sequence[_Line]) -> Size:
    sizes = [_size(line) for line in block]
    return max(w for w, _ in sizes), sum(h for _, h in sizes)


def _lines(block: Sequence[_Line], rect: Rect) -> list[TextItem]:
    items, y = [], rect[1]
    for line in block:
        w, h = _size(line)
        items.append(TextItem((rect[0], y, w, h), *line))
        y += h
    return items


def _number_tag(index: int, box: Rect, scale: float, image_size: Size) -> list[TextItem]:
    """The face's number inside its box's top-left corner (kept on the image), for the legend to refer to."""
    line: _Line = (str(index), (255, 255, 255), scale)
    w, h = _size(line)
    inset = max(1, max(box[2], box[3]) // 80) + 1
    x = min(max(0, box[0] + inset), max(0, image_size[0] - w))
    y = min(max(0, box[1] + inset), max(0, image_size[1] - h))
    return [TextItem((x, y, w, h), *line)]


def _thickness(scale: float) -> int:
    return max(1, int(scale * 2))


def _draw_marks(out: np.ndarray, face: FaceResult, box: Rect) -> None:
    """The box, the V/A dial in its top-right corner and the mesh's points: everything but text."""
    x, y, w, h = box
    side = max(w, h)
    colour = EMOTION_COLOURS.get(face.label or "", (255, 255, 255))
    cv2.rectangle(out, (x, y), (x + w, y + h), colour, max(1, side // 80), cv2.LINE_AA)
    if face.valence is not None and face.arousal is not None:
        radius = max(8, side // 8)
        _va_dial(out, (x + w - radius - 3, y + radius + 3), radius, face.valence, face.arousal, colour)
    mesh = face.mesh
    if mesh is not None and mesh.points is not None and mesh.yaw is not None:
        radius = 1 if float(np.ptp(mesh.points[:, 0])) < 300 else 2
        for px, py in np.round(mesh.points[:, :2]).astype(int):
            cv2.circle(out, (int(px), int(py)), radius, (80, 255, 160), -1)
    if face.eyes is not None and face.eyes.iris is not None:
        _draw_eyes(out, face.eyes, side)


#: RGB colour of the irises and the gaze arrow.
GAZE_COLOUR = (255, 60, 200)


def _draw_eyes(out: np.ndarray, eyes: Eyes, side: int) -> None:
    """Each iris as a circle through its rim points, and the gaze as an arrow from between the irises: its length
    is 0.6 face box sides for a gaze across the image plane and shrinks as the gaze turns towards the camera."""
    assert eyes.iris is not None and eyes.gaze_yaw is not None and eyes.gaze_pitch is not None
    thickness = max(1, side // 100)
    for iris in eyes.iris:
        centre = iris[0, :2]
        radius = float(np.mean(np.linalg.norm(iris[1:, :2] - centre, axis=1)))
        cv2.circle(out, _point(centre), max(1, round(radius)), GAZE_COLOUR, thickness, cv2.LINE_AA)
    yaw, pitch = np.radians([eyes.gaze_yaw, eyes.gaze_pitch])
    start = eyes.iris[:, 0, :2].mean(axis=0)
    end = start + 0.6 * side * np.array([np.sin(yaw) * np.cos(pitch), -np.sin(pitch)])
    cv2.arrowedLine(out, _point(start), _point(end), GAZE_COLOUR, thickness + 1, cv2.LINE_AA, tipLength=0.25)


def _point(xy: np.ndarray) -> tuple[int, int]:
    return int(round(float(xy[0]))), int(round(float(xy[1])))


def eye_text(eyes: Eyes) -> str:
    """One line for a face's eyes: gaze angles and openness, or why there are none (also the page's)."""
    if eyes.rejected or eyes.openness is None or eyes.gaze_yaw is None or eyes.gaze_pitch is None:
        return "no eyes (mesh rejected)"
    left, right = eyes.openness
    blinks = "" if eyes.blinks is None else f" blinks {eyes.blinks}"
    return f"gaze {eyes.gaze_yaw:+.0f} {eyes.gaze_pitch:+.0f} open {left:.2f} {right:.2f}{blinks}"


def _with_legend(out: np.ndarray, plan: TextPlan) -> np.ndarray:
    """``out`` with a dark strip under it listing the legend's lines (each wrapped to the image's width)."""
    scale, width = plan.legend_scale, out.shape[1]
    lines: list[tuple[str, tuple[int, int, int]]] = []
    for text, colour in plan.legend:
        first, *parts = text.split("  ")
        line = first
        for part in parts:
            if _size((f"{line}  {part}", colour, scale))[0] <= width:
                line = f"{line}  {part}"
            else:
                lines.append((line, colour))
                line = f"    {part}"
        lines.append((line, colour))
    heights = [_size((text, colour, scale))[1] for text, colour in lines]
    strip = np.full((sum(heights) + 4, width, 3), _LEGEND_BACKGROUND, np.uint8)
    y = 2
    for (text, colour), h in zip(lines, heights, strict=True):
        _band(strip, text, (2, y), colour, scale)
        y += h
    return np.concatenate([out, strip])


def _band(out: np.ndarray, text: str, origin: tuple[int, int], colour: tuple[int, int, int], scale: float) -> None:
    """Text on a dark band whose top-left corner is ``origin`` (kept inside the image)."""
    thickness = _thickness(scale)
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thickness)
    x = int(np.clip(origin[0], 0, max(0, out.shape[1] - tw - 4)))
    y = int(np.clip(origin[1], 0, max(0, out.shape[0] - th - base - 4)))
    band = out[y : y + th + base + 4, x : x + tw + 4]
    band[:] = (band * 0.35).astype(np.uint8)
    cv2.putText(out, text, (x + 2, y + th + 2), _FONT, scale, colour, thickness, cv2.LINE_AA)


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
