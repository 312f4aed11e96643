"""The page's photo view: the annotated photo is drawn at the size the page shows it, its faces numbered as in the
table beside it. (The browser tests in test_web_page.py check the size on the rendered page.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import numpy as np
from support.models import demo_faces, scene

import affectlab
from affectlab.runtime.annotate import draw_result
from affectlab.runtime.results import ImageResult
from affectlab.serve.page import PHOTO_SIDE, _photo_entry


def test_photo_is_drawn_at_the_page_size_with_faces_numbered_as_in_the_table(run: Path, tmp_path: Path) -> None:
    drawn = demo_faces(tmp_path, n_per_class=1)
    faces = [cv2.resize(drawn[i], (300, 300)) for i in (0, 2)]
    photo = tmp_path / "large.png"
    cv2.imwrite(str(photo), scene(faces, [(300, 500), (1900, 900)], size=(1800, 2700)))
    predictor = affectlab.load(run)
    results: list[ImageResult] = []

    async def predict(image: np.ndarray) -> ImageResult:
        results.append(predictor.predict(image))
        return results[-1]

    entry = asyncio.run(_photo_entry(predict, photo))
    result = results[0]
    assert len(result) == 2
    annotated = entry["annotated"]
    assert max(annotated.shape[:2]) == PHOTO_SIDE and annotated.shape[:2] == (480, 720)
    assert [face["title"].split(":")[0] for face in entry["faces"]] == ["face 0", "face 1"]
    # Numbering changes the label band above each face's box, and nothing else.
    plain = draw_result(cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB), result, fit=PHOTO_SIDE)
    changed = np.argwhere(np.any(plain != annotated, axis=2))
    assert len(changed)
    tops = [round(face.box[1] * PHOTO_SIDE / 2700) for face in result]
    assert all(any(0 < top - y < 40 for top in tops) for y in changed[:, 0])
