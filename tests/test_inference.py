"""Python API and `affectlab predict` on images: detection, cropping, batching, records, bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from support.models import demo_faces, make_run, no_face_image, one_torch_thread, scene

import affectlab
from affectlab.cli import main
from affectlab.errors import AffectlabError
from affectlab.runtime.faces import crop_faces, make_detector
from affectlab.runtime.predictor import AffectPredictor, Item
from affectlab.runtime.results import CSV_COLUMNS

# Demo faces (160 px) that both detectors find when pasted into a scene; checked in test_detectors_find_faces.
DETECTABLE = [0, 2, 3, 4, 5]


_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


@pytest.fixture(scope="module")
def faces(work: Path) -> list[np.ndarray]:
    return demo_faces(work)


@pytest.fixture(scope="module")
def photos(work: Path, faces: list[np.ndarray]) -> Path:
    """A folder tree: two scenes with faces, a nested no-face image, a corrupt file and a non-image file."""
    root = work / "photos"
    (root / "nested").mkdir(parents=True)
    cv2.imwrite(str(root / "two_faces.jpg"), scene([faces[0], faces[2]], [(40, 100), (400, 200)]))
    cv2.imwrite(str(root / "one_face.png"), scene([faces[3]], [(200, 150)]))
    cv2.imwrite(str(root / "nested" / "empty.png"), no_face_image())
    (root / "nested" / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.mark.parametrize("name", ["haar", "yuface"])
def test_detectors_find_faces_where_they_were_drawn(name: str, faces: list[np.ndarray]) -> None:
    if name == "yuface":
        pytest.importorskip("yuface", reason="the yuface wheel exists for x86-64 Linux/Windows, Python 3.11 only")
    detector = make_detector(name)
    positions = [(40, 100), (400, 200)]
    image = cv2.cvtColor(scene([faces[0], faces[2]], positions), cv2.COLOR_BGR2RGB)
    found = detector.detect(image)
    assert len(found) == 2
    for face, (px, py) in zip(found, positions):  # sorted left to right, centre inside the drawn face
        x, y, w, h = face.box
        assert px < x + w / 2 < px + 160 and py < y + h / 2 < py + 160
        assert 80 < w < 200
        if name == "yuface":  # five landmarks: eyes above the nose, nose above the mouth, all inside the box
            (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks  # type: ignore[misc]
            assert lx < nx < rx and max(ly, ry) < ny < min(mly, mry) and mlx < mrx and 0.5 < face.score <= 1
            assert all(x <= px_ <= x + w and y <= py_ <= y + h for px_, py_ in face.landmarks)  # type: ignore[union-attr]
    hits = [len(detector.detect(cv2.cvtColor(scene([faces[i]], [(200, 150)]), cv2.COLOR_BGR2RGB))) for i in DETECTABLE]
    assert hits == [1] * len(DETECTABLE)
    assert detector.detect(no_face_image()) == []


def test_crops_are_squared_with_margin_and_whole_images_are_not_padded() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    image[40:60, 90:110] = 255  # a white 20 px square "face"
    tight, loose = crop_faces(image, [(90, 40, 20, 20)], 32, 0.0), crop_faces(image, [(90, 40, 20, 20)], 32, 0.5)
    assert tight.shape == loose.shape == (1, 32, 32, 3)
    assert tight.mean() > 250 and 255 / 4 - 5 < loose.mean() < 255 / 4 + 5  # margin 0.5: side doubles
    whole = crop_faces(image, [d.box for d in make_detector("none").detect(image)], 32, 0.5)
    assert abs(whole.mean() - image.mean()) < 3  # no margin: same content, only squared by edge padding
    with pytest.raises(AffectlabError, match="unknown face detector 'yolo'; available: auto, yuface, haar, none"):
        make_detector("yolo")


def test_predict_accepts_paths_pil_and_rgb_or_bgr_arrays(run: Path, photos: Path) -> None:
    predictor = affectlab.load(run)
    path = photos / "one_face.png"
    bgr = cv2.imread(str(path))
    results = [
        predictor.predict(path),
        predictor.predict(str(path)),
        predictor.predict(Image.open(path)),
        predictor.predict(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)),
        predictor.predict(bgr, channels="bgr"),
    ]
    reference = results[0]
    assert len(reference) == 1 and reference[0].label in affectlab.load(run).info.class_names
    for result in results[1:]:
        assert len(result) == 1 and result[0].box == reference[0].box
        np.testing.assert_allclose(result[0].probs, reference[0].probs, atol=1e-6)
    swapped = predictor.predict(bgr)  # BGR given as RGB: a different picture, so different numbers
    assert not np.allclose(swapped[0].probs, reference[0].probs, atol=1e-3)
    with pytest.raises(AffectlabError, match="must be uint8"):
        predictor.predict(bgr.astype(np.float32))


def test_list_input_keeps_order_and_reports_no_face_and_errors(run: Path, photos: Path) -> None:
    results = affectlab.load(run).predict(
        [photos / "two_faces.jpg", photos / "nested" / "empty.png", photos / "nested" / "corrupt.jpg", photos / "x.png"]
    )
    assert [len(r) for r in results] == [2, 0, 0, 0]
    assert [r.no_face for r in results] == [False, True, False, False]
    assert results[2].error is not None and "not a readable image" in results[2].error
    assert results[3].error is not None and "cannot read" in results[3].error
    assert results[1].records() == [
        {
            "source": str(photos / "nested" / "empty.png"),
            "frame": None,
            "time_s": None,
            "face": None,
            "track_id": None,
            "box": None,
            "landmarks": None,
            "label": None,
            "confidence": None,
            "probs": None,
            "valence": None,
            "arousal": None,
            "prediction_set": None,
            "valence_interval": None,
            "arousal_interval": None,
            "no_face": True,
            "error": None,
        }
    ]
    record = results[0].records()[1]
    assert record["face"] == 1 and len(record["probs"]) == 8 and abs(sum(record["probs"].values()) - 1) < 1e-4
    assert record["label"] == max(record["probs"], key=record["probs"].get)
    kept = affectlab.load(run).predict(photos / "two_faces.jpg", keep_images=True)
    drawn = kept.plot()
    assert drawn.shape == (480, 640, 3) and np.abs(drawn.astype(int) - kept.image).mean() > 1


class _CountingBackend:
    """The real backend, recording the batch size of every call."""

    def __init__(self, inner: object) -> None:
        self.inner, self.info, self.calls = inner, inner.info, []  # type: ignore[attr-defined]

    def run(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        self.calls.append(len(crops))
        return self.inner.run(crops)  # type: ignore[attr-defined]


def test_faces_are_batched_across_images_with_the_same_results(run: Path, faces: list[np.ndarray]) -> None:
    images = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in faces[:10]]
    backend = _CountingBackend(affectlab.load(run).backend)
    batched = AffectPredictor(backend, detector="none", batch_size=4).predict(images)
    assert backend.calls == [4, 4, 2]
    single = AffectPredictor(affectlab.load(run).backend, detector="none", batch_size=1).predict(images)
    for a, b in zip(batched, single):
        np.testing.assert_allclose(a[0].probs, b[0].probs, atol=1e-5)
        assert a[0].valence == pytest.approx(b[0].valence, abs=1e-5)
    labels = {r[0].label for r in batched}
    assert len(labels) > 1, "the test model should not give every face the same label"


@pytest.mark.parametrize("workers", [1, 2])
def test_stream_reads_at_most_one_batch_ahead(run: Path, faces: list[np.ndarray], workers: int) -> None:
    consumed = []

    def items():  # type: ignore[no-untyped-def]
        for i in range(20):
            consumed.append(i)
            yield Item(f"frame{i}", cv2.cvtColor(faces[i % 8], cv2.COLOR_BGR2RGB), frame=i)

    stream = affectlab.load(run, detector="none", batch_size=4, workers=workers).predict_stream(items())
    first = next(stream)
    # one batch, plus what the worker threads hold in flight (two items each; none with one worker)
    ahead = 0 if workers == 1 else 2 * workers
    assert first.frame == 0 and 4 <= len(consumed) <= 4 + ahead
    assert [r.frame for r in stream] == list(range(1, 20))


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_outputs_follow_the_models_task(work: Path, faces: list[np.ndarray], task: str) -> None:
    predictor = affectlab.load(make_run(work, task), detector="none")
    face = predictor.predict(cv2.cvtColor(faces[0], cv2.COLOR_BGR2RGB))[0]
    assert predictor.info.task == task
    if task == "classification":
        assert face.label is not None and face.valence is None and face.arousal is None
    else:
        assert face.label is None and face.probs is None and -5 < face.valence < 5 and face.arousal is not None


def test_cli_predict_folder_to_jsonl_with_annotated_images(
    run: Path, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, annotated = tmp_path / "results.jsonl", tmp_path / "annotated"
    code = main(["predict", str(run), str(photos), "--out", str(out), "--save-annotated", str(annotated)])
    assert code == 1  # one corrupt file: reported, the rest processed
    records = [json.loads(line) for line in out.read_text().splitlines()]
    by_source: dict[str, list[dict]] = {}
    for record in records:
        by_source.setdefault(Path(record["source"]).name, []).append(record)
    assert sorted(by_source) == ["corrupt.jpg", "empty.png", "one_face.png", "two_faces.jpg"]  # notes.txt skipped
    assert [r["face"] for r in by_source["two_faces.jpg"]] == [0, 1]
    assert by_source["empty.png"][0]["no_face"] is True and by_source["corrupt.jpg"][0]["error"]
    written = sorted(p.relative_to(annotated).as_posix() for p in annotated.rglob("*") if p.is_file())
    assert written == ["photos/nested/empty.png", "photos/one_face.png", "photos/two_faces.jpg"]
    drawn = cv2.imread(str(annotated / "photos" / "two_faces.jpg"))
    original = cv2.imread(str(photos / "two_faces.jpg"))
    assert drawn.shape == original.shape and np.abs(drawn.astype(int) - original).mean() > 1
    assert "1 error(s), first:" in capsys.readouterr().err


def test_annotated_images_with_the_same_name_do_not_overwrite_each_other(
    run: Path, photos: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "one_face.png").write_bytes((photos / "nested" / "empty.png").read_bytes())
    annotated = tmp_path / "annotated"
    assert (
        main(
            [
                "predict",
                str(run),
                str(photos / "one_face.png"),
                str(other / "one_face.png"),
                "--detector",
                "none",
                "--save-annotated",
                str(annotated),
                "--quiet",
            ]
        )
        == 0
    )
    first, second = cv2.imread(str(annotated / "one_face.png")), cv2.imread(str(annotated / "one_face-2.png"))
    assert first.shape == cv2.imread(str(photos / "one_face.png")).shape
    assert second.shape == cv2.imread(str(photos / "nested" / "empty.png")).shape
    assert not np.array_equal(first, second)


def test_cli_predict_csv_has_fixed_columns(run: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    assert (
        main(
            [
                "predict",
                str(run),
                str(photos / "one_face.png"),
                str(photos / "nested" / "empty.png"),
                "--detector",
                "none",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    rows = list(csv.reader(out.read_text().splitlines()))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 3
    row = dict(zip(rows[0], rows[1]))
    assert row["face"] == "0" and row["w"] == "640" and row["h"] == "480" and row["error"] == ""
    assert abs(sum(float(row[f"p_{n}"]) for n in affectlab.load(run).info.class_names) - 1) < 1e-4


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "{tmp}/missing-run", "{photo}"], "missing-run: model not found"),
        (["predict", "{tmp}/missing.onnx", "{photo}"], "missing.onnx: model not found"),
        (["predict", "{run}", "{photo}", "--out", "{tmp}/r.xlsx"], "unknown output format '.xlsx'; use .jsonl or .csv"),
        (["predict", "{run}", "{photo}", "--detector", "dlib"], "unknown face detector 'dlib'"),
        # Index 2000 asks OpenCV for camera 0 through its image-sequence backend (index // 100 * 100 == CAP_IMAGES),
        # which has no cameras: the open fails on every machine without touching a real camera.
        (["predict", "{run}", "--webcam", "2000"], "webcam 2000: cannot open camera"),
        (["predict", "{run}"], "give at least one INPUT"),
        (["predict", "{run}", "{photo}", "--batch-size", "0"], "--batch-size must be at least 1"),
    ],
)
def test_cli_fatal_errors_are_one_line(
    argv: list[str], message: str, run: Path, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = {"tmp": tmp_path, "run": run, "photo": photos / "one_face.png"}
    code = main([a.format(**values) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("affectlab: error: ") and message in err[0]
    assert not (tmp_path / "r.xlsx").exists()


def test_importing_affectlab_loads_nothing_heavy() -> None:
    heavy = "{'torch', 'cv2', 'onnxruntime'}"
    code = f"import sys, affectlab; print(affectlab.__version__, sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0.1.0 []"
    assert callable(affectlab.load)


def test_aligned_crops_level_the_eyes() -> None:
    """Two 'eyes' drawn on a tilted line: in the aligned crop they sit level, in the plain crop they do not."""
    from affectlab.runtime.faces import eye_angle
    from affectlab.runtime.results import Detection

    image = np.full((300, 400, 3), 90, np.uint8)
    left, right = (170, 120), (230, 142)  # 20 degrees, the right eye lower
    for x, y in (left, right):
        cv2.circle(image, (x, y), 6, (255, 255, 255), -1)
    found = Detection((150, 90, 100, 120), 0.9, (left, right, (200, 160), (180, 190), (220, 190)))
    assert eye_angle(found.landmarks) == pytest.approx(20.1, abs=0.1)  # type: ignore[arg-type]

    def dots(crop: np.ndarray) -> list[tuple[float, float]]:
        _, _, _, centres = cv2.connectedComponentsWithStats((crop[..., 0] > 200).astype(np.uint8))
        return sorted((float(x), float(y)) for x, y in centres[1:])

    plain, aligned = crop_faces(image, [found], 160, 0.2)[0], crop_faces(image, [found], 160, 0.2, align=True)[0]
    (px0, py0), (px1, py1) = dots(plain)
    (ax0, ay0), (ax1, ay1) = dots(aligned)
    assert py1 - py0 > 15 and abs(ay1 - ay0) < 1.5
    assert abs(np.hypot(ax1 - ax0, ay1 - ay0) - np.hypot(px1 - px0, py1 - py0)) < 2  # same scale
    assert np.array_equal(plain, crop_faces(image, [found.box], 160, 0.2)[0])  # boxes and detections alike


def test_a_missing_yuface_is_one_clear_line_and_auto_falls_back_to_haar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yuface", None)  # import yuface now raises ImportError, as where not installed
    with pytest.raises(AffectlabError, match=r"'yuface' needs the yuface package: pip install 'affectlab\[yuface\]'"):
        make_detector("yuface")
    assert make_detector("auto").name == "haar"
