"""Faces in scenes: the scene generator puts each face where it says, the same way for the same seed, and the
section counts found, missed and false boxes right and scores them end to end."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from support.models import INPUT_SIZE, demo_faces, make_run, one_torch_thread

from affectlab.config import ModelConfig
from affectlab.data.prepared import SplitData
from affectlab.evaluation.evaluate import score
from affectlab.evaluation.faces_in_scenes import (
    SCENE_SPEC,
    faces_in_scenes_section,
    match_boxes,
    score_scenes,
)
from affectlab.evaluation.metrics import ccc
from affectlab.evaluation.scenes import Scene, scenes_of
from affectlab.models.checkpoint import load_checkpoint
from affectlab.models.outputs import predict_images
from affectlab.runtime.results import FaceResult

single_thread = pytest.fixture(autouse=True)(one_torch_thread)


def _flat_faces(n: int, size: int = 64) -> tuple[list[np.ndarray], np.ndarray]:
    """n faces of one distinct colour each, so a scene pixel says which face was pasted there."""
    i = np.arange(n)
    colours = np.stack([(37 * i) % 256, (11 * i + 40) % 256, 255 - (37 * i) % 256], axis=1).astype(np.uint8)
    return [np.full((size, size, 3), c, np.uint8) for c in colours], colours


def test_every_face_is_pasted_once_inside_its_box_and_the_seed_fixes_the_scenes() -> None:
    faces, colours = _flat_faces(23)
    spec = SCENE_SPEC
    scenes = list(scenes_of(faces, seed=3, spec=spec))
    assert [i for s in scenes for i in s.sources] == list(range(23))  # every face once, in order
    assert all(len(s.sources) <= spec.faces[1] for s in scenes) and len(scenes) >= 23 / spec.faces[1]
    for scene in scenes:
        assert scene.image.shape == (spec.height, spec.width, 3) and scene.image.dtype == np.uint8
        for k, ((x, y, w, h), source) in enumerate(zip(scene.boxes, scene.sources)):
            assert w == h and spec.min_face <= w <= spec.max_face
            assert 0 <= x and x + w <= spec.width and 0 <= y and y + h <= spec.height
            for j, (a, b, c, d) in enumerate(scene.boxes):  # no two faces overlap
                assert j == k or x + w <= a or a + c <= x or y + h <= b or b + d <= y
            # the middle of the box is the face's own colour (pasted there, rotated about the box centre)
            middle = scene.image[y + h // 2 - h // 8 : y + h // 2 + h // 8, x + w // 2 - w // 8 : x + w // 2 + w // 8]
            assert np.abs(middle.astype(int) - colours[source]).max() <= 1
    again = list(scenes_of(faces, seed=3, spec=spec))
    assert [s.boxes for s in again] == [s.boxes for s in scenes]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(again, scenes))
    other = list(scenes_of(faces, seed=4, spec=spec))
    assert [s.boxes for s in other] != [s.boxes for s in scenes]


def test_matching_is_one_to_one_at_the_iou_threshold() -> None:
    true = [(0, 0, 100, 100), (200, 0, 100, 100), (400, 0, 100, 100)]
    found = [
        (205, 5, 100, 100),  # face 1, IoU .82
        (10, 10, 100, 100),  # face 0, IoU .68
        (0, 0, 90, 90),  # face 0 again, IoU .81: the pairing of largest total IoU keeps this one
        (460, 0, 100, 100),  # overlaps face 2 at IoU .25: a false box, and face 2 is missed
    ]
    matches = match_boxes(true, found)
    assert matches.pairs == [(0, 2), (1, 0)]
    assert matches.missed == [2] and matches.false == [1, 3]
    assert match_boxes(true, []).missed == [0, 1, 2] and match_boxes([], found).false == [0, 1, 2, 3]


def _result(box: tuple[int, int, int, int], label: int, va: tuple[float, float]) -> FaceResult:
    probs = np.full(8, 0.02)
    probs[label] = 0.86
    return FaceResult(box=box, probs=probs, valence=va[0], arousal=va[1])


def test_found_missed_and_false_boxes_are_counted_and_scored_end_to_end() -> None:
    # five faces in two scenes; labels 0..4
    n = 5
    expression = np.arange(n)
    va = np.array([[0.5, 0.2], [-0.4, 0.6], [0.1, -0.3], [0.7, 0.5], [-0.6, -0.2]], dtype=np.float32)
    split = SplitData([f"s{i}" for i in range(n)], np.zeros((n, 8, 8, 3), np.uint8), expression, va)
    scenes = [
        Scene(np.empty(0), [(0, 0, 100, 100), (200, 0, 100, 100), (400, 0, 80, 80)], sources=[0, 1, 2]),
        Scene(np.empty(0), [(0, 200, 120, 120), (300, 200, 60, 60)], sources=[3, 4]),
    ]
    found = [
        [
            _result((2, 2, 100, 100), 0, (0.4, 0.1)),  # face 0, right
            _result((205, 0, 100, 100), 6, (-0.3, 0.5)),  # face 1, wrong label
            _result((600, 300, 50, 50), 2, (0.0, 0.0)),  # nothing there: a false box; face 2 missed
        ],
        [
            _result((0, 205, 120, 120), 3, (0.6, 0.4)),  # face 3, right
            _result((300, 200, 60, 60), 4, (-0.5, -0.1)),  # face 4, right
            _result((302, 202, 60, 60), 1, (0.0, 0.0)),  # face 4 again: the second box is a false one
        ],
    ]
    clean = {"accuracy": 0.8, "valence_ccc": 0.5, "arousal_ccc": 0.4}
    section = score_scenes(scenes, found, split, clean)
    assert (section["faces"], section["scenes"], section["found"], section["missed"]) == (5, 2, 4, 1)
    assert section["false_boxes"] == 2 and section["found_share"] == 0.8
    assert section["found_faces"]["accuracy"] == 0.75  # 3 of the 4 found
    assert section["end_to_end"]["accuracy"] == 0.6  # 3 of 5: the missed face is wrong
    assert section["accuracy_ratio"] == pytest.approx(0.6 / 0.8)
    predicted = np.array([[0.4, 0.1], [-0.3, 0.5], [0.0, 0.0], [0.6, 0.4], [-0.5, -0.1]])  # missed: (0, 0)
    assert section["end_to_end"]["valence_ccc"] == pytest.approx(ccc(va[:, 0], predicted[:, 0]))
    kept = [0, 1, 3, 4]
    assert section["found_faces"]["arousal_ccc"] == pytest.approx(ccc(va[kept, 1], predicted[kept, 1]))
    assert section["sentence"].startswith("The detector found 4 of 5 faces in 2 scenes (2 false boxes)")


def test_the_section_runs_the_scenes_through_the_runtime_predictor(tmp_path: Path) -> None:
    model, meta = load_checkpoint(make_run(tmp_path))
    faces = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in demo_faces(tmp_path, 2, INPUT_SIZE)]
    n = len(faces)
    split = SplitData([f"s{i}" for i in range(n)], np.stack(faces), np.arange(n) % 8,
                      np.random.default_rng(0).uniform(-0.8, 0.8, (n, 2)).astype(np.float32))  # fmt: skip
    outputs = predict_images(model, split.images, meta.preprocess)
    config = ModelConfig(backbone="mobilenet_v2", task="multitask", input_size=INPUT_SIZE)
    document = score(outputs, split, config, "test", tta_flip=False)
    section = faces_in_scenes_section(model, meta, split, document, tta_flip=False, detector="haar")
    assert section["detector"] == "haar" and section["faces"] == n
    assert section["found"] + section["missed"] == n and section["found"] > n // 2
    assert section["clean"]["accuracy"] == document["classification"]["accuracy"]
    end, found = section["end_to_end"]["accuracy"], section["found_faces"]["accuracy"]
    assert end * n == pytest.approx(found * section["found"])  # the missed faces count as wrong
    assert set(section["found_faces"]) >= {"accuracy", "valence_ccc", "arousal_ccc", "ece"}
    assert faces_in_scenes_section(model, meta, split, document, tta_flip=False, detector="haar") == section


def test_the_study_report_gets_a_faces_in_scenes_table(tmp_path: Path) -> None:
    from affectlab.reports.study_report import _markdown, _scenes_blocks

    section = {
        "seed": 0,
        "detector": "yuface",
        "margin": 0.2,
        "scenes_spec": "640x480 scenes, 2-4 faces each at 48-200 px, rotated up to 10 degrees",
        "min_iou": 0.5,
        "faces": 600,
        "scenes": 200,
        "found": 589,
        "missed": 11,
        "false_boxes": 0,
        "found_faces": {"accuracy": 0.433, "valence_ccc": 0.6, "arousal_ccc": 0.5, "ece": 0.05, "set_coverage": 0.88},
        "end_to_end": {"accuracy": 0.425, "valence_ccc": 0.59, "arousal_ccc": 0.49},
        "accuracy_ratio": 0.425 / 0.495,
    }
    runs = [{"name": "best_seed0", "metrics": {"faces_in_scenes": section}}]
    md = _markdown(_scenes_blocks({"runs": runs}), tmp_path)
    assert "## Faces in scenes: the test faces through the detector" in md
    assert "| best_seed0 | 589 / 600 | 0 | 0.433 / 0.425 | 0.86 | 0.600 / 0.500 | 0.590 / 0.490 | 0.050 | 0.880 |" in md
    assert "the yuface detector, the model's crop (margin 0.2)" in md
    assert _scenes_blocks({"runs": [{"name": "old", "metrics": {}}]}) == []  # runs scored before the section
