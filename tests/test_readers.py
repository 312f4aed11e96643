from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from support.data import write_affectnet

from affectlab.data.readers import read_dataset
from affectlab.errors import AffectlabError


def test_affectnet_layout_parses_unicode_scalars_and_excludes_non_emotions(tmp_path: Path) -> None:
    root = write_affectnet(
        tmp_path / "d",
        [("0", 1, "0.5", "0.25"), ("1", 9, 0.1, 0.1), ("2", 3, -2, -2), ("3", 7, "-0.635", "0.635"), ("4", 10, 0, 0)],
    )
    result = read_dataset(root)
    assert [s.id for s in result.samples] == ["0", "3"]
    assert result.samples[1].expression == 7
    assert result.samples[1].valence == pytest.approx(-0.635)
    assert result.excluded == {"with non-emotion code 8-10": 2, "with valence/arousal sentinel -2": 1}
    assert "2 with non-emotion code 8-10" in result.exclusion_summary()


def test_numeric_npy_values_are_accepted(tmp_path: Path) -> None:
    root = write_affectnet(tmp_path / "d", [("5", 2, -0.4, 0.3)])
    for key, value in (("exp", 2), ("val", -0.4), ("aro", 0.3)):
        np.save(root / "annotations" / f"5_{key}.npy", np.array(value))
    assert read_dataset(root).samples[0].expression == 2


def test_bad_annotations_are_reported_per_file(tmp_path: Path) -> None:
    root = write_affectnet(
        tmp_path / "d", [("0", 1, 0.5, 0.5), ("1", 2, None, 0.1), ("2", "x", 0.1, 0.1), ("3", 2, 1.7, 0.1)]
    )
    result = read_dataset(root)
    assert [s.id for s in result.samples] == ["0"]
    messages = [str(p) for p in result.problems]
    assert any("1.jpg" in m and "missing annotation 1_val.npy" in m for m in messages)
    assert any("malformed annotation" in m for m in messages)
    assert any("valence 1.7 outside [-1, 1]" in m for m in messages)
    with pytest.raises(AffectlabError, match="missing annotation"):
        read_dataset(root, on_bad_sample="error")


def test_csv_layout_keeps_face_boxes(tmp_path: Path) -> None:
    images = tmp_path / "Manually_Annotated_Images" / "1"
    images.mkdir(parents=True)
    cv2.imwrite(str(images / "a.jpg"), np.zeros((40, 60, 3), np.uint8))
    rows = [
        ["1/a.jpg", 5, 5, 20, 30, 1, 0.5, 0.2],
        ["1/a.jpg", 0, 0, 10, 10, 8, 0.0, 0.0],
        ["1/missing.jpg", 0, 0, 10, 10, 1, 0.5, 0.2],
    ]
    csv_path = tmp_path / "training.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "subDirectory_filePath",
                "face_x",
                "face_y",
                "face_width",
                "face_height",
                "facial_landmarks",
                "expression",
                "valence",
                "arousal",
            ]
        )
        writer.writerows([[*r[:5], "", *r[5:]] for r in rows])
    result = read_dataset(csv_path, image_root=tmp_path / "Manually_Annotated_Images")
    assert len(result.samples) == 1 and result.samples[0].box == (5, 5, 20, 30)
    assert result.excluded["with non-emotion code 8-10"] == 1
    assert any("training.csv:4" in str(p) and "not found" in str(p) for p in result.problems)


def test_class_folders_with_aliases_and_override(tmp_path: Path) -> None:
    for folder in ("angry", "happy", "smiling"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "x.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(AffectlabError, match="'smiling' is not an emotion class"):
        read_dataset(tmp_path)
    result = read_dataset(tmp_path, class_map={"smiling": "Happy"})
    assert sorted(s.expression for s in result.samples) == [1, 1, 6]
    assert not result.has_va


def test_wrong_path_and_empty_dataset_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(AffectlabError, match="no such file or folder"):
        read_dataset(tmp_path / "nope")
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    with pytest.raises(AffectlabError, match="dataset is empty"):
        read_dataset(tmp_path)
