"""The crop protocol: fitted on training faces, stored with the model, and used by every path that crops.

The detector here finds a bright rectangle (the "face") on a dark ground by thresholding: its boxes are exact,
so the geometry of the fit and of the crops can be checked to the pixel. Real detectors vary; the fit takes
medians for that reason, and ``fit_crop`` on the demo data is exercised by the training tests.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from affectlab.data.images import square_crop
from affectlab.data.transforms import Preprocess
from affectlab.models.checkpoint import load_checkpoint, save_face_crop
from affectlab.runtime.crop_fit import fit_crop
from affectlab.runtime.decode import ScaledPhoto, photo_faces
from affectlab.runtime.faces import Detection, crop_faces
from tests.support.models import make_run

SIDE = 100
FACE = (15, 12, 60, 80)  # x, y, w, h of the bright "face" in each training crop
#: What the fit must give back: the crop side is SIDE = 80 * (1 + 2 * margin); its centre (50, 50) is the face's
#: centre (45, 52) moved by (5, -2) pixels = (0.0625, -0.025) face sides.
MARGIN, SHIFT = 0.125, (0.0625, -0.025)


class BrightBoxDetector:
    """Finds the bounding box of the pixels brighter than 200 (one face, or none)."""

    name = "bright-box"

    def detect(self, image: np.ndarray) -> list[Detection]:
        mask = (image.max(axis=2) > 200).astype(np.uint8)
        if not mask.any():
            return []
        x, y, w, h = cv2.boundingRect(mask)
        return [Detection((int(x), int(y), int(w), int(h)), 0.99)]


def training_face(seed: int) -> np.ndarray:
    """A training crop: dark textured ground, the bright face at ``FACE``, some texture inside the face."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 90, (SIDE, SIDE, 3), dtype=np.uint8)
    x, y, w, h = FACE
    image[y : y + h, x : x + w] = rng.integers(210, 256, (h, w, 3), dtype=np.uint8)
    return image


def test_the_fit_recovers_the_crop_that_gives_back_each_training_image() -> None:
    images = np.stack([training_face(seed) for seed in range(30)])
    fit = fit_crop(images, BrightBoxDetector())
    assert fit.fitted and fit.found == fit.sampled == 30
    assert fit.margin == pytest.approx(MARGIN) and fit.shift == pytest.approx(SHIFT)
    assert fit.margin_iqr == 0 and fit.shift_iqr == (0, 0)


def test_a_detected_face_is_cut_as_its_training_crop_on_every_path(tmp_path: Path) -> None:
    face = training_face(7)
    scene = np.full((300, 400, 3), 40, np.uint8)
    scene[150 : 150 + SIDE, 220 : 220 + SIDE] = face
    (box,) = [d.box for d in BrightBoxDetector().detect(scene)]
    assert box == (235, 162, 60, 80)
    # the one crop: the fitted margin and shift take the detector's box back to the training crop, to the pixel
    assert np.array_equal(square_crop(scene, box, MARGIN, SHIFT), face)
    # predict and serve (crop_faces), and the decode-at-scale path of predict, the page and Ray (photo_faces)
    assert np.array_equal(crop_faces(scene, [box], SIDE, MARGIN, shift=SHIFT)[0], face)
    png = tmp_path / "scene.png"
    cv2.imwrite(str(png), cv2.cvtColor(scene, cv2.COLOR_RGB2BGR))
    found, crops = photo_faces(ScaledPhoto.read(png), BrightBoxDetector(), SIDE, MARGIN, shift=SHIFT)
    assert [d.box for d in found] == [box] and np.array_equal(crops[0], face)
    # without the shift the crop is off by the fitted offset: the test can fail
    assert not np.array_equal(crop_faces(scene, [box], SIDE, MARGIN)[0], face)


def test_too_few_faces_keep_the_default_crop() -> None:
    blank = np.zeros((10, 64, 64, 3), np.uint8)
    images = np.concatenate([blank, np.stack([training_face(s)[:64, :64] for s in range(3)])])
    fit = fit_crop(images, BrightBoxDetector())
    assert not fit.fitted and fit.found == 3 and fit.sampled == 13
    assert "3 of 13" in fit.note and "default crop is kept" in fit.note


def test_the_fitted_crop_travels_with_the_checkpoint_and_the_onnx_export(tmp_path: Path) -> None:
    from affectlab.export.onnx import export_onnx
    from affectlab.runtime.predictor import load

    run = make_run(tmp_path / "run")
    save_face_crop(run / "model.pt", MARGIN, SHIFT)
    _, meta = load_checkpoint(run)
    assert (meta.preprocess.face_margin, meta.preprocess.face_shift) == (MARGIN, SHIFT)
    onnx = export_onnx(run, tmp_path / "model.onnx")
    for path in (run, onnx):
        predictor = load(path, detector="none")
        assert (predictor.margin, predictor.shift) == (MARGIN, SHIFT)


def test_a_model_without_a_recorded_crop_keeps_the_crop_it_was_trained_with() -> None:
    old = Preprocess.from_dict({"input_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3, "face_margin": 0.2})
    assert (old.face_margin, old.face_shift) == (0.2, (0.0, 0.0))
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    box = (40, 30, 50, 60)
    assert np.array_equal(square_crop(image, box, 0.2, old.face_shift), square_crop(image, box, 0.2))
