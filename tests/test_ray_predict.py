"""``affectlab predict --engine ray``: a local Ray cluster (2 CPUs) runs the Ray Data pipeline, and its Parquet
records equal the single-process ``predict``'s (faces found, crops, labels, probabilities, V/A, errors)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pyarrow.parquet as pq
import pytest
from support.models import demo_faces, no_face_image, scene

from affectlab.cli import main
from affectlab.inference.results import flat_record

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow  # starting Ray takes 10-20 s


def test_ray_batch_prediction_equals_single_process_predict(run: Path, work: Path, tmp_path: Path) -> None:
    faces = demo_faces(work)
    photos = tmp_path / "photos"
    (photos / "nested").mkdir(parents=True)
    cv2.imwrite(str(photos / "two_faces.jpg"), scene([faces[0], faces[2]], [(40, 100), (400, 200)]))
    cv2.imwrite(str(photos / "one_face.png"), scene([faces[3]], [(200, 150)]))
    for i, face in enumerate(faces[4:9]):
        cv2.imwrite(str(photos / "nested" / f"crop{i}.png"), cv2.resize(face, (200, 200)))
    cv2.imwrite(str(photos / "nested" / "empty.png"), no_face_image())
    (photos / "nested" / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    common = ["predict", str(run), str(photos), "--detector", "haar", "--quiet", "--batch-size", "4"]
    assert main([*common, "--out", str(tmp_path / "one.jsonl")]) == 1  # the corrupt file: an error record
    expected = [flat_record(json.loads(line)) for line in (tmp_path / "one.jsonl").read_text().splitlines()]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main([*common, "--engine", "ray", "--out", str(tmp_path / "ray.parquet")]) == 1
    finally:
        ray.shutdown()
    got = pq.read_table(tmp_path / "ray.parquet").to_pylist()
    assert sum(r["face"] is not None for r in expected) >= 3 and any(r["no_face"] for r in expected)
    assert [r["source"] for r in got] == [r["source"] for r in expected]  # input order, one row per face
    for mine, theirs in zip(got, expected, strict=True):
        assert mine == pytest.approx(theirs, abs=1e-5), mine["source"]
