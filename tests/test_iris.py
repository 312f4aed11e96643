"""MediaPipe Iris as affectlab's own module: equal to Google's TFLite model, trainable, exportable; and the eye
fields (iris points, eye openness, gaze) that ``predict --eyes`` adds, on scikit-image's public-domain astronaut
photo (a real face) and controlled edits of it."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import cv2
import httpx
import numpy as np
import onnxruntime as ort
import pytest
import torch
from skimage import data
from support.bad_input import damaged_copy
from support.models import one_torch_thread, serving, write_video

from affectlab.cli import main
from affectlab.errors import AffectlabError
from affectlab.models.iris import WEIGHTS, load_iris
from affectlab.runtime.annotate import GAZE_COLOUR, eye_text
from affectlab.runtime.blinks import BlinkCounter
from affectlab.runtime.eyes import EyeLandmarker
from affectlab.runtime.faces import HaarDetector
from affectlab.runtime.mesh import MeshLandmarker
from affectlab.runtime.predictor import load
from affectlab.runtime.results import CSV_COLUMNS, EYE_COLUMNS, POSE_COLUMNS, Detection, Eyes, FaceResult, ImageResult

FIXTURE = Path(__file__).parent / "fixtures" / "iris_reference.npz"
_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


def _reference_batch() -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """The 64 px inputs ``tools/convert_iris.py`` gave the TFLite model (two real eyes, noise) and its outputs:
    contours 3 x 71 x 3 and iris points 3 x 5 x 3."""
    ref = np.load(FIXTURE)
    images = np.stack([ref[name] for name in ("eye", "other_eye", "noise")])
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0, ref["contour"], ref["iris"]


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    return load_iris()


def test_module_matches_the_tflite_reference(net: torch.nn.Module) -> None:
    """1e-4 px on points of up to 64 px (1.9e-5 px measured); on the real eyes the iris centre lies inside the lids."""
    batch, contour, iris = _reference_batch()
    with torch.no_grad():
        points, centre_and_rim = net(batch)
    np.testing.assert_allclose(points.numpy(), contour, rtol=0, atol=1e-4)
    np.testing.assert_allclose(centre_and_rim.numpy(), iris, rtol=0, atol=1e-4)
    for eye in range(2):
        lower, upper = contour[eye, 0:9, :2], contour[eye, 9:16, :2]
        cx, cy = iris[eye, 0, :2]
        assert lower[:, 0].min() < cx < lower[:, 0].max() and upper[:, 1].min() < cy < lower[:, 1].max()


def test_weights_are_small_and_hash_checked(tmp_path: Path) -> None:
    assert WEIGHTS.stat().st_size <= 3 * 1024 * 1024
    assert "Apache License" in (WEIGHTS.parent / "MODEL_CARD.md").read_text()
    damaged = damaged_copy(WEIGHTS, tmp_path / "iris_landmark.pt")
    with pytest.raises(AffectlabError, match=r"iris_landmark\.pt: SHA-256 .* is not the packaged"):
        load_iris(damaged)


def test_module_trains() -> None:
    """Every parameter gets a gradient, and one SGD step lowers a point loss."""
    model = load_iris().train()
    batch, contour, iris = _reference_batch()
    target = torch.from_numpy(np.concatenate([contour[:1], iris[:1]], axis=1) + 2.0)  # every point moved 2 px
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(2):
        points, centre_and_rim = model(batch[:1])
        loss = torch.nn.functional.mse_loss(torch.cat([points, centre_and_rim], 1), target)
        optimiser.zero_grad()
        loss.backward()
        losses.append(loss.item())
        assert all(p.grad is not None for p in model.parameters())
        optimiser.step()
    assert losses[1] < losses[0]


@pytest.mark.slow  # the dynamo export takes 15-90 s on a busy 2-core machine
def test_channels_last_and_onnx_give_the_same_outputs(net: torch.nn.Module, tmp_path: Path) -> None:
    """channels_last in PyTorch, and the module exported to ONNX (batch size free) in ONNX Runtime."""
    batch, contour, iris = _reference_batch()
    fast = load_iris().to(memory_format=torch.channels_last)
    with torch.no_grad():
        points, _ = fast(batch.contiguous(memory_format=torch.channels_last))
    np.testing.assert_allclose(points.numpy(), contour, rtol=0, atol=1e-4)
    path = tmp_path / "iris.onnx"
    torch.onnx.export(
        net,
        (batch,),
        path,
        dynamo=True,
        input_names=["eye"],
        output_names=["contour", "iris"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_contour, onnx_iris = session.run(None, {"eye": batch[:2].numpy()})  # another batch size than exported
    np.testing.assert_allclose(onnx_contour, contour[:2], rtol=0, atol=1e-4)
    np.testing.assert_allclose(onnx_iris, iris[:2], rtol=0, atol=1e-4)


# --- the eye fields on a real face -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def portrait() -> tuple[np.ndarray, Detection]:
    """The astronaut's head at twice the photo's scale (a face box of about 190 px: the iris moves about 13 px
    between looking 45 degrees left and right there), and the detector's box."""
    image = cv2.resize(data.astronaut(), None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)[:512, 192:704].copy()
    faces = HaarDetector().detect(image)
    assert len(faces) == 1
    return image, faces[0]


@pytest.fixture(scope="module")
def eye_stage() -> tuple[MeshLandmarker, EyeLandmarker]:
    return MeshLandmarker(), EyeLandmarker()


def _eyes(stage: tuple[MeshLandmarker, EyeLandmarker], image: np.ndarray, face: Detection) -> Eyes:
    meshes = stage[0](image, [face])
    eyes = stage[1](image, meshes)[0]
    assert not eyes.rejected and eyes.gaze_yaw is not None and eyes.openness is not None
    return eyes


def _opening(eyes: Eyes, eye: int) -> np.ndarray:
    """The polygon between the lids of one eye (Iris's contour points 0-8 and 15-9), image pixels."""
    assert eyes.contour is not None
    return np.concatenate([eyes.contour[eye, 0:9, :2], eyes.contour[eye, 15:8:-1, :2]])


def _lid_mask(image: np.ndarray, eyes: Eyes, eye: int) -> np.ndarray:
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(_opening(eyes, eye)).astype(np.int32)], 1)
    return mask


def _iris_moved(image: np.ndarray, eyes: Eyes, dx: float, dy: float) -> np.ndarray:
    """The image with what lies between the lids of both eyes moved by (dx, dy) pixels: the iris moves within
    the eye, the lids and the rest of the face stay."""
    out = image.copy()
    moved = cv2.warpAffine(
        image, np.float32([[1, 0, dx], [0, 1, dy]]), image.shape[1::-1], borderMode=cv2.BORDER_REPLICATE
    )
    for eye in range(2):
        inside = _lid_mask(image, eyes, eye) > 0
        out[inside] = moved[inside]
    return out


def _lids_lowered(image: np.ndarray, eyes: Eyes, fraction: float) -> np.ndarray:
    """Both eyes covered from above down to ``fraction`` of their opening by skin (the colour of the cheek under
    the eye), with a dark line where the new lid's lashes would be: an upper lid closing."""
    out = image.copy()
    for eye in range(2):
        polygon = _opening(eyes, eye)
        top, bottom = polygon[:, 1].min(), polygon[:, 1].max()
        left, right = int(polygon[:, 0].min()), int(polygon[:, 0].max())
        skin = image[int(bottom) + 10 : int(bottom) + 16, left:right].reshape(-1, 3).mean(axis=0).astype(np.uint8)
        mask = _lid_mask(image, eyes, eye)
        mask[int(round(top + fraction * (bottom - top))) :] = 0
        mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
        out[mask > 0] = skin
        rows = np.nonzero(mask.any(axis=1))[0]
        if len(rows):
            edge = int(rows.max())
            cols = np.nonzero(mask[edge])[0]
            cv2.line(out, (int(cols.min()), edge), (int(cols.max()), edge), (70, 45, 35), 2, cv2.LINE_AA)
    return out


def _mirrored(image: np.ndarray, face: Detection) -> tuple[np.ndarray, Detection]:
    x, y, w, h = face.box
    return np.ascontiguousarray(image[:, ::-1]), Detection((image.shape[1] - x - w, y, w, h))


def test_the_astronauts_eyes(
    portrait: tuple[np.ndarray, Detection], eye_stage: tuple[MeshLandmarker, EyeLandmarker]
) -> None:
    """She looks into the camera with open eyes: each iris centre lies between its eye's corners and lids, the
    gaze is within 15 degrees of the camera axis, and each eye's openness is that of an open eye."""
    image, face = portrait
    eyes = _eyes(eye_stage, image, face)
    assert eyes.iris is not None and eyes.iris.shape == (2, 5, 3) and eyes.contour is not None
    assert eyes.contour.shape == (2, 71, 3)
    for eye in range(2):
        polygon = _opening(eyes, eye)
        assert cv2.pointPolygonTest(polygon.astype(np.float32), tuple(map(float, eyes.iris[eye, 0, :2])), False) > 0
    assert eyes.iris[0, 0, 0] < eyes.iris[1, 0, 0]  # the eye on the image's left first
    assert abs(eyes.gaze_yaw) < 15 and abs(eyes.gaze_pitch) < 15  # type: ignore[arg-type]
    assert all(0.15 < value < 0.4 for value in eyes.openness)  # type: ignore[union-attr]


def test_moving_the_iris_moves_the_gaze_the_same_way(
    portrait: tuple[np.ndarray, Detection], eye_stage: tuple[MeshLandmarker, EyeLandmarker]
) -> None:
    """The irises moved right in the image turn the gaze right (yaw up) step by step, and left, left; moved up
    they turn it up, down, down; the head's pose does not change, so neither does the rest."""
    image, face = portrait
    eyes = _eyes(eye_stage, image, face)
    yaws = [_eyes(eye_stage, _iris_moved(image, eyes, dx, 0), face).gaze_yaw for dx in (-6, -3, 0, 3, 6)]
    assert np.all(np.diff(np.asarray(yaws, dtype=float)) > 2), yaws
    up, down = (_eyes(eye_stage, _iris_moved(image, eyes, 0, dy), face) for dy in (-3, 3))
    assert up.gaze_pitch > eyes.gaze_pitch + 2 > down.gaze_pitch + 4  # type: ignore[operator]


def test_mirroring_negates_the_gaze_yaw(
    portrait: tuple[np.ndarray, Detection], eye_stage: tuple[MeshLandmarker, EyeLandmarker]
) -> None:
    """As photographed and with the irises moved to one side (yaw far from 0): the mirror image's gaze yaw is the
    negative, its pitch the same, and its eyes' openness swapped, within a few degrees and 0.03."""
    image, face = portrait
    eyes = _eyes(eye_stage, image, face)
    for edited in (image, _iris_moved(image, eyes, 6, 0)):
        seen = _eyes(eye_stage, edited, face)
        mirror = _eyes(eye_stage, *_mirrored(edited, face))
        assert abs(mirror.gaze_yaw + seen.gaze_yaw) < 3 and abs(mirror.eye_yaw + seen.eye_yaw) < 3  # type: ignore[operator]
        assert abs(mirror.gaze_pitch - seen.gaze_pitch) < 3  # type: ignore[operator]
        np.testing.assert_allclose(mirror.openness, seen.openness[::-1], atol=0.03)  # type: ignore[index]
    assert seen.gaze_yaw > 8  # type: ignore[operator]


def test_rolling_the_face_leaves_the_gaze_in_the_heads_frame(
    portrait: tuple[np.ndarray, Detection], eye_stage: tuple[MeshLandmarker, EyeLandmarker]
) -> None:
    """Turned by 20 degrees either way in the image plane, a face looking to one side keeps its eyes' angles in
    the head's frame within 4 degrees, while its gaze in the camera's frame turns with it."""
    image, face = portrait
    looking = _iris_moved(image, _eyes(eye_stage, image, face), 6, 0)
    upright = _eyes(eye_stage, looking, face)
    x, y, w, h = face.box
    for degrees in (-20.0, 20.0):
        rotation = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), degrees, 1.0)
        turned = _eyes(
            eye_stage, cv2.warpAffine(looking, rotation, image.shape[1::-1], borderMode=cv2.BORDER_REFLECT), face
        )
        assert abs(turned.eye_yaw - upright.eye_yaw) < 4, (degrees, turned, upright)  # type: ignore[operator]
        assert abs(turned.eye_pitch - upright.eye_pitch) < 4, (degrees, turned, upright)  # type: ignore[operator]
        # counter-clockwise in the image turns a rightward gaze upwards in the camera's frame, and back
        assert np.sign(turned.gaze_pitch - upright.gaze_pitch) == np.sign(degrees)  # type: ignore[operator]


def test_openness_falls_as_the_lids_close(
    portrait: tuple[np.ndarray, Detection], eye_stage: tuple[MeshLandmarker, EyeLandmarker]
) -> None:
    """Each eye covered from above by a quarter of its opening more at each step reads less open at each step
    until three quarters, and under half as open as uncovered from there on. Between three quarters and whole
    the reading levels off at about 0.1 (the network's two lid lines stay apart on a closed eye), so the last
    step may only not rise by more than the reading's noise, 0.02."""
    image, face = portrait
    eyes = _eyes(eye_stage, image, face)
    steps = (0, 0.25, 0.5, 0.75, 1)
    readings = np.array([_eyes(eye_stage, _lids_lowered(image, eyes, f), face).openness for f in steps])
    assert np.all(np.diff(readings[:-1], axis=0) < 0), readings
    assert np.all(readings[-1] < readings[-2] + 0.02), readings
    assert np.all(readings[-2:] < 0.5 * readings[0]), readings


def _eye_frame(openness: float, track_id: int = 0) -> ImageResult:
    eyes = Eyes(np.zeros((2, 5, 3)), np.zeros((2, 71, 3)), (openness, openness), 0.0, 0.0, 0.0, 0.0)
    return ImageResult("clip", [FaceResult((0, 0, 10, 10), track_id=track_id, eyes=eyes)])


def test_blinks_are_counted_once_each_with_hysteresis() -> None:
    """Open, closed, open is one blink; a reading that wavers around one threshold does not count again; each
    track counts its own; a face without eyes passes through untouched."""
    counter = BlinkCounter()
    series = [0.25, 0.26, 0.24, 0.08, 0.07, 0.25, 0.26, 0.13, 0.12, 0.13, 0.12, 0.25, 0.25]
    counts = [counter(_eye_frame(v)).faces[0].eyes.blinks for v in series]  # type: ignore[union-attr]
    assert counts == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2]
    other = [counter(_eye_frame(v, track_id=1)).faces[0].eyes.blinks for v in (0.3, 0.3, 0.3)]  # type: ignore[union-attr]
    assert other == [0, 0, 0]
    plain = ImageResult("clip", [FaceResult((0, 0, 10, 10), track_id=0)])
    assert counter(plain) is plain


def test_an_open_closed_open_video_counts_one_blink(
    run: Path, tmp_path: Path, portrait: tuple[np.ndarray, Detection], eye_stage: tuple[MeshLandmarker, EyeLandmarker]
) -> None:
    """``predict --eyes`` on a video of the face with open eyes, closed eyes, then open eyes again: the eye columns
    follow the pose columns, openness falls in the closed frames, the track's count is 1 from the reopening on,
    and the track summary gives 1 blink and its rate."""
    image, face = portrait
    closed = _lids_lowered(image, _eyes(eye_stage, image, face), 1.0)
    frames = [image] * 4 + [closed] * 3 + [image] * 4
    video = write_video(tmp_path / "blink.avi", [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames], fps=10.0)
    table, drawn = tmp_path / "blink.csv", tmp_path / "drawn"
    args = ["predict", str(run), str(video), "--detector", "haar", "--eyes", "--backend", "torch", "--quiet"]
    assert main([*args, "--out", str(table), "--save-annotated", str(drawn)]) == 0
    header, *rows = list(csv.reader(table.read_text().splitlines()))
    assert tuple(header) == CSV_COLUMNS + POSE_COLUMNS + EYE_COLUMNS
    assert len(rows) == len(frames) and {r[header.index("track_id")] for r in rows} == {"0"}
    blinks = [int(r[header.index("blinks")]) for r in rows]
    assert blinks == [0] * 7 + [1] * 4
    openness = np.array([[float(r[header.index(c)]) for c in ("openness_left", "openness_right")] for r in rows])
    assert openness[4:7].max() < 0.5 * openness[:4].min()
    summary = json.loads((drawn / "blink.tracks.json").read_text())["tracks"][0]
    assert summary["blinks"] == 1 and summary["blinks_per_minute"] == pytest.approx(60 / 1.1, abs=0.1)
    assert list(summary)[-5:] == ["blinks", "blinks_per_minute", "mean_openness", "mean_gaze_yaw", "mean_gaze_pitch"]


def test_predict_eyes_from_the_command_line(run: Path, tmp_path: Path, portrait: tuple[np.ndarray, Detection]) -> None:
    """JSON lines carry the iris and contour points, openness and gaze after every field of before; the annotated
    photo has the irises and the gaze arrow on the eyes; without ``--eyes`` the records are as before."""
    image, _ = portrait
    photo = tmp_path / "portrait.png"
    cv2.imwrite(str(photo), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    jsonl, plain, drawn = tmp_path / "eyes.jsonl", tmp_path / "plain.jsonl", tmp_path / "drawn"
    args = ["predict", str(run), str(photo), "--detector", "haar", "--backend", "torch", "--quiet"]
    assert main([*args, "--eyes", "--out", str(jsonl), "--save-annotated", str(drawn)]) == 0
    assert main([*args, "--landmarks", "--out", str(plain)]) == 0
    record = json.loads(jsonl.read_text())
    before = json.loads(plain.read_text())
    assert list(record)[: len(before) - 2] == list(before)[:-2]  # the old fields, in their order...
    new = ["gaze_yaw", "gaze_pitch", "eye_yaw", "eye_pitch", "openness", "blinks", "iris", "eye_contours"]
    assert list(record)[len(before) - 2 : -2] == new  # ...then the eyes' (no_face and error stay last)
    assert np.asarray(record["iris"]).shape == (2, 5, 3) and np.asarray(record["eye_contours"]).shape == (2, 71, 3)
    assert record["blinks"] is None and len(record["openness"]) == 2  # blinks are counted on video only
    annotated = cv2.cvtColor(cv2.imread(str(drawn / "portrait.png")), cv2.COLOR_BGR2RGB)
    marks = np.all(annotated == GAZE_COLOUR, axis=2)
    iris = np.asarray(record["iris"])[:, 0, :2]
    x0, y0 = iris.min(axis=0).astype(int) - 20
    x1, y1 = iris.max(axis=0).astype(int) + 20
    assert marks[y0:y1, x0:x1].sum() > 20 and marks.sum() < 5 * marks[y0:y1, x0:x1].sum() + 200


def test_a_face_the_mesh_rejects_gets_no_eye_fields_and_says_so(run: Path) -> None:
    """With ``--detector none`` noise is a face to the detector; the mesh rejects it, so the eyes are not cropped:
    every eye field is None and the annotation and page say why."""
    noise = np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    result = load(run, detector="none", eyes=True).predict(noise)
    face = result[0]
    assert face.mesh is not None and face.mesh.rejected and face.eyes is not None and face.eyes.rejected
    record = result.records()[0]
    assert record["mesh_rejected"] is True
    assert all(record[k] is None for k in ("gaze_yaw", "gaze_pitch", "eye_yaw", "openness", "iris", "eye_contours"))
    assert eye_text(face.eyes) == "no eyes (mesh rejected)"
    from affectlab.serve.page import _face_title

    assert _face_title(0, face).endswith("no mesh, no eyes (mesh rejected)")
    looking = replace(face, eyes=Eyes(np.zeros((2, 5, 3)), None, (0.25, 0.2), 12.4, -3.0, 10.0, 1.0))
    assert _face_title(0, looking).endswith("gaze +12 -3 open 0.25 0.20")


def test_serve_eyes_answers_with_the_eye_fields(run: Path, work: Path, portrait: tuple[np.ndarray, Detection]) -> None:
    """``affectlab serve --eyes``, started as a user would: a posted portrait comes back with its iris points,
    openness and gaze, as ``predict --eyes`` gives them; without a face, no eye fields."""
    image, _ = portrait
    _, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    args = [str(run), "--threads", "1", "--detector", "haar", "--backend", "torch", "--eyes"]
    with serving(args, work / "eyes-server.log") as url:
        body = httpx.post(f"{url}/predict", files={"file": ("a.png", png.tobytes(), "image/png")}).json()
        empty = cv2.imencode(".png", np.full((200, 200, 3), 128, np.uint8))[1].tobytes()
        blank = httpx.post(f"{url}/predict", files={"file": ("b.png", empty, "image/png")}).json()
    assert len(body) == 1
    face = body[0]
    assert np.asarray(face["iris"]).shape == (2, 5, 3) and np.asarray(face["eye_contours"]).shape == (2, 71, 3)
    assert len(face["openness"]) == 2 and all(0 < v < 1 for v in face["openness"])
    assert abs(face["gaze_yaw"]) < 30 and abs(face["gaze_pitch"]) < 30 and face["blinks"] is None
    local = load(run, detector="haar", eyes=True).predict(image).records()[0]
    assert face["openness"] == pytest.approx(local["openness"], abs=1e-3)
    assert face["gaze_yaw"] == pytest.approx(local["gaze_yaw"], abs=0.05)
    assert blank == []  # no face: nothing to measure
