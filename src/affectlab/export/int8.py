"""int8 quantisation of an exported ONNX model with ONNX Runtime.

Two modes, kept as data so the CLI can list them:

* ``static`` (default): per-channel int8 weights and uint8 activations in QDQ form, with activation ranges
  calibrated on face crops. ORT fuses this into integer convolutions, about 1.7x faster than fp32 for MobileNetV2
  on a 2-core AVX-512 VNNI CPU.
* ``dynamic``: int8 weights, activations quantised at run time. Needs no data, but ORT runs its convolutions as
  ``ConvInteger``, which measured about 9x *slower* than fp32 on a 2-core AVX2 CPU for MobileNetV2; it only shrinks
  the file. Kept for users who want the smaller file without calibration images.

Calibration images are treated as face crops (resized to the model's input). A run whose data is still where it
trained calibrates on its own validation faces by default; otherwise, without a folder, synthetic demo faces are
drawn, and real crops (``--calibration``) calibrate better.

Weights are quantised to 7 bits (``reduce_range``) in both modes. On x86 CPUs without VNNI (AVX2-only laptops and
cloud VMs), ONNX Runtime multiplies uint8 activations by int8 weights with ``vpmaddubsw``, which adds two products
into a saturating int16: 255 x 127 x 2 overflows it, 255 x 64 x 2 = 32640 does not. With 8-bit weights the same file gave
67.5% top-class agreement with fp32 on an AVX2 CPU against 88.2% on a VNNI one (affectnet-3999 test crops);
with 7-bit weights both give 85.8%, bit for bit the same outputs, so a file behaves the same wherever it runs.
uint8 weights (U8U8) also avoid the overflow but measured 84.2% and run slower. Every export is checked against
fp32 on its calibration crops on the exporting machine, and refused below ``MIN_INT8_AGREEMENT``.
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
from affectlab.runtime.backends import ONNX_INPUT

__all__ = [
    "MIN_INT8_AGREEMENT",
    "QUANTIZATION_MODES",
    "agreement_report",
    "calibration_images",
    "check_mode",
    "int8_kernel",
    "is_run_with_split",
    "quantize",
    "run_data_available",
    "run_faces",
]

log = logging.getLogger(__name__)

QUANTIZATION_MODES = ("static", "dynamic")
MAX_CALIBRATION_IMAGES = 256
_CALIBRATION_BATCH = 16
#: Smallest top-class agreement with fp32, on the calibration crops, that an int8 export may have. It catches
#: broken arithmetic, not rounding: the worst case measured, benchmarks/predict.py's model (ImageNet trunk, untrained
#: head, so its classes are near ties), agrees 77% on its calibration crops with 7-bit weights, while with 8-bit
#: weights on an AVX2 CPU it agreed 67.5% on the test crops; a trained model agrees 97% (tests/test_onnx.py).
MIN_INT8_AGREEMENT = 0.70
#: Largest mean |int8 - fp32| of valence/arousal (range [-1, 1]) on the calibration crops.
MAX_INT8_VA_ERROR = 0.10


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
    images, described = calibration_images(calibration, preprocess.input_size)
    if mode == "dynamic":
        quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8, reduce_range=True)
        meta: dict[str, Any] = {"quantization": "int8-dynamic"}
    else:
        quantize_static(
            str(prepared),
            str(out),
            _Reader(images, preprocess),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        meta = {"quantization": "int8-static-qdq", "calibration": described}
    meta["weight_bits"] = 7
    meta["int8_check"] = check_agreement(fp32, out, preprocess.normalise_numpy(images))
    return out, meta


def check_agreement(fp32: Path, int8: Path, images: np.ndarray) -> dict[str, Any]:
    """int8 against fp32 on ``images`` (normalised NCHW) on this CPU; refuses a model that is not close enough.

    The check runs where the file is made, so an export on a CPU whose int8 kernels misbehave is refused there
    rather than shipped; the result is stored in the metadata with the kernel that produced it.
    """
    from affectlab.runtime.backends import _make_session

    sessions = [_make_session(path, None) for path in (fp32, int8)]
    names = [o.name for o in sessions[0].get_outputs()]
    outputs = [
        {
            name: np.concatenate(parts)
            for name, parts in zip(
                names, zip(*(session.run(names, {ONNX_INPUT: images[i : i + 64]}) for i in range(0, len(images), 64)))
            )
        }
        for session in sessions
    ]
    reference, quantised = outputs
    return agreement_report(reference, quantised, int8_kernel())


def agreement_report(reference: dict[str, np.ndarray], quantised: dict[str, np.ndarray], kernel: str) -> dict[str, Any]:
    """int8 outputs against fp32 ones (named as the ONNX outputs), for any format; refuses a model that is not
    close enough. ``kernel`` names what ran the int8 arithmetic (stored with the report)."""
    from affectlab.runtime.backends import ONNX_OUTPUTS

    probs = ONNX_OUTPUTS["probs"]
    report: dict[str, Any] = {"images": len(next(iter(reference.values()))), "kernel": kernel}
    problems = []
    if probs in reference:
        agreement = float(np.mean(reference[probs].argmax(1) == quantised[probs].argmax(1)))
        report["class_agreement"] = round(agreement, 4)
        report["mean_abs_prob_diff"] = round(float(np.mean(np.abs(reference[probs] - quantised[probs]))), 5)
        if agreement < MIN_INT8_AGREEMENT:
            problems.append(
                f"top class agrees with fp32 on {agreement:.1%} of the calibration crops "
                f"(at least {MIN_INT8_AGREEMENT:.0%} needed)"
            )
    va = ONNX_OUTPUTS["va"]
    if va in reference:
        error = float(np.mean(np.abs(reference[va] - quantised[va])))
        report["mean_abs_va_diff"] = round(error, 5)
        if error > MAX_INT8_VA_ERROR:
            problems.append(
                f"valence/arousal differ from fp32 by {error:.3f} on average (at most {MAX_INT8_VA_ERROR} allowed)"
            )
    log.info("int8 check on %d calibration crops (%s): %s", report["images"], kernel, report)
    if problems:
        raise AffectlabError(
            f"int8 export refused on this CPU ({kernel}): {'; '.join(problems)}; "
            "use the fp32 model, or calibrate on real face crops with --calibration"
        )
    return report


def int8_kernel() -> str:
    """The family of ONNX Runtime's x86 int8 GEMM kernel that this CPU gets (MLAS picks it from CPUID).

    For the record in benchmarks, tests and the export metadata: int8 results may differ between these paths.
    """
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return f"{platform.machine()} (non-x86)"
    features = _cpu_features()
    if features.get("AVX512VNNI") or features.get("AVX512_VNNI"):
        return "x86 AVX-512 VNNI"
    if features.get("AVXVNNI") or features.get("AVX_VNNI"):
        return "x86 AVX-VNNI"
    if features.get("AVX512BW"):
        return "x86 AVX-512BW (no VNNI)"
    if features.get("AVX2"):
        return "x86 AVX2 (no VNNI)"
    return "x86 SSE4.1"


def _cpu_features() -> dict[str, bool]:
    # numpy's CPUID probe: unlike /proc/cpuinfo it tells what this process may use (also under an emulator).
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # pragma: no cover - numpy moved its private module
        return {}
    return dict(__cpu_features__)


def calibration_images(folder: str | Path | None, size: int) -> tuple[np.ndarray, str]:
    """Up to ``MAX_CALIBRATION_IMAGES`` face crops (uint8 NHWC RGB) and a description for the metadata.

    ``folder`` is a folder of face crops, or a run folder: its own validation faces, cropped as it trained on them,
    so the int8 ranges fit the faces the model was selected on (``export_model``'s default for a run whose data is
    still where it trained). None: synthetic demo faces.
    """
    if folder is None:
        from affectlab.data.demo import generate_demo_dataset

        log.warning("int8: calibrating and checking on synthetic demo faces; pass --calibration with real face crops")
        with tempfile.TemporaryDirectory(prefix="affectlab-calib-") as tmp:
            root = generate_demo_dataset(Path(tmp) / "faces", n_per_class=8, image_size=size, seed=0)
            return _read_folder(root / "images", size), "synthetic demo faces (64)"
    folder = Path(folder)
    if not folder.is_dir():
        raise AffectlabError(f"{folder}: calibration folder not found")
    if is_run_with_split(folder):
        return _validation_faces(folder, size)
    images = _read_folder(folder, size)
    return images, f"{folder.name} ({len(images)} images)"


def is_run_with_split(folder: Path) -> bool:
    """A trained run folder that says what it trained on and how it split it."""
    return all((folder / name).is_file() for name in ("config.yaml", "split.json"))


def run_data_available(run: Path) -> bool:
    """Whether ``run``'s datasets are still where it trained (the default calibration of its int8 exports)."""
    from affectlab.config import load_recipe

    if not is_run_with_split(run):
        return False
    data = load_recipe(run / "config.yaml").data
    paths = [source.path for source in data.sources] or [data.path]
    return all(path and Path(path).exists() for path in paths)


def _validation_faces(run: Path, size: int) -> tuple[np.ndarray, str]:
    """Up to ``MAX_CALIBRATION_IMAGES`` of the run's validation faces, evenly spaced over the split."""
    images, total = run_faces(run, "val", size, MAX_CALIBRATION_IMAGES)
    if not len(images):
        raise AffectlabError(f"{run}: its validation split is empty; pass --calibration with face crops")
    return images, f"validation faces of run {run.name} ({len(images)} of {total})"


def run_faces(run: Path, split: str, size: int, limit: int) -> tuple[np.ndarray, int]:
    """Up to ``limit`` faces of one of ``run``'s splits (uint8 NHWC at ``size``), evenly spaced over it and cropped
    as the run saw them, and the split's size: calibration uses its validation faces, checks its test faces."""
    import dataclasses

    from affectlab.config import load_recipe
    from affectlab.data.dataset import open_dataset

    cfg = load_recipe(run / "config.yaml")
    data_cfg = dataclasses.replace(cfg.data, split_file=str(run / "split.json"))
    images = open_dataset(data_cfg, size, splits=(split,)).splits[split].images
    pick = np.unique(np.linspace(0, len(images) - 1, min(len(images), limit)).astype(int))
    return np.ascontiguousarray(images[pick]), len(images)


def _read_folder(folder: Path, size: int) -> np.ndarray:
    from affectlab.runtime.sources import list_images

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
