"""Fuzzing with hypothesis: valid JPEG, PNG, .npy, .pt and .onnx files with random bytes replaced and cut short.

Whatever the damage, each reader either succeeds or raises one ``AffectlabError`` (a problem record for
annotations): never another exception, a traceback or a crash. The examples are derandomised, so every run tries
the same few hundred files; the HTTP uploads are fuzzed in test_bad_input.py against the live server there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from support.bad_input import VALID_ONNX_METADATA, encoded, fuzz, mutated, onnx_with_metadata
from support.data import write_affectnet

from affectlab.errors import AffectlabError


def _damaged_image_reads_or_fails_in_one_line(path: Path, data: bytes) -> None:
    from affectlab.data.images import read_rgb

    path.write_bytes(data)
    try:
        image = read_rgb(path)
    except AffectlabError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


@fuzz(90)
@given(data=mutated(encoded(".jpg", 64)))
def test_fuzzed_jpeg(tmp_path: Path, data: bytes) -> None:
    _damaged_image_reads_or_fails_in_one_line(tmp_path / "x.jpg", data)


@fuzz(90)
@given(data=mutated(encoded(".png", 64)))
def test_fuzzed_png(tmp_path: Path, data: bytes) -> None:
    _damaged_image_reads_or_fails_in_one_line(tmp_path / "x.png", data)


def _npy(value: str) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.array(value))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def annotated(work: Path) -> Path:
    return write_affectnet(work / "fuzz-npy", [("0", 1, 0.5, 0.5), ("1", 2, 0.1, 0.1)])


@fuzz(80)
@given(data=mutated(_npy("3")))
def test_fuzzed_npy_is_a_problem_record(annotated: Path, data: bytes) -> None:
    from affectlab.data.check import check_dataset

    (annotated / "annotations" / "1_exp.npy").write_bytes(data)
    report = check_dataset(annotated)
    assert [s.id for s in report.sample_set.samples][:1] == ["0"]
    assert all("\n" not in str(p) for p in report.problems)


@pytest.fixture(scope="module")
def checkpoint(work: Path) -> bytes:
    from affectlab.config import ModelConfig
    from affectlab.data.transforms import Preprocess
    from affectlab.models.affect_model import create_model
    from affectlab.models.checkpoint import save_checkpoint

    config = ModelConfig(backbone="resnet18", weights="none", task="classification", input_size=32, hidden=16)
    return save_checkpoint(work / "model.pt", create_model(config), config, Preprocess(input_size=32)).read_bytes()


@fuzz(40)
@given(data=st.data())
def test_fuzzed_checkpoint(tmp_path: Path, checkpoint: bytes, data: st.DataObject) -> None:
    from affectlab.models.checkpoint import load_checkpoint

    path = tmp_path / "model.pt"
    path.write_bytes(data.draw(mutated(checkpoint, focus=4096)))
    try:
        model, meta = load_checkpoint(path)
    except AffectlabError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
        return
    assert isinstance(model, torch.nn.Module) and meta.task == "classification"


@fuzz(80)
@given(data=st.data())
def test_fuzzed_onnx(tmp_path: Path, data: st.DataObject) -> None:
    from affectlab.runtime.backends import OnnxBackend

    valid = onnx_with_metadata(tmp_path / "valid.onnx", VALID_ONNX_METADATA).read_bytes()
    path = tmp_path / "model.onnx"
    path.write_bytes(data.draw(mutated(valid)))
    try:
        backend = OnnxBackend(path, threads=1)
    except AffectlabError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
        return
    assert backend.info.preprocess.input_size > 0
