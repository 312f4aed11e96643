"""``affectlab.predict``, ``export`` and ``serve``: the CLI verbs as Python calls, one ``PredictConfig`` behind both,
and one clear line for the newcomer's stumbles (a study folder as the model, a busy port, an export over a file)."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from support.models import demo_faces, one_torch_thread, scene, write_video

import affectlab
from affectlab.cli import main
from affectlab.errors import AffectlabError
from affectlab.runtime.settings import PredictConfig

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


@pytest.fixture(scope="module")
def inputs(work: Path) -> Path:
    """Two scenes with faces, a face crop, a corrupt file and a short video of a face moving right."""
    faces = demo_faces(work)
    root = work / "inputs"
    root.mkdir()
    cv2.imwrite(str(root / "a_two.png"), scene([faces[0], faces[2]], [(40, 100), (400, 200)]))
    cv2.imwrite(str(root / "b_one.jpg"), scene([faces[3]], [(200, 150)]))
    (root / "c_corrupt.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    face = cv2.resize(faces[1], (120, 120))
    write_video(root / "d_clip.avi", [scene([face], [(30 + 6 * i, 60)], size=(240, 320)) for i in range(8)], 10.0)
    return root


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_api_predict_gives_the_records_of_the_cli(run: Path, inputs: Path, tmp_path: Path) -> None:
    flags = ["--detector", "haar", "--smooth", "3", "--batch-size", "4"]
    assert main(["predict", str(run), str(inputs), *flags, "--quiet", "--out", str(tmp_path / "cli.jsonl")]) == 1
    cli = _lines(tmp_path / "cli.jsonl")
    assert any(r["error"] for r in cli) and any(r["frame"] == 7 for r in cli) and sum(r["face"] == 1 for r in cli)

    options = {"detector": "haar", "smooth": 3, "batch_size": 4}
    summary = affectlab.predict(run, inputs, **options)  # in memory
    assert summary.results is not None and summary.out is None
    assert [record for result in summary.results for record in result.records()] == cli
    assert (summary.items, summary.errors) == (len({(r["source"], r["frame"]) for r in cli}), 1)
    assert summary.faces == sum(r["face"] is not None for r in cli)

    written = affectlab.predict(run, [inputs], out=tmp_path / "api.jsonl", config=PredictConfig(**options))
    assert written.out == tmp_path / "api.jsonl" and written.results is None
    assert (tmp_path / "api.jsonl").read_text() == (tmp_path / "cli.jsonl").read_text()


def test_predict_config_is_checked_when_made_and_names_the_flag(run: Path, inputs: Path) -> None:
    for options, message in [
        ({"every": 0}, "--every must be at least 1, got 0"),
        ({"margin": 3.0}, "--margin must be between 0 and 2, got 3.0"),
        ({"engine": "spark"}, "--engine spark: use one of local, ray"),
        ({"address": "auto"}, "--address is for --engine ray"),
        ({"shard": (4, 4)}, "--shard 4/4: I must be from 0 to N-1"),
    ]:
        with pytest.raises(AffectlabError, match=message.replace("(", r"\(")):
            PredictConfig(**options)
        with pytest.raises(AffectlabError, match=message.replace("(", r"\(")):
            affectlab.predict(run, inputs, **options)
    with pytest.raises(AffectlabError, match="unknown option 'detectr'"):
        affectlab.predict(run, inputs, detectr="haar")
    assert PredictConfig().batch_for(webcam=True) == 1 and PredictConfig(batch_size=8).batch_for(webcam=True) == 8


def test_a_study_folder_given_as_the_model_names_its_models(
    run: Path, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = tmp_path / "demo"
    for name in ("resnet18_classification", "resnet18_regression"):
        (study / name).mkdir(parents=True)
        shutil.copy(run / "model.pt", study / name / "model.pt")
    assert main(["predict", str(study), str(inputs / "b_one.jpg"), "--quiet"]) == 2
    models = ", ".join(str(study / name) for name in ("resnet18_classification", "resnet18_regression"))
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"affectlab: error: {study} is a study folder; give one of its models: {models}"]
    with pytest.raises(AffectlabError, match="is a study folder"):
        affectlab.export(study)


def test_serve_on_a_busy_port_is_one_line(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", str(run), "--port", str(port), "--detector", "none", "--threads", "1"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"affectlab: error: 127.0.0.1:{port} is already in use; stop what listens there or choose another --port"
    ]


def test_serve_options_are_checked_before_the_model_loads(tmp_path: Path) -> None:
    missing = tmp_path / "missing.onnx"  # never reached: each option is refused first
    with pytest.raises(AffectlabError, match="--max-queue must be at least 1, got 0"):
        affectlab.serve(missing, max_queue=0)
    with pytest.raises(AffectlabError, match="--max-upload-mb must be above 0, got -1"):
        affectlab.serve(missing, max_upload_bytes=-1024 * 1024)
    with pytest.raises(AffectlabError, match="--smooth must be at least 1"):
        affectlab.serve(missing, smooth=0)
    with pytest.raises(AffectlabError, match="unknown option 'prot'"):
        affectlab.serve(missing, prot=8080)
    with pytest.raises(AffectlabError, match="detect_every is for predict"):
        affectlab.serve(missing, detect_every=5)
    with pytest.raises(AffectlabError, match="model not found"):
        affectlab.serve(missing, port=0)


def test_export_refuses_to_replace_a_file_without_overwrite(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mine.onnx"
    out.write_bytes(b"a file the user made")
    assert main(["export", str(run), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"affectlab: error: {out}: exists; pass --overwrite to replace it"
    ]
    assert out.read_bytes() == b"a file the user made"
    assert main(["export", str(run), "--out", str(out), "--overwrite"]) == 0
    assert affectlab.load(out).info.runtime == "onnxruntime"
    written = out.stat().st_mtime_ns  # already this checkpoint's fp32 export: returned, not written again
    assert affectlab.export(run, out=out) == out and out.stat().st_mtime_ns == written
    with pytest.raises(AffectlabError, match="exists; pass --overwrite"):
        affectlab.export(run, out=out, int8=True)  # other settings: refused
    again = affectlab.export(run, out=out, overwrite=True)
    assert again == out
    crops = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    probs = affectlab.load(again, detector="none").predict(list(crops))
    assert all(len(result) == 1 and result[0].label for result in probs)


def test_ray_settings_name_the_actor_counts() -> None:
    from affectlab.batch.ray_engine import RaySettings

    with pytest.raises(AffectlabError, match="RaySettings.model_actors must be at least 1, got 0"):
        RaySettings("model.onnx", model_actors=0)


def test_export_and_serve_stay_callable_once_their_packages_are_imported() -> None:
    import affectlab.api
    import affectlab.export.onnx
    import affectlab.serve.app

    assert callable(affectlab.export) and callable(affectlab.serve)  # the packages, made callable
    assert (
        affectlab.api.export is affectlab.export.onnx.export_model and affectlab.api.serve is affectlab.serve.app.serve
    )


def test_flags_left_out_keep_the_defaults_of_the_configs() -> None:
    from affectlab.cli import build_parser
    from affectlab.cli.deploy import PREDICT_FLAGS, SERVE_FLAGS

    predict = build_parser().parse_args(["predict", "model.onnx", "photo.jpg"])
    serve = build_parser().parse_args(["serve", "model.onnx"])
    assert [getattr(predict, name) for name in PREDICT_FLAGS] == [None] * len(PREDICT_FLAGS)
    assert [getattr(serve, name) for name in SERVE_FLAGS] == [None] * len(SERVE_FLAGS)
