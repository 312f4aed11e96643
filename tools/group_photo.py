"""Make a group photo from a public-domain face, offline, for the docs' annotated group example.

Usage::

    python tools/group_photo.py group.png
    affectlab predict group.png --save-annotated annotated/

The face is Eileen Collins' in scikit-image's ``data.astronaut()`` (a NASA photo, public domain). Seventeen copies,
flipped, scaled, turned a little and toned differently, stand in three close rows on a 1280x800 canvas, as a
crowded group photo does; that is what the annotated picture's text layout has to cope with.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from skimage import data

#: Head and shoulders of the astronaut (x0, y0, x1, y1) in the 512x512 photo.
_HEAD = (130, 0, 330, 250)
#: (centre x, top y, height, flipped, degrees turned, gamma) of each person: three rows.
_PEOPLE = [
    (150, 17, 213, False, -2, 1.3),
    (300, 25, 215, False, 2, 0.75),
    (450, 25, 203, False, -4, 1.15),
    (600, 27, 221, False, -1, 0.85),
    (750, 17, 215, True, 7, 1.3),
    (900, 22, 218, True, 5, 0.75),
    (1050, 15, 219, False, -7, 1.0),
    (220, 240, 251, False, 0, 1.3),
    (390, 252, 247, False, -1, 1.15),
    (560, 258, 239, False, -5, 1.0),
    (730, 243, 226, True, -4, 1.0),
    (900, 253, 249, False, -3, 1.15),
    (1070, 256, 251, True, -2, 1.3),
    (300, 508, 278, False, 7, 1.0),
    (490, 490, 292, True, 2, 0.85),
    (680, 500, 295, False, 2, 1.3),
    (870, 493, 287, False, 3, 1.3),
]


def group_photo() -> np.ndarray:
    """The 1280x800 RGB group photo."""
    photo = data.astronaut()
    canvas = np.full((800, 1280, 3), (58, 66, 80), np.uint8)  # a plain wall: the PNG stays small
    x0, y0, x1, y1 = _HEAD
    head = photo[y0:y1, x0:x1]
    for cx, top, height, flipped, degrees, gamma in _PEOPLE:
        person = cv2.flip(head, 1) if flipped else head
        turn = cv2.getRotationMatrix2D((person.shape[1] / 2, person.shape[0] / 2), degrees, 1.0)
        person = cv2.warpAffine(person, turn, person.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)
        person = (255 * (person / 255.0) ** gamma).astype(np.uint8)
        width = round(height * person.shape[1] / person.shape[0])
        person = cv2.resize(person, (width, height), interpolation=cv2.INTER_AREA)
        left = cx - width // 2
        part = canvas[top : top + height, left : left + width]
        part[:] = person[: part.shape[0], : part.shape[1]]
    return canvas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="PNG or JPEG file to write")
    args = parser.parse_args(argv)
    cv2.imwrite(str(args.out), cv2.cvtColor(group_photo(), cv2.COLOR_RGB2BGR))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
