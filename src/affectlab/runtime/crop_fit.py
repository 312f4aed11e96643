"""The model's crop protocol, fitted on its own training images: where the default detector puts its box in them.

Training images are face crops made by someone else's pipeline (AffectNet's are loose, FER-2013's tight). At run
time the face comes from affectlab's detector, cropped around its box with the model's margin. If the two crops
differ, the model sees faces larger or smaller, higher or lower than it learnt them: issue 22 measured 3 points
of accuracy lost to that alone (py-feat's protocol, .482 on the dataset crops against .453 through the detector).

So after training the default detector is run once over (a sample of) the training images, and the crop that
would give back each whole training image from its detected box is measured: its margin (half the image side
over the box side, less one half) and the offset of its centre from the box's, in box sides. Their medians
become the model's ``Preprocess.face_margin`` and ``face_shift``, so ``predict``, ``serve``, the page, Ray and the
ONNX pipeline cut a detected face as the training images were cut. The spread (interquartile range) is the
detector's own variation, reported beside it. Where the detector finds too few faces (synthetic drawings, images
that are not face crops), the model keeps the default crop and the report says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from affectlab.data.samples import FaceArray
from affectlab.runtime.faces import DEFAULT_DETECTOR, FaceDetector, make_detector

__all__ = ["MIN_FOUND", "CropFit", "fit_crop"]

#: Share of the sampled training images in which the detector must find a face for the fit to be used.
MIN_FOUND = 0.5
#: Training images sampled for the fit (seeded): enough for medians to within a fraction of a pixel.
SAMPLE = 1000
#: Each training image is set in a grey border of this fraction of its side before detection: a face that fills
#: its crop would otherwise get a box clipped at the image edge, which no face in a photo gets. (On AffectNet's
#: crops the box's height is the image's side either way; its centre moves by 4% of the side.)
PAD = 0.25


@dataclass(frozen=True)
class CropFit:
    """The fitted crop (None where not fitted), with what it was fitted on and the detector's variation."""

    margin: float | None
    shift: tuple[float, float] | None
    detector: str
    sampled: int
    found: int
    margin_iqr: float | None = None
    shift_iqr: tuple[float, float] | None = None
    note: str = ""

    @property
    def fitted(self) -> bool:
        return self.margin is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "fitted": self.fitted,
            "margin": self.margin,
            "shift": None if self.shift is None else list(self.shift),
            "detector": self.detector,
            "sampled": self.sampled,
            "found": self.found,
            "margin_iqr": self.margin_iqr,
            "shift_iqr": None if self.shift_iqr is None else list(self.shift_iqr),
            "note": self.note,
        }


def fit_crop(images: FaceArray | np.ndarray, detector: str | FaceDetector = DEFAULT_DETECTOR, seed: int = 0) -> CropFit:
    """Fit margin and shift on ``images`` (N x S x S x 3 uint8 training faces, square as training decodes them).

    In each image the largest detected face counts; images without one are left out (and counted). The margin
    may come out negative: the crop is then tighter than the detector's box.
    """
    finder = make_detector(detector)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(images), size=min(SAMPLE, len(images)), replace=False))
    margins, shifts = [], []
    for i in chosen:
        image = np.asarray(images[i])
        height, width = image.shape[:2]
        pad = round(PAD * max(height, width))
        found = finder.detect(cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128,) * 3))
        if not found:
            continue
        x, y, w, h = max(found, key=lambda d: d.box[2] * d.box[3]).box
        x, y, side = x - pad, y - pad, float(max(w, h))
        margins.append((max(width, height) / side - 1.0) / 2.0)
        shifts.append(((width / 2.0 - (x + w / 2.0)) / side, (height / 2.0 - (y + h / 2.0)) / side))
    name = getattr(finder, "name", str(detector))
    if len(chosen) == 0 or len(margins) < MIN_FOUND * len(chosen):
        note = (
            f"the {name} detector found a face in {len(margins)} of {len(chosen)} training images (under "
            f"{MIN_FOUND:.0%}): the default crop is kept"
        )
        return CropFit(None, None, name, len(chosen), len(margins), note=note)
    m, s = np.asarray(margins), np.asarray(shifts)
    q = np.percentile(s, [25, 75], axis=0)
    return CropFit(
        margin=round(float(np.median(m)), 4),
        shift=(round(float(np.median(s[:, 0])), 4), round(float(np.median(s[:, 1])), 4)),
        detector=name,
        sampled=len(chosen),
        found=len(margins),
        margin_iqr=round(float(np.subtract(*np.percentile(m, [75, 25]))), 4),
        shift_iqr=(round(float(q[1, 0] - q[0, 0]), 4), round(float(q[1, 1] - q[0, 1]), 4)),
    )
