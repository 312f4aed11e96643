"""Convert dlib's face-recognition ResNet into affectlab's packaged PyTorch weights, and record dlib's own outputs.

Usage (needs ``pip install 'affectlab[face-convert]'``, i.e. dlib-bin and scikit-image; not needed at run time)::

    pip download --no-deps face-recognition-models==0.3.0 && tar xzf face_recognition_models-0.3.0.tar.gz
    python tools/convert_dlib_face.py \\
        face_recognition_models-0.3.0/face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat

The file must be the published one (SHA-256 checked). It is dlib's own serialization, read here with numpy
following dlib's sources (``dlib/serialize.h``, ``dlib/dnn/core.h``, ``layers.h``, ``input.h``, ``loss.h``):

- integers: a control byte (low 4 bits: how many bytes follow, bit 7: negative) then the magnitude, little-endian;
  floats: two such integers, the mantissa *before* the exponent (value = mantissa * 2**exponent; serialize.h's
  comment says the opposite, its code does this); strings: a length then bytes; bools: ASCII '1' or '0';
  tensors: version 2, four dimensions, then raw little-endian float32.
- every layer writes a version number, then its sub-network, then its own fields, so the file holds a run of
  version numbers and then the layers' fields from the input upwards. Tag, skip and add_prev layers carry no
  weights: where they are is taken from the network's C++ type (``ANET``), never guessed from the bytes.

The weights go into ``FaceResNet29``; the module must reproduce dlib's descriptors (computed here with dlib-bin's
``face_recognition_model_v1.compute_face_descriptor`` on 150 x 150 chips, no jitter) and is stored in half
precision when that keeps every descriptor within 1e-3 of float32. The chips and dlib's descriptors are written
to ``tests/fixtures/dlib_face_reference.npz`` for ``tests/test_face_resnet.py``. Prints the SHA-256 to put into
``affectlab/models/face_resnet/__init__.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from affectlab.models.face_resnet.network import INPUT_SIZE, MEAN_RGB, STAGES, FaceResNet29

DAT_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
PACKAGE_DIR = ROOT / "src" / "affectlab" / "models" / "face_resnet"
FIXTURE = ROOT / "tests" / "fixtures" / "dlib_face_reference.npz"
FP16_TOLERANCE = 1e-3

RES = ["relu", "add_prev", "affine", "con", "relu", "affine", "con", "tag"]
RES_DOWN = ["relu", "add_prev", "avg_pool", "skip", "tag", "affine", "con", "relu", "affine", "con", "tag"]


def anet_layers() -> list[str]:
    """dlib's ``anet_type`` (the face-recognition network), outermost layer first, one name per dlib layer."""
    layers = ["loss_metric", "fc", "avg_pool"]
    for _, count, down in reversed(STAGES):
        for i in reversed(range(count)):
            layers += RES_DOWN if down and i == 0 else RES
    return [*layers, "max_pool", "relu", "affine", "con", "input"]


class DlibReader:
    """dlib's serialization primitives over a byte string."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def int_(self) -> int:
        control = self.data[self.pos]
        size = control & 0x0F
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if control & 0x80 else value

    def float_(self) -> float:
        mantissa = self.int_()
        exponent = self.int_()
        if exponent >= 32000:
            raise ValueError(f"non-finite float (exponent code {exponent}) at byte {self.pos}")
        return float(np.ldexp(float(mantissa), exponent))

    def string(self) -> str:
        size = self.int_()
        text = self.data[self.pos : self.pos + size].decode("ascii")
        self.pos += size
        return text

    def peek_string(self, expected: str) -> bool:
        """True (and the string consumed) when ``expected`` comes next."""
        start = self.pos
        try:
            if self.string() == expected:
                return True
        except (UnicodeDecodeError, IndexError):
            pass
        self.pos = start
        return False

    def bool_(self) -> bool:
        char = self.data[self.pos : self.pos + 1]
        self.pos += 1
        if char not in (b"0", b"1"):
            raise ValueError(f"bad bool {char!r} at byte {self.pos - 1}")
        return char == b"1"

    def tensor(self) -> np.ndarray:
        self.expect_int(2, "tensor version")
        shape = tuple(self.int_() for _ in range(4))
        count = int(np.prod(shape))
        values = np.frombuffer(self.data, "<f4", count, self.pos).reshape(shape)
        self.pos += 4 * count
        return values.astype(np.float32)

    def alias(self) -> tuple[int, ...]:
        self.expect_int(1, "alias_tensor version")
        return tuple(self.int_() for _ in range(4))

    def expect_int(self, expected: int | tuple[int, ...], what: str) -> int:
        value = self.int_()
        if value not in (expected if isinstance(expected, tuple) else (expected,)):
            raise ValueError(f"{what}: {value}, expected {expected} at byte {self.pos}")
        return value

    def expect_string(self, expected: tuple[str, ...], what: str) -> str:
        text = self.string()
        if text not in expected:
            raise ValueError(f"{what}: {text!r}, expected one of {expected} at byte {self.pos}")
        return text


def _details(reader: DlibReader, kind: str) -> dict[str, Any]:
    """One layer's own fields (``layers.h`` / ``input.h``): the weights as arrays, and the geometry to check."""
    if kind == "con":
        version = reader.expect_string(("con_4", "con_5", "con_6"), "con")
        params = reader.tensor().reshape(-1)
        geometry = [reader.int_() for _ in range(7)]  # filters, nr, nc, stride y, x, padding y, x
        filters, biases = reader.alias(), reader.alias()
        [reader.float_() for _ in range(4)]  # learning-rate and weight-decay multipliers
        use_bias = reader.bool_() if version in ("con_5", "con_6") else True
        if version == "con_6":
            reader.bool_()
        size = int(np.prod(filters))
        weight = params[:size].reshape(filters)
        bias = params[size : size + int(np.prod(biases))] if use_bias else np.zeros(filters[0], np.float32)
        return {"weight": weight, "bias": bias, "geometry": geometry}
    if kind == "affine":
        version = reader.expect_string(("affine_", "affine_2"), "affine")
        params = reader.tensor().reshape(-1)
        gamma, _ = reader.alias(), reader.alias()
        reader.int_()  # mode (conv)
        if version == "affine_2" and reader.bool_():
            raise ValueError("a disabled affine layer")
        channels = int(np.prod(gamma))
        return {"weight": params[:channels], "bias": params[channels : 2 * channels]}
    if kind == "relu":
        if reader.expect_string(("relu_", "relu_2"), "relu") == "relu_2":
            reader.bool_()
        return {}
    if kind in ("max_pool", "avg_pool"):
        reader.expect_string((f"{kind}_2",), kind)
        return {"geometry": [reader.int_() for _ in range(6)]}  # nr, nc, stride y, x, padding y, x
    if kind == "fc":
        version = reader.expect_string(("fc_2", "fc_3"), "fc")
        outputs, inputs = reader.int_(), reader.int_()
        params = reader.tensor().reshape(-1)
        reader.alias(), reader.alias()
        reader.expect_int(1, "fc bias mode (1: fc_no_bias)")
        [reader.float_() for _ in range(4)]
        if version == "fc_3":
            reader.bool_()
        return {"weight": params[: inputs * outputs].reshape(inputs, outputs).T}
    if kind == "add_prev":
        reader.peek_string("add_prev_")  # older dlib wrote nothing here
        return {}
    if kind == "input":
        reader.expect_string(("input_rgb_image_sized",), "input")
        means = tuple(reader.float_() for _ in range(3))
        size = (reader.int_(), reader.int_())
        return {"means": means, "size": size}
    raise ValueError(f"no reader for layer {kind}")


def _layer(reader: DlibReader, layers: list[str], i: int, out: list[tuple[str, dict[str, Any]]]) -> None:
    """Read layer ``i`` and everything below it (``core.h``: add_layer, add_tag_layer, add_skip_layer); append
    each layer's fields to ``out`` from the input upwards."""
    kind = layers[i]
    if kind == "loss_metric":
        reader.expect_int(1, "add_loss_layer version")
        if reader.expect_string(("loss_metric_", "loss_metric_2"), "loss") == "loss_metric_2":
            reader.float_(), reader.float_()  # margin, distance threshold
        _layer(reader, layers, i + 1, out)
        return
    if kind in ("tag", "skip"):
        reader.expect_int(1, f"{kind} version")
        _layer(reader, layers, i + 1, out)
        return
    if layers[i + 1] == "input":
        version = reader.expect_int((2, 3), "add_layer (over the input) version")
        out.append(("input", _details(reader, "input")))
        out.append((kind, _details(reader, kind)))
        [reader.bool_() for _ in range(3)]
        [reader.tensor() for _ in range(3)]  # x_grad, cached_output, grad_final
        if version >= 3:
            reader.int_()
        return
    version = reader.expect_int((1, 2), "add_layer version")
    _layer(reader, layers, i + 1, out)
    out.append((kind, _details(reader, kind)))
    [reader.bool_() for _ in range(3)]
    [reader.tensor() for _ in range(2 if version == 1 else 3)]  # x_grad, cached_output, params_grad


def read_dat(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Every layer of the file with its fields, from the input upwards; the whole file must be read."""
    reader = DlibReader(data)
    layers: list[tuple[str, dict[str, Any]]] = []
    _layer(reader, anet_layers(), 0, layers)
    if reader.pos != len(data):
        raise ValueError(f"{len(data) - reader.pos} bytes left after the network")
    return layers


def state_dict(layers: list[tuple[str, dict[str, Any]]]) -> dict[str, torch.Tensor]:
    """The weighted layers in file order (input upwards) onto the module's parameters in definition order."""
    (kind, fields), *rest = layers
    if kind != "input" or fields["means"] != tuple(np.float32(MEAN_RGB)) or fields["size"] != (INPUT_SIZE,) * 2:
        raise ValueError(f"unexpected input layer {fields}")
    weighted = [(k, f) for k, f in rest if k in ("con", "affine", "fc")]
    convs = [m for m in FaceResNet29().modules() if isinstance(m, torch.nn.Conv2d)]
    for conv, (_, fields) in zip(convs, [(k, f) for k, f in weighted if k == "con"], strict=True):
        geometry = [conv.out_channels, *conv.kernel_size, *conv.stride, *conv.padding]  # type: ignore[misc]
        if fields["geometry"] != geometry:
            raise ValueError(f"dlib convolution {fields['geometry']} is not the module's {geometry}")
    names = list(FaceResNet29().state_dict())
    out: dict[str, torch.Tensor] = {}
    for kind, fields in weighted:
        keys = ["weight"] if kind == "fc" else ["weight", "bias"]
        for key in keys:
            name = names.pop(0)
            if not name.endswith(key):
                raise ValueError(f"{kind}.{key} would go into {name}")
            out[name] = torch.from_numpy(np.ascontiguousarray(fields[key]))
    if names:
        raise ValueError(f"module parameters left without weights: {names}")
    return out


def normalise(chips: np.ndarray) -> torch.Tensor:
    """uint8 RGB chips (N x 150 x 150 x 3) as dlib's input layer feeds them: ``(pixel - mean) / 256``."""
    x = (chips.astype(np.float32) - np.asarray(MEAN_RGB, np.float32)) / 256.0
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


def reference_images() -> dict[str, np.ndarray]:
    """Small uint8 RGB images that ``enlarge`` turns into 150 x 150 chips, so the fixture stays a few dozen KB:
    real faces at 75 px (scikit-image's public-domain astronaut photo: the face roughly as dlib's aligner frames
    it, its mirror, a tighter and a looser crop) and seeded 25 px noise."""
    import cv2
    from skimage import data

    photo = data.astronaut()

    def crop(top: int, left: int, side: int) -> np.ndarray:
        return cv2.resize(photo[top : top + side, left : left + side], (75, 75), interpolation=cv2.INTER_AREA)

    face = crop(30, 150, 180)
    faces = np.stack([face, face[:, ::-1], crop(55, 175, 130), crop(10, 120, 240)])
    return {"faces": faces, "noise": np.random.default_rng(0).integers(0, 256, (25, 25, 3), dtype=np.uint8)}


def enlarge(small: np.ndarray) -> np.ndarray:
    """A square image repeated up to 150 px (each pixel a block), as the test rebuilds the chips."""
    factor = INPUT_SIZE // small.shape[-2]
    return small.repeat(factor, axis=-3).repeat(factor, axis=-2)


def reference_chips(images: dict[str, np.ndarray]) -> np.ndarray:
    """The chips dlib and the port see: N x 150 x 150 x 3 uint8, the faces then the noise."""
    return np.concatenate([enlarge(images["faces"]), enlarge(images["noise"])[None]])


def dlib_descriptors(path: Path, chips: np.ndarray) -> np.ndarray:
    import dlib

    model = dlib.face_recognition_model_v1(str(path))
    return np.stack([np.asarray(model.compute_face_descriptor(np.ascontiguousarray(c)), np.float64) for c in chips])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dat", type=Path, help="dlib_face_recognition_resnet_model_v1.dat")
    args = parser.parse_args()
    data = args.dat.read_bytes()
    if hashlib.sha256(data).hexdigest() != DAT_SHA256:
        raise SystemExit(f"{args.dat}: SHA-256 is not that of dlib_face_recognition_resnet_model_v1.dat")
    weights = state_dict(read_dat(data))
    net = FaceResNet29().eval()
    net.load_state_dict(weights)

    images = reference_images()
    chips = reference_chips(images)
    reference = dlib_descriptors(args.dat, chips)
    with torch.no_grad():
        full = net(normalise(chips)).double().numpy()
        half = {k: v.half() for k, v in weights.items()}
        net.load_state_dict({k: v.float() for k, v in half.items()})
        rounded = net(normalise(chips)).double().numpy()
    port_error = float(np.abs(full - reference).max())
    half_error = float(np.abs(rounded - full).max())
    print(f"port vs dlib: max |error| {port_error:.2e}; fp16 weights vs fp32: {half_error:.2e}")
    if port_error > 1e-4:
        raise SystemExit("the port does not reproduce dlib's descriptors")
    stored = half if half_error <= FP16_TOLERANCE else weights
    buffer = io.BytesIO()
    torch.save(stored, buffer)
    (PACKAGE_DIR / "face_resnet29.pt").write_bytes(buffer.getvalue())
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    print(f"face_resnet29.pt: {len(buffer.getvalue())} bytes ({next(iter(stored.values())).dtype}), SHA-256 {digest}")
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(FIXTURE, **images, descriptors=reference.astype(np.float32))
    distances = np.linalg.norm(reference[0] - reference[1:], axis=1)
    print(f"{FIXTURE.name}: {FIXTURE.stat().st_size} bytes; distances from the face: {np.round(distances, 3)}")


if __name__ == "__main__":
    main()
