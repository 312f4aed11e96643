"""Annotated group photos stay readable: no face's text covers another face or its text, at 1 MP and at 12 MP;
what fits nowhere near a face goes to a numbered legend under the image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affectlab.runtime.annotate import TextPlan, draw_result, plan_text
from affectlab.runtime.label_layout import Rect, intersects, place_labels

#: The set that was drawn across the next face's label in issue 37.
WIDE_SET = ("Contempt", "Neutral", "Anger", "Sad", "Disgust")
SIZES = {"1MP": (1155, 866), "12MP": (4000, 3000)}


@dataclass
class Face:
    """The fields of ``results.FaceResult`` that are drawn."""

    box: tuple[int, int, int, int]
    label: str | None = "Contempt"
    confidence: float | None = 0.41
    valence: float | None = 0.12
    arousal: float | None = -0.25
    mesh: None = None
    prediction_set: tuple[str, ...] | None = WIDE_SET
    eyes: None = None


@dataclass
class Result:
    faces: list[Face]
    no_face: bool = False


def crowd(image_size: tuple[int, int], n: int, rows: int, side: int, gap: int) -> list[Face]:
    """``n`` faces of ``side`` px in ``rows`` rows, ``gap`` px apart, centred on the image."""
    per_row = -(-n // rows)
    x0, y0 = (image_size[0] - per_row * (side + gap)) // 2, (image_size[1] - rows * (side + gap)) // 2
    return [Face((x0 + (i % per_row) * (side + gap), y0 + (i // per_row) * (side + gap), side, side)) for i in range(n)]


def check_plan(plan: TextPlan, boxes: list[Rect], image_size: tuple[int, int]) -> None:
    """Every text inside the image, off every other face's box and off every other face's text; a face whose full
    text is not drawn near it is in the legend."""
    width, height = image_size
    assert len(plan.faces) == len(boxes)
    for i, items in enumerate(plan.faces):
        for item in items:
            x, y, w, h = item.rect
            assert 0 <= x and 0 <= y and x + w <= width and y + h <= height, (i, item)
            assert not any(intersects(item.rect, box) for j, box in enumerate(boxes) if j != i), (i, item)
            for j, others in enumerate(plan.faces[i + 1 :], start=i + 1):
                assert not any(intersects(item.rect, other.rect) for other in others), (i, j, item)
    in_legend = {int(text.split(":")[0]) for text, _ in plan.legend}
    for i, items in enumerate(plan.faces):
        shown = " ".join(item.text for item in items)
        assert ("Disgust}" in shown) != (i in in_legend), (i, shown)


@pytest.mark.parametrize("size", SIZES, ids=str)
@pytest.mark.parametrize(("n", "rows", "gap"), [(5, 1, 20), (5, 1, 4), (8, 2, 10), (12, 2, 6), (12, 3, 4), (12, 1, 2)])
def test_crowds_keep_texts_apart(size: str, n: int, rows: int, gap: int) -> None:
    image_size = SIZES[size]
    side = min(image_size[0] // 9, image_size[0] // -(-n // rows) - gap)
    faces = crowd(image_size, n, rows, side, gap)
    boxes = [face.box for face in faces]
    plan = plan_text(faces, boxes, image_size)  # type: ignore[arg-type]
    check_plan(plan, boxes, image_size)
    # Not everything goes to the legend: the faces at the ends of a row have room beside them.
    assert len(plan.legend) < n
    # Legible when the photo is shown 1,200 px wide: the label is at least 9 px high there.
    height_there = min(items[0].rect[3] for items in plan.faces if items) * 1200 / image_size[0]
    assert height_there >= 9


def test_five_faces_in_a_row_all_keep_their_full_text() -> None:
    """The photo of issue 37: five people side by side in a 1 MP photo, each with a five-emotion set."""
    image_size = SIZES["1MP"]
    faces = crowd(image_size, 5, 1, 150, 20)
    plan = plan_text(faces, [face.box for face in faces], image_size)  # type: ignore[arg-type]
    assert not plan.legend
    for face, items in zip(faces, plan.faces, strict=True):
        label, *details = items
        assert label.text == "Contempt 0.41" and label.rect[1] + label.rect[3] <= face.box[1]  # above the box
        assert all(item.rect[1] >= face.box[1] + face.box[3] for item in details)  # V/A and the set below it
        assert "".join(item.text for item in details[1:]).replace(" ", "") == "{Contempt|Neutral|Anger|Sad|Disgust}"


boxes_strategy = st.lists(
    st.tuples(st.integers(0, 1000), st.integers(0, 700), st.integers(20, 200), st.integers(20, 200)),
    min_size=1,
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(boxes=boxes_strategy, wide=st.integers(10, 400), tall=st.integers(5, 120))
def test_placed_rectangles_never_overlap(boxes: list[Rect], wide: int, tall: int) -> None:
    """The pure layout, on any boxes that do not overlap each other: its rectangles are inside the image and
    touch no other face's box and no other rectangle, and lie wholly inside their own box or off it."""
    kept: list[Rect] = []
    for box in boxes:
        if not any(intersects(box, other) for other in kept):
            kept.append(box)
    size = (1200, 900)
    placements = place_labels(
        kept, [[(wide, tall), (wide // 2, tall * 2)]] * len(kept), [(wide // 2, tall)] * len(kept), size
    )
    placed = [(i, rect) for i, p in enumerate(placements) if p is not None for rect in p.rects]
    for i, rect in placed:
        assert rect[0] >= 0 and rect[1] >= 0 and rect[0] + rect[2] <= size[0] and rect[1] + rect[3] <= size[1]
        assert not any(intersects(rect, box) for j, box in enumerate(kept) if j != i)
        x, y, w, h = kept[i]
        inside = x <= rect[0] and y <= rect[1] and rect[0] + rect[2] <= x + w and rect[1] + rect[3] <= y + h
        assert inside or not intersects(rect, kept[i])
        assert not any(intersects(rect, other) for k, other in placed if k != i)


def test_the_legend_is_a_strip_under_the_image_and_videos_keep_their_size() -> None:
    image_size = SIZES["1MP"]
    image = np.full((image_size[1], image_size[0], 3), 120, np.uint8)
    faces = crowd(image_size, 12, 3, 150, 4)
    result = Result(faces)
    plan = plan_text(faces, [face.box for face in faces], image_size)  # type: ignore[arg-type]
    assert plan.legend
    drawn = draw_result(image, result)  # type: ignore[arg-type]
    assert drawn.shape[0] > image.shape[0] and drawn.shape[1:] == image.shape[1:]
    strip = drawn[image.shape[0] :]
    assert (strip != strip[0, 0]).any()  # the legend's text is drawn there
    frame = draw_result(image, result, legend=False)  # type: ignore[arg-type]
    assert frame.shape == image.shape
    assert (frame != image).any()


def test_a_face_filling_the_image_has_its_text_inside_it() -> None:
    """A crop predicted as one face (``--detector none``): no room outside the box, so the text goes inside it and
    the annotated copy keeps the image's size."""
    image = np.full((240, 320, 3), 90, np.uint8)
    face = Face((0, 0, 320, 240))
    plan = plan_text([face], [face.box], (320, 240))  # type: ignore[list-item]
    assert not plan.legend and "".join(item.text for item in plan.faces[0]).endswith("Disgust}")
    assert draw_result(image, Result([face])).shape == image.shape  # type: ignore[arg-type]
