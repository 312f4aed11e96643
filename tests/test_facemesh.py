"""FaceMesh as affectlab's own module: equal to Google's TFLite model, trainable, exportable; and the landmarks and
head pose that ``predict --landmarks`` adds, on scikit-image's public-domain astronaut photo (a real face)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import onnxruntime as ort
import pytest
import torch
from skimage import data
from support.bad_input import damaged_copy
from support.models import one_torch_thread, serving

from affectlab.cli import main
from affectlab.errors import AffectlabError
from affectlab.models.facemesh import INPUT_SIZE, WEIGHTS, canonical_face, load_facemesh
from affectlab.runtime.faces import HaarDetector
from affectlab.runtime.headpose import head_pose
from affectlab.runtime.mesh import MeshLandmarker
from affectlab.runtime.predictor import load
from affectlab.runtime.results import CSV_COLUMNS, POSE_COLUMNS, Detection, FaceResult, Mesh

FIXTURE = Path(__file__).parent / "fixtures" / "facemesh_reference.npz"
_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


def _reference_batch() -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """The inputs ``tools/convert_facemesh.py`` gave the TFLite model (small images enlarged by repetition) and its
    outputs: landmarks 2 x 468 x 3 and face logits 2."""
    ref = np.load(FIXTURE)
    images = [
        ref[name].repeat(INPUT_SIZE // len(ref[name]), 0).repeat(INPUT_SIZE // len(ref[name]), 1)
        for name in ("face", "noise")
    ]
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return batch, ref["landmarks"], ref["logits"]


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    return load_facemesh()


def test_module_matches_the_tflite_reference(net: torch.nn.Module) -> None:
    """1e-4 px on landmarks of up to 192 px (float32 keeps about 1e-5 there; 7.6e-5 px measured), 1e-4 on logits."""
    batch, landmarks, logits = _reference_batch()
    with torch.no_grad():
        points, scores = net(batch)
    np.testing.assert_allclose(points.numpy(), landmarks, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(scores.numpy(), logits, rtol=0, atol=1e-4)
    assert torch.sigmoid(scores[0]) > 0.99 and torch.sigmoid(scores[1]) < 0.01  # the real face, then noise


def test_weights_are_small_and_hash_checked(tmp_path: Path) -> None:
    assert WEIGHTS.stat().st_size <= 3 * 1024 * 1024
    assert (WEIGHTS.parent / "MODEL_CARD.md").read_text().count("Apache License") >= 1
    damaged = damaged_copy(WEIGHTS, tmp_path / "face_landmark.pt")  # one flipped bit in the middle of the tensors
    with pytest.raises(AffectlabError, match=r"face_landmark\.pt: SHA-256 .* is not the packaged"):
        load_facemesh(damaged)


def test_module_trains() -> None:
    """Every parameter gets a gradient, and one SGD step lowers a landmark loss."""
    model = load_facemesh().train()
    batch, landmarks, _ = _reference_batch()
    target = (torch.from_numpy(landmarks[:1]) + 5.0) / INPUT_SIZE  # move the face's points 5 px
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(2):
        points, _ = model(batch[:1])
        loss = torch.nn.functional.mse_loss(points / INPUT_SIZE, target)
        optimiser.zero_grad()
        loss.backward()
        losses.append(loss.item())
        missing = [
            n for n, p in model.named_parameters() if n.startswith(("stem", "trunk", "landmark")) and p.grad is None
        ]
        assert not missing
        optimiser.step()
    assert losses[1] < losses[0]
    points, logit = model(batch)
    logit.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.score_head.parameters())


def test_channels_last_and_onnx_give_the_same_outputs(net: torch.nn.Module, tmp_path: Path) -> None:
    """channels_last in PyTorch, and the module traced to ONNX (batch size free) in ONNX Runtime."""
    batch, landmarks, logits = _reference_batch()
    fast = load_facemesh().to(memory_format=torch.channels_last)
    with torch.no_grad():
        points, _ = fast(batch.contiguous(memory_format=torch.channels_last))
    np.testing.assert_allclose(points.numpy(), landmarks, rtol=1e-6, atol=1e-4)
    path = tmp_path / "facemesh.onnx"
    torch.onnx.export(
        net,
        (batch,),
        path,
        dynamo=True,
        input_names=["image"],
        output_names=["landmarks", "face_logit"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_points, onnx_logits = session.run(None, {"image": batch.numpy()})
    np.testing.assert_allclose(onnx_points, landmarks, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(onnx_logits, logits, rtol=0, atol=1e-4)


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = np.radians([yaw, -pitch, roll])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    return rz @ ry @ rx


def test_head_pose_recovers_known_rotations_and_mirrors() -> None:
    """The canonical face turned by known angles and drawn in image coordinates gives those angles back; mirrored
    (x negated, each point swapped with its mirror twin) it gives yaw and roll negated, pitch unchanged."""
    canonical = canonical_face()
    twin = np.array([np.argmin(np.abs(canonical - v * [-1, 1, 1]).sum(1)) for v in canonical])
    assert np.abs(canonical[twin] * [-1, 1, 1] - canonical).max() < 1e-3  # the mesh is symmetric
    to_image = np.array([1.0, -1.0, -1.0])
    for angles in [(25.0, -10.0, 15.0), (-40.0, 20.0, -5.0), (0.0, 0.0, 60.0)]:
        points = 30 * (canonical @ _rotation(*angles).T) * to_image + [200, 150, 0]
        np.testing.assert_allclose(head_pose(points), angles, atol=1e-6)
        mirrored = points[twin] * [-1, 1, 1]
        yaw, pitch, roll = angles
        np.testing.assert_allclose(head_pose(mirrored), (-yaw, pitch, -roll), atol=1e-3)


@pytest.fixture(scope="module")
def astronaut() -> tuple[np.ndarray, Detection]:
    image = data.astronaut()
    faces = HaarDetector().detect(image)
    assert len(faces) == 1
    return image, faces[0]


@pytest.fixture(scope="module")
def landmarker() -> MeshLandmarker:
    return MeshLandmarker()


def _turned(image: np.ndarray, face: Detection, degrees: float) -> np.ndarray:
    x, y, w, h = face.box
    rotation = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), degrees, 1.0)
    return cv2.warpAffine(image, rotation, image.shape[1::-1], borderMode=cv2.BORDER_REFLECT)


def test_rolling_the_image_moves_roll_by_the_same_angle(
    astronaut: tuple[np.ndarray, Detection], landmarker: MeshLandmarker
) -> None:
    image, face = astronaut
    upright = landmarker(image, [face])[0]
    assert upright.score > 0.99 and upright.points is not None and upright.points.shape == (468, 3)
    x, y, w, h = face.box
    nose = upright.points[1]  # MediaPipe's landmark 1 is the nose tip: inside the box, near its middle
    assert x + w / 4 < nose[0] < x + 3 * w / 4 and y + h / 4 < nose[1] < y + 3 * h / 4
    for degrees in (-30.0, -15.0, 15.0, 30.0):
        turned = landmarker(_turned(image, face, degrees), [face])[0]
        assert turned.roll is not None and upright.roll is not None
        assert abs(turned.roll - upright.roll - degrees) < 3.0, (degrees, turned.roll, upright.roll)


def test_a_mirrored_face_negates_yaw_and_roll(
    astronaut: tuple[np.ndarray, Detection], landmarker: MeshLandmarker
) -> None:
    image, face = astronaut
    x, y, w, h = face.box
    mirrored_box = Detection((image.shape[1] - x - w, y, w, h))
    for degrees in (0.0, 20.0):  # as photographed, and tilted so that roll is far from 0
        turned = _turned(image, face, degrees)
        pose = landmarker(turned, [face])[0]
        mirror = landmarker(np.ascontiguousarray(turned[:, ::-1]), [mirrored_box])[0]
        assert None not in (pose.yaw, pose.roll, mirror.yaw, mirror.roll, pose.pitch, mirror.pitch)
        assert abs(mirror.yaw + pose.yaw) < 3.0 and abs(mirror.roll + pose.roll) < 3.0  # type: ignore[operator]
        assert abs(mirror.pitch - pose.pitch) < 3.0  # type: ignore[operator]
    assert abs(pose.roll) > 10  # type: ignore[arg-type]


def test_a_face_the_mesh_rejects_gets_no_landmarks_and_says_so(run: Path, tmp_path: Path) -> None:
    """With ``--detector none`` every image is a face to the detector; the mesh network rejects noise."""
    noise = np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    predictor = load(run, detector="none", landmarks=True)
    result = predictor.predict(noise)
    assert len(result) == 1 and result[0].mesh is not None and result[0].mesh.rejected
    assert result[0].label is not None  # the expression model still answers for the detector's face
    record = result.records()[0]
    assert record["mesh_rejected"] is True and record["mesh"] is None and record["yaw"] is None
    assert record["mesh_score"] < 0.5
    path = tmp_path / "noise.png"
    cv2.imwrite(str(path), noise)
    out = tmp_path / "noise.csv"
    assert (
        main(["predict", str(run), str(path), "--detector", "none", "--landmarks", "--out", str(out), "--quiet"]) == 0
    )
    rows = list(csv.DictReader(out.open()))
    assert rows[0]["yaw"] == "" and float(rows[0]["mesh_score"]) < 0.5


def test_predict_landmarks_from_the_command_line(run: Path, tmp_path: Path) -> None:
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    jsonl, table, plain = tmp_path / "faces.jsonl", tmp_path / "faces.csv", tmp_path / "plain.csv"
    drawn = tmp_path / "drawn"
    args = ["predict", str(run), str(photo), "--detector", "haar", "--quiet"]
    assert main([*args, "--landmarks", "--out", str(jsonl), "--save-annotated", str(drawn)]) == 0
    assert main([*args, "--landmarks", "--out", str(table)]) == 0
    assert main([*args, "--out", str(plain)]) == 0
    record = json.loads(jsonl.read_text().splitlines()[0])
    assert record["mesh_rejected"] is False and record["mesh_score"] > 0.99
    assert np.asarray(record["mesh"]).shape == (468, 3) and all(-15 < record[k] < 15 for k in ("yaw", "roll"))
    header, row = list(csv.reader(table.read_text().splitlines()))
    assert tuple(header) == CSV_COLUMNS + POSE_COLUMNS and float(row[header.index("yaw")]) == record["yaw"]
    plain_header = next(csv.reader(plain.read_text().splitlines()))
    assert tuple(plain_header) == CSV_COLUMNS  # without --landmarks: the columns as before
    annotated = cv2.imread(str(drawn / "astronaut.png"))
    dots = np.all(annotated == (160, 255, 80), axis=2)  # the mesh's points (BGR) on the face
    x, y, w, h = record["box"]
    near = dots[max(0, y - h) : y + 2 * h, max(0, x - w) : x + 2 * w]
    assert dots[y : y + h, x : x + w].sum() > 300 and dots.sum() == near.sum()  # on the face, nowhere else


@pytest.fixture(scope="module")
def mesh_server(work: Path, run: Path) -> Iterator[str]:
    with serving([str(run), "--threads", "1", "--detector", "haar", "--landmarks"], work / "mesh-server.log") as url:
        yield url


def test_the_page_names_the_pose() -> None:
    from affectlab.serve.page import _face_title

    posed = FaceResult((0, 0, 10, 10), mesh=Mesh(0.99, np.zeros((468, 3)), 12.4, -3.0, 5.6))
    assert _face_title(0, posed) == "face 0: yaw +12 pitch -3 roll +6"
    assert _face_title(1, FaceResult((0, 0, 10, 10), mesh=Mesh(0.01))) == "face 1: no mesh"


def test_serve_landmarks(mesh_server: str) -> None:
    _, png = cv2.imencode(".png", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    body = httpx.post(f"{mesh_server}/predict", files={"file": ("a.png", png.tobytes(), "image/png")}).json()
    assert len(body) == 1 and len(body[0]["mesh"]) == 468 and body[0]["mesh_rejected"] is False
    assert {"yaw", "pitch", "roll", "mesh_score"} <= set(body[0])


def test_facemesh_backbone_forward_backward_and_weights() -> None:
    """``--backbone facemesh``: the packaged face weights in the trunk, [0, 1] inputs, gradients into the trunk;
    ImageNet weights do not exist for it and say so."""
    from affectlab.config import ModelConfig
    from affectlab.models.affect_model import create_model
    from affectlab.models.weights import resolve_backbone

    backbone = resolve_backbone("facemesh", "facemesh")
    assert backbone.mean == (0.0, 0.0, 0.0) and backbone.std == (1.0, 1.0, 1.0)
    assert backbone.description.startswith("packaged with affectlab")
    config = ModelConfig(backbone="facemesh", weights="facemesh", task="multitask", input_size=64, freeze=False)
    model = create_model(config)
    packaged = load_facemesh().state_dict()
    trunk = model.trunk.state_dict()
    assert torch.equal(trunk["1.weight"], packaged["stem.weight"]) and torch.equal(
        trunk["3.13.pointwise.weight"], packaged["trunk.13.pointwise.weight"]
    )
    assert not any(name.startswith(("landmark_head", "score_head")) for name, _ in model.named_parameters())
    out = model(torch.rand(4, 3, 64, 64))
    assert out["expression"].shape == (4, 8) and out["va"].shape == (4, 2)
    (out["expression"].logsumexp(1).mean() + out["va"].square().mean()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.trunk.parameters())
    random_init = create_model(ModelConfig(backbone="facemesh", weights="none", task="classification", input_size=64))
    assert not torch.equal(random_init.trunk.state_dict()["1.weight"], packaged["stem.weight"])
    with pytest.raises(AffectlabError, match="facemesh has no ImageNet weights: use --weights facemesh"):
        create_model(ModelConfig(backbone="facemesh", weights="imagenet", task="classification"))


@pytest.mark.slow
def test_train_and_predict_with_the_facemesh_backbone(demo_data: Path, tmp_path: Path) -> None:
    import affectlab

    run = affectlab.train(
        data=str(demo_data),
        out=tmp_path / "run",
        progress=False,
        backbone="facemesh",
        weights="facemesh",
        freeze=False,
        input_size=64,
        epochs=1,
        task="multitask",
    )
    assert run.metrics.accuracy is not None and run.metrics.ccc is not None
    result = affectlab.load(run.path, detector="none").predict(data.astronaut())
    assert len(result) == 1 and result[0].label is not None and result[0].valence is not None
