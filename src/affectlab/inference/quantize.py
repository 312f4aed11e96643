"""int8 quantisation of an exported ONNX model with ONNX Runtime.

Two modes, kept as data so the CLI can list them:

* ``static`` (default): per-channel int8 weights and uint8 activations in QDQ form, with activation ranges
  calibrated on face crops. ORT fuses this into integer convolutions, about 2x faster than fp32 for MobileNetV2
  on an AVX2 CPU.
* ``dynamic``: int8 weights, activations quantised at run time. Needs no data, but ORT runs its convolutions as
  ``ConvInteger``, which measured about 9x *slower* than fp32 on a 2-core AVX2 CPU for MobileNetV2; it only shrinks
  the file. Kept for users who want the smaller file without calibration images.

Calibration images are treated as face crops (resized to the model's input). Without a folder, synthetic demo
faces are drawn; real crops from the training data calibrate better and are recommended (``--calibration``).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from affectlab.data.images import read_rgb, resize_square
from affectlab.data.transforms import Preprocess
from affectlab.errors import AffectlabError
from affectlab.inference.backends import ONNX_INPUT

__all__ = ["quantize", "QUANTIZATION_MODES", "check_mode", "calibration_images"]

log = logging.getLogger(__name__)

QUANTIZATION_MODES = ("static", "dynamic")
MAX_CALIBRATION_IMAGES = 256
_CALIBRATION_BATCH = 16


def check_mode(mode: str) -> None:
    if mode not in QUANTIZATION_MODES:
        raise AffectlabError(f"unknown quantization {mode!r}; available: {', '.join(QUANTIZATION_MODES)}")


def quantize(
    fp32: Path, tmp: Path, mode: str, preprocess: Preprocess, calibration: str | Path | None = None
) -> tuple[Path, dict[str, Any]]:
    """Quantise ``fp32`` into ``tmp``; returns the new file and the metadata that describes what was done."""
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_dynamic, quantize_static

    check_mode(mode)
    prepared, out = tmp / "prepared.onnx", tmp / f"int8-{mode}.onnx"
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    if mode == "dynamic":
        quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8)
        return out, {"quantization": "int8-dynamic"}
    images, described = calibration_images(calibration, preprocess.input_size)
    quantize_static(
        str(prepared), str(out), _Reader(images, preprocess), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )
    return out, {"quantization": "int8-static-qdq", "calibration": described}


def calibration_images(folder: str | Path | None, size: int) -> tuple[np.ndarray, str]:
    """Up to ``MAX_CALIBRATION_IMAGES`` face crops (uint8 NHWC RGB) and a description for the metadata."""
    if folder is None:
        from affectlab.data.demo import generate_demo_dataset

        log.warning("int8: calibrating on synthetic demo faces; pass --calibration with real face crops for accuracy")
        with tempfile.TemporaryDirectory(prefix="affectlab-calib-") as tmp:
            root = generate_demo_dataset(Path(tmp) / "faces", n_per_class=8, image_size=size, seed=0)
            return _read_folder(root / "images", size), "synthetic demo faces (64)"
    folder = Path(folder)
    if not folder.is_dir():
        raise AffectlabError(f"{folder}: calibration folder not found")
    images = _read_folder(folder, size)
    return images, f"{folder.name} ({len(images)} images)"


def _read_folder(folder: Path, size: int) -> np.ndarray:
    from affectlab.inference.sources import list_images

    files = list_images(folder)
    if not files:
        raise AffectlabError(f"{folder}: no images for calibration")
    if len(files) > MAX_CALIBRATION_IMAGES:  # evenly spaced: a sorted folder is often grouped by class
        files = [files[i] for i in np.linspace(0, len(files) - 1, MAX_CALIBRATION_IMAGES).astype(int)]
    crops = []
    for path in files:
        try:
            crops.append(resize_square(read_rgb(path), size))
        except AffectlabError as exc:
            log.warning("calibration: skipping %s", exc)
    if not crops:
        raise AffectlabError(f"{folder}: none of the calibration images could be read")
    return np.stack(crops)


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol: ``get_next()`` returns feeds until None."""

    def __init__(self, images: np.ndarray, preprocess: Preprocess) -> None:
        self._batches = iter(range(0, len(images), _CALIBRATION_BATCH))
        self._images, self._preprocess = images, preprocess

    def get_next(self) -> dict[str, np.ndarray] | None:
        start = next(self._batches, None)
        if start is None:
            return None
        return {ONNX_INPUT: self._preprocess.normalise_numpy(self._images[start : start + _CALIBRATION_BATCH])}
