"""Issue 26, photos: a run folder runs from its ONNX export, photos are decoded at the scale each step needs, and
worker threads prepare the next photos, all without changing the records.

The photos are drawn faces pasted into scenes, written as JPEG (one at 4x the size, so that reduced DCT decodes
are used), PNG, a JPEG whose pixels are stored sideways with an EXIF orientation tag, and a file that is not an
image.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from PIL import Image
from support.models import demo_faces, make_run, one_torch_thread, scene

import affectlab
from affectlab.errors import AffectlabError
from affectlab.export.onnx import CHECKPOINT_HASH_KEY, checkpoint_sha256, onnx_matches
from affectlab.runtime.decode import ScaledPhoto, photo_faces
from affectlab.runtime.faces import WholeImageDetector, crop_faces
from affectlab.runtime.results import Detection, ImageResult

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

EXIF_ORIENTATION = 0x0112


@pytest.fixture(scope="module")
def photos(work: Path) -> Path:
    faces = demo_faces(work)
    folder = work / "photos"
    folder.mkdir()
    picture = scene([faces[0], faces[3], faces[5]], [(40, 100), (250, 60), (430, 220)])
    cv2.imwrite(str(folder / "a_small.jpg"), picture, [cv2.IMWRITE_JPEG_QUALITY, 92])
    big = cv2.resize(picture, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(folder / "b_big.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 92])
    cv2.imwrite(str(folder / "c_lossless.png"), scene([faces[1], faces[7]], [(60, 60), (380, 200)]))
    (folder / "d_broken.jpg").write_bytes(b"not an image at all")
    _write_sideways(folder / "e_rotated.jpg", big)
    return folder


def _write_sideways(path: Path, bgr: np.ndarray) -> None:
    """The picture stored rotated a quarter turn, with EXIF orientation 6 saying how to turn it back upright."""
    stored = cv2.rotate(bgr, cv2.ROTATE_90_COUNTERCLOCKWISE)
    image = Image.fromarray(cv2.cvtColor(stored, cv2.COLOR_BGR2RGB))
    exif = image.getexif()
    exif[EXIF_ORIENTATION] = 6  # "rotate 90 degrees clockwise to display"
    image.save(path, "JPEG", quality=92, exif=exif.tobytes())


def _records(summary: affectlab.PredictSummary) -> list[tuple[str, str | None, list[tuple[object, ...]]]]:
    assert summary.results is not None
    return [
        (r.source, r.error, [(f.box, f.label, np.asarray(f.probs), f.valence, f.arousal) for f in r])
        for r in summary.results
    ]


def _assert_same(a: list, b: list, atol: float) -> None:  # type: ignore[type-arg]
    assert [(s, e, len(f)) for s, e, f in a] == [(s, e, len(f)) for s, e, f in b]
    for (_, _, faces_a), (_, _, faces_b) in zip(a, b):
        for (box_a, label_a, p_a, v_a, ar_a), (box_b, label_b, p_b, v_b, ar_b) in zip(faces_a, faces_b):
            assert box_a == box_b and label_a == label_b
            np.testing.assert_allclose(p_a, p_b, atol=atol, rtol=0)
            assert abs(v_a - v_b) <= atol and abs(ar_a - ar_b) <= atol


@pytest.fixture(scope="module")
def exported(run: Path) -> Path:
    """The run's ONNX export, made by the first ``load`` (the default backend) and reused after."""
    assert not (run / "model.onnx").exists()
    predictor = affectlab.load(run, detector="none")
    assert predictor.info.source == str(run)  # records name the run the user gave, not its export
    assert predictor.backend.path == run / "model.onnx"
    return run / "model.onnx"


def test_a_run_folder_runs_from_its_onnx_export_with_the_records_of_pytorch(
    run: Path, exported: Path, photos: Path
) -> None:
    meta = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    assert json.loads(meta["affectlab"])[CHECKPOINT_HASH_KEY] == checkpoint_sha256(run / "model.pt")
    mtime = exported.stat().st_mtime_ns
    fast = _records(affectlab.predict(run, photos))  # the default: ONNX Runtime, from the export
    assert exported.stat().st_mtime_ns == mtime  # exported once, then reused
    assert affectlab.load(run).info.runtime == "onnxruntime"
    assert affectlab.load(run, backend="torch").info.runtime == "pytorch"
    assert sum(len(f) for _, _, f in fast) >= 8 and fast[3][1] is not None  # faces found; the broken file
    # float32 sums in another order, through the test model's logits scaled 30x (support.models): the largest
    # difference measured was 3e-5 on random crops; the export's own check allows 1e-4.
    _assert_same(fast, _records(affectlab.predict(run, photos, backend="torch", workers=1)), atol=5e-5)
    assert affectlab.export(run) == exported  # `affectlab export` sees the same export: nothing to redo
    with pytest.raises(AffectlabError, match="--backend torch needs a run folder"):
        affectlab.load(exported, backend="torch")


def test_a_foreign_model_onnx_is_never_used_nor_replaced(work: Path, exported: Path) -> None:
    other = make_run(work / "other", seed=1)
    foreign = Path(shutil.copy2(exported, other / "model.onnx"))  # another checkpoint's export, where its own goes
    before = foreign.read_bytes()
    predictor = affectlab.load(other, detector="none")
    cached = predictor.backend.path  # exported into the cache instead
    assert cached.parent.name == checkpoint_sha256(other / "model.pt") and foreign.read_bytes() == before
    assert cached.is_relative_to(Path(os.environ["AFFECTLAB_CACHE"]))
    crops = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    mine = affectlab.load(other, detector="none", backend="torch").backend.run(crops)
    np.testing.assert_allclose(predictor.backend.run(crops)["probs"], mine["probs"], atol=1e-4)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_run_folder_gets_its_export_in_the_cache(work: Path) -> None:
    run = make_run(work / "read-only", seed=2)
    run.chmod(0o555)
    try:
        source = affectlab.load(run, detector="none").backend.path
    finally:
        run.chmod(0o755)
    assert not (run / "model.onnx").exists() and source.is_relative_to(Path(os.environ["AFFECTLAB_CACHE"]))


def test_an_old_export_without_the_checkpoint_hash_is_trusted_only_when_newer(
    work: Path, run: Path, exported: Path
) -> None:
    old = work / "old-export"
    old.mkdir()
    checkpoint = Path(shutil.copy2(run / "model.pt", old / "model.pt"))
    proto = onnx.load(str(exported))
    for prop in proto.metadata_props:  # as exports before this release wrote it
        if prop.key == "affectlab":
            bundle = json.loads(prop.value)
            del bundle[CHECKPOINT_HASH_KEY]
            prop.value = json.dumps(bundle)
    onnx.save(proto, str(old / "model.onnx"))
    assert affectlab.load(old).backend.path == old / "model.onnx"
    digest = checkpoint_sha256(checkpoint)
    os.utime(checkpoint, (checkpoint.stat().st_atime, (old / "model.onnx").stat().st_mtime + 60))
    assert not onnx_matches(old / "model.onnx", checkpoint, digest)  # the checkpoint changed after the export
    assert onnx_matches(exported, checkpoint, digest)  # the hash, when recorded, decides


def test_workers_give_the_records_of_one_thread_in_input_order(exported: Path, photos: Path) -> None:
    model = exported
    inputs = sorted(photos.iterdir()) * 3  # more items than the workers hold in flight
    one = _records(affectlab.predict(model, inputs, workers=1, batch_size=4))
    three = _records(affectlab.predict(model, inputs, workers=3, batch_size=4))
    assert [source for source, _, _ in three] == [str(p) for p in inputs]
    assert [error is not None for _, error, _ in three] == [p.name == "d_broken.jpg" for p in inputs]
    _assert_same(one, three, atol=0)  # the same crops in the same batches: the same numbers


def test_reduced_decodes_give_the_crops_of_the_full_decode_within_resampling(exported: Path, photos: Path) -> None:
    """The model input from the 1/2 DCT decode against the one cut from the full decode with the same boxes: the
    difference is resampling only (a mean of 1.0-1.3 grey levels here; benchmarks/folder_speed.py measures it on
    photos, with the probability difference of a trained model: the test model's outputs swing with any change of
    its input, by design, see support.models). The photo is decoded once: the detector and the crops share it."""
    predictor = affectlab.load(exported, workers=1)
    size = predictor.info.preprocess.input_size
    for name in ("b_big.jpg", "e_rotated.jpg"):
        photo = ScaledPhoto.read(photos / name)
        found, crops = photo_faces(photo, predictor.detector, size, predictor.margin)
        assert photo.size == (2560, 1920) and len(found) == 3
        assert photo.decodes == [2]  # one entropy decoding, for the detector and the crops alike
        full = cv2.cvtColor(cv2.imread(str(photos / name)), cv2.COLOR_BGR2RGB)  # OpenCV turns it upright
        reference = crop_faces(full, found, size, predictor.margin)
        difference = np.abs(crops.astype(np.float64) - reference).mean(axis=(1, 2, 3))
        assert 0 < difference.max() < 2.0, difference  # not the same pixels, but the same faces
    upright, rotated = (predictor.predict(photos / n) for n in ("b_big.jpg", "e_rotated.jpg"))
    _same_boxes(upright, rotated)  # the EXIF orientation is honoured


class _FixedFace:
    """A detector (as users may pass one) that finds one face of ``side`` full-size pixels at the photo's centre,
    whatever decode it is given; it scans at 480 px like the built-in ones."""

    name, max_side = "fixed", 480

    def __init__(self, full_width: int, side: int) -> None:
        self.full_width, self.side = full_width, side

    def detect(self, image: np.ndarray) -> list[Detection]:
        scale = image.shape[1] / self.full_width
        side = round(self.side * scale)
        return [Detection(((image.shape[1] - side) // 2, (image.shape[0] - side) // 2, side, side))]


@pytest.mark.parametrize(("side", "decodes"), [(400, [2]), (100, [1, 2])])
def test_a_big_photo_is_decoded_again_only_for_a_face_the_first_decode_is_too_coarse_for(
    photos: Path, side: int, decodes: list[int]
) -> None:
    """The first decode (1/2 of 2560 px) serves the detector and every crop with at least the model's 64 px across
    it; a face of 100 px would have 50 there, so the photo is decoded again in full for it."""
    photo = ScaledPhoto.read(photos / "b_big.jpg")
    found, crops = photo_faces(photo, _FixedFace(2560, side), 64, 0.0)
    assert photo.decodes == decodes
    full = cv2.cvtColor(cv2.imread(str(photos / "b_big.jpg")), cv2.COLOR_BGR2RGB)
    difference = np.abs(crops.astype(np.float64) - crop_faces(full, found, 64, 0.0)).mean()
    assert difference == 0 if decodes == [1, 2] else 0 < difference < 2.0


def test_a_whole_image_face_is_decoded_once_at_the_scale_its_crop_needs(photos: Path) -> None:
    """``--detector none``: one decode with twice the input across (2560 px at 1/1 for 1000 px, at 1/8 for 64),
    the crop equal to the one from that decode."""
    for size, decodes in ((1000, [1]), (64, [8])):
        photo = ScaledPhoto.read(photos / "b_big.jpg")
        found, crops = photo_faces(photo, WholeImageDetector(), size, 0.0)
        assert photo.decodes == decodes and found[0].box == (0, 0, 2560, 1920)
        np.testing.assert_array_equal(
            crops, crop_faces(photo.decode(decodes[0]), [(0, 0, *photo.decode(decodes[0]).shape[1::-1])], size, 0.0)
        )


def _same_boxes(a: ImageResult, b: ImageResult, pixels: int = 8) -> None:
    """The same faces, with boxes within a few pixels (JPEG blocks fall differently on a rotated picture)."""
    assert len(a) == len(b) > 0
    for face_a, face_b in zip(a, b):
        assert np.abs(np.subtract(face_a.box, face_b.box)).max() <= pixels, (face_a.box, face_b.box)


def test_the_full_decode_switch_a_whole_image_detector_and_landmarks(exported: Path, photos: Path) -> None:
    model = exported
    big = photos / "b_big.jpg"
    _same_boxes(
        affectlab.load(model, workers=1).predict(big), affectlab.load(model, decode_at_scale=False).predict(big)
    )
    whole = affectlab.load(model, detector="none", workers=1)
    assert whole.predict(big)[0].box == (0, 0, 2560, 1920)  # full-size coordinates from a 1/8 decode
    meshed = affectlab.load(model, landmarks=True).predict(photos / "a_small.jpg")  # FaceMesh is PyTorch
    assert len(meshed) == 3 and all(face.mesh is not None for face in meshed)
