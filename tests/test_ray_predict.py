"""``affectlab predict --engine ray``: a local Ray cluster (2 CPUs) runs the Ray Data pipeline, and its Parquet
records equal the single-process ``predict``'s (faces found, crops, labels, probabilities, V/A, errors): on a few
scenes through the Haar detector, and on 1,000 demo faces (each image one face) at scale."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import pyarrow.parquet as pq
import pytest
from skimage import data
from support.models import demo_faces, no_face_image, scene

from affectlab.cli import main
from affectlab.data.demo import generate_demo_dataset
from affectlab.runtime.results import CSV_COLUMNS, EYE_COLUMNS, POSE_COLUMNS, flat_record, record_columns

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow  # starting Ray takes 10-20 s


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """One local Ray cluster with 2 CPUs for the module (starting Ray is the slow part)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def records(path: Path, columns: tuple[str, ...] = CSV_COLUMNS) -> list[dict]:
    """``predict``'s JSON lines as the flat records the Parquet file holds."""
    return [flat_record(json.loads(line), columns) for line in path.read_text().splitlines()]


def test_ray_batch_prediction_equals_single_process_predict(
    run: Path, work: Path, tmp_path: Path, cluster: None
) -> None:
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
    expected = records(tmp_path / "one.jsonl")
    assert main([*common, "--engine", "ray", "--out", str(tmp_path / "ray.parquet")]) == 1
    got = pq.read_table(tmp_path / "ray.parquet").to_pylist()
    assert sum(r["face"] is not None for r in expected) >= 3 and any(r["no_face"] for r in expected)
    assert [r["source"] for r in got] == [r["source"] for r in expected]  # input order, one row per face
    for mine, theirs in zip(got, expected, strict=True):
        assert mine == pytest.approx(theirs, abs=1e-5), mine["source"]


def test_ray_adds_the_pose_and_eye_columns_as_predict_does(run: Path, tmp_path: Path, cluster: None) -> None:
    """``--eyes`` (and ``--landmarks``) on the Ray engine: FaceMesh and Iris run on the detect actors, and the
    Parquet rows equal predict's records over the same columns (pose, gaze, openness; no blinks on photos)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    portrait = cv2.resize(data.astronaut(), None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)[:512, 192:704]
    cv2.imwrite(str(photos / "astronaut.png"), cv2.cvtColor(portrait, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(photos / "empty.png"), no_face_image())
    common = ["predict", str(run), str(photos), "--detector", "haar", "--backend", "torch", "--quiet"]
    assert main([*common, "--eyes", "--out", str(tmp_path / "one.jsonl")]) == 0
    columns = record_columns(eyes=True)
    expected = records(tmp_path / "one.jsonl", columns)
    assert main([*common, "--eyes", "--engine", "ray", "--out", str(tmp_path / "ray.parquet")]) == 0
    table = pq.read_table(tmp_path / "ray.parquet")
    assert tuple(table.column_names) == columns == CSV_COLUMNS + POSE_COLUMNS + EYE_COLUMNS
    got = table.to_pylist()
    face = next(r for r in expected if r["face"] == 0)
    assert face["gaze_yaw"] is not None and face["openness_left"] > 0 and face["mesh_score"] > 0.9
    assert face["blinks"] is None  # blinks are counted on video only
    assert [r["source"] for r in got] == [r["source"] for r in expected]
    degrees = {"yaw", "pitch", "roll", "gaze_yaw", "gaze_pitch", "eye_yaw", "eye_pitch"}  # rounded to 0.01
    for mine, theirs in zip(got, expected, strict=True):  # other threads in the actors: the last digit may differ
        assert {k: mine[k] for k in degrees} == pytest.approx({k: theirs[k] for k in degrees}, abs=0.02)
        rest = set(columns) - degrees
        assert {k: mine[k] for k in rest} == pytest.approx({k: theirs[k] for k in rest}, abs=1e-4), mine["source"]
    assert main([*common, "--landmarks", "--engine", "ray", "--out", str(tmp_path / "mesh.parquet")]) == 0
    assert tuple(pq.read_table(tmp_path / "mesh.parquet").column_names) == CSV_COLUMNS + POSE_COLUMNS


def test_ray_scores_a_thousand_demo_images_as_predict_does(run: Path, tmp_path: Path, cluster: None) -> None:
    """1,000 small demo faces (32 px, each image one face: ``--detector none``) through both engines."""
    faces = generate_demo_dataset(tmp_path / "demo", n_per_class=125, image_size=32, seed=0) / "images"
    common = ["predict", str(run), str(faces), "--detector", "none", "--quiet", "--batch-size", "64"]
    assert main([*common, "--out", str(tmp_path / "one.jsonl")]) == 0
    expected = records(tmp_path / "one.jsonl")
    assert main([*common, "--engine", "ray", "--out", str(tmp_path / "ray.parquet")]) == 0
    got = pq.read_table(tmp_path / "ray.parquet").to_pylist()
    assert len(expected) == 1000 and all(r["face"] == 0 and r["error"] is None for r in expected)
    assert len({r["label"] for r in expected}) > 1  # the model's outputs vary: a mix-up of rows would show
    assert [r["source"] for r in got] == [r["source"] for r in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert mine == pytest.approx(theirs, abs=1e-5), mine["source"]
