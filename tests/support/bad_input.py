"""Hostile and broken files for the bad-input and fuzz tests, made on the fly."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st


def png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose header declares ``width`` x ``height`` RGB pixels (a few rows of data follow)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = zlib.compress(b"\0" * (1 + 3 * min(width, 4096)) * 4)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def encoded(suffix: str, size: int = 48, seed: int = 0) -> bytes:
    """A valid small picture as .jpg or .png bytes."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), (5, 5), 0)
    ok, data = cv2.imencode(suffix, image)
    assert ok
    return data.tobytes()


def npy_header_claiming(count: int) -> bytes:
    """A .npy file whose header claims ``count`` float64 values; the data is missing."""
    header = {"descr": "<f8", "fortran_order": False, "shape": (count,)}
    text = repr(header).encode("latin1")
    text += b" " * (63 - (10 + len(text)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


class Payload:
    """Unpickling this creates ``self.path``: proof that a file ran code when loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        import os

        return (os.mkdir, (str(self.path),))


def snapshot(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, str]:
    """Every file under ``root`` (relative path -> SHA-256), leaving out ``skip``: what a command must not change."""
    out = {}
    for path in sorted(root.rglob("*")):
        if any(path == s or s in path.parents for s in skip):
            continue
        out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


def onnx_with_metadata(path: Path, metadata: str) -> Path:
    """A tiny valid ONNX graph (Identity) carrying ``metadata`` as affectlab's JSON metadata."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["images"], ["expression_probs"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 8])],
        [helper.make_tensor_value_info("expression_probs", TensorProto.FLOAT, ["n", 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"affectlab": metadata})
    onnx.save(model, path)
    return path


VALID_ONNX_METADATA = json.dumps(
    {
        "task": "classification",
        "class_names": ["Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt"],
        "va_range": [-1, 1],
        "preprocess": {"input_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3},
    }
)


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def mutated(base: bytes, focus: int | None = None) -> st.SearchStrategy[bytes]:
    """``base`` with up to 8 bytes replaced and/or cut short; ``focus`` aims the edits at the first and last
    ``focus`` bytes (a zip's or a protobuf's structure rather than its weights)."""
    n = len(base)
    if focus is None:
        position = st.integers(0, n - 1)
    else:
        position = st.one_of(st.integers(0, min(focus, n) - 1), st.integers(max(0, n - focus), n - 1))
    edits = st.lists(st.tuples(position, st.integers(0, 255)), max_size=8)
    cut = st.one_of(st.none(), st.integers(0, n - 1) if focus is None else position)

    def apply(change: tuple[list[tuple[int, int]], int | None]) -> bytes:
        data = bytearray(base)
        for where, value in change[0]:
            data[where] = value
        return bytes(data[: change[1]] if change[1] is not None else data)

    return st.tuples(edits, cut).filter(lambda c: bool(c[0]) or c[1] is not None).map(apply)


def damaged_copy(original: Path, copy: Path) -> Path:
    """``original`` copied to ``copy`` with one bit flipped in the middle: a damaged download or disk."""
    data = bytearray(original.read_bytes())
    data[len(data) // 2] ^= 1
    copy.write_bytes(bytes(data))
    return copy
