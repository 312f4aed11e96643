"""Where each face's text goes on an annotated image, so that on a group photo no face's text covers another's.

A pure function of the face boxes, the sizes of their text blocks and the image size; drawing is annotate.py's
job. Faces are placed one after another (greedily): each face's text goes to the first spot, in a fixed order of
preference, that lies inside the image and touches neither any face's box nor any text already placed. The order
starts with the classic look (label above the box, the details below it), then the whole text below, above,
right and left of the box, each aligned to the box's left edge, its centre or its right edge, and last inside the
box (for a face that fills the photo). A face whose text fits nowhere gets its short text (the label alone) outside
the box or inside it; failing that it gets nothing here, and the caller lists it in a legend.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = ["Placement", "Rect", "Size", "intersects", "place_labels"]

Rect = tuple[int, int, int, int]  # x, y, width, height in pixels
Size = tuple[int, int]  # width, height in pixels


@dataclass(frozen=True)
class Placement:
    """Where a face's text goes: one rectangle per block placed (all the face's blocks, or its short one)."""

    rects: tuple[Rect, ...]
    short: bool = False


def intersects(a: Rect, b: Rect) -> bool:
    """Whether two rectangles share some area (touching edges do not count)."""
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def place_labels(
    boxes: Sequence[Rect],
    blocks: Sequence[Sequence[Size]],
    short: Sequence[Size | None],
    image_size: Size,
    gap: int = 2,
) -> list[Placement | None]:
    """A placement per face (``None``: nothing fits near it), in the order of ``boxes``.

    ``blocks[i]`` are face i's text blocks, stacked top to bottom (the first is its label line, placed apart above
    the box in the preferred layout); ``short[i]`` is the size of its short text, or None for none. Every returned
    rectangle is inside the image, and no rectangle intersects another face's box or another rectangle; a text
    overlaps its own face's box only by lying wholly inside it.
    """
    width, height = image_size
    taken: list[Rect] = []
    placements: list[Placement | None] = []
    for i, box in enumerate(boxes):
        blocked = [b for j, b in enumerate(boxes) if j != i] + taken
        found = _first_fit(_arrangements(box, blocks[i], gap, width, height), [*blocked, box], image_size)
        if found is None:  # a face filling the photo (a crop, ``--detector none``) has its text inside
            found = _first_fit(_inside(box, blocks[i], gap), blocked, image_size)
        placement = None if found is None else Placement(found)
        if placement is None and short[i] is not None:
            size = short[i]
            assert size is not None
            found = _first_fit(_arrangements(box, [size], gap, width, height), [*blocked, box], image_size)
            if found is None:
                found = _first_fit(_inside(box, [size], gap), blocked, image_size)
            placement = None if found is None else Placement(found, short=True)
        if placement is not None:
            taken += placement.rects
        placements.append(placement)
    return placements


def _first_fit(
    candidates: Iterator[tuple[Rect, ...]], blocked: Sequence[Rect], image_size: Size
) -> tuple[Rect, ...] | None:
    width, height = image_size
    for rects in candidates:
        inside = all(x >= 0 and y >= 0 and x + w <= width and y + h <= height for x, y, w, h in rects)
        if inside and not any(intersects(r, b) for r in rects for b in blocked):
            return rects
    return None


def _arrangements(box: Rect, blocks: Sequence[Size], gap: int, width: int, height: int) -> Iterator[tuple[Rect, ...]]:
    """Candidate placements of ``blocks`` around ``box``, best first."""
    bx, by, bw, bh = box
    if not blocks:
        return
    wide = max(w for w, _ in blocks)
    tall = sum(h for _, h in blocks)
    lefts = dict.fromkeys(min(max(0, x), max(0, width - wide)) for x in (bx, bx + (bw - wide) // 2, bx + bw - wide))
    for x in lefts:
        if len(blocks) > 1:  # the label above the box, the rest below it
            yield ((x, by - blocks[0][1] - gap, *blocks[0]), *_stack(x, by + bh + gap, blocks[1:]))
    for x in lefts:
        yield _stack(x, by + bh + gap, blocks)
    for x in lefts:
        yield _stack(x, by - gap - tall, blocks)
    for y in dict.fromkeys((by, min(max(0, by + bh - tall), max(0, height - tall)))):
        yield _stack(bx + bw + gap, y, blocks)
        yield _stack(bx - gap - wide, y, blocks)


def _inside(box: Rect, blocks: Sequence[Size], gap: int) -> Iterator[tuple[Rect, ...]]:
    """Candidate placements of ``blocks`` inside ``box`` (where they fit in it): the label at its top, the rest at
    its bottom; or all at its bottom."""
    bx, by, bw, bh = box
    if not blocks or max(w for w, _ in blocks) + 2 * gap > bw or sum(h for _, h in blocks) + 2 * gap > bh:
        return
    x, bottom = bx + gap, by + bh - gap
    if len(blocks) > 1:
        yield ((x, by + gap, *blocks[0]), *_stack(x, bottom - sum(h for _, h in blocks[1:]), blocks[1:]))
    yield _stack(x, bottom - sum(h for _, h in blocks), blocks)


def _stack(x: int, y: int, blocks: Sequence[Size]) -> tuple[Rect, ...]:
    rects = []
    for w, h in blocks:
        rects.append((x, y, w, h))
        y += h
    return tuple(rects)
