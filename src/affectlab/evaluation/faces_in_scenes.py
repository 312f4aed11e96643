"""The ``faces_in_scenes`` section of metrics.json: the scored faces pasted into generated scenes, end to end.

Users feed group photos and webcam frames through the detector, not dataset crops. Here every scored face is
pasted once into generated scenes (``evaluation.scenes``: procedural backgrounds, 2-4 faces per 640x480 scene at
48-200 px, fixed seed, never written to disk) and each scene goes through the runtime predictor exactly as
``affectlab predict`` runs it: the default detector, the model's crop (margin, square, resize), its flip TTA and
calibration. A detected box is matched to a pasted box one to one (the pairing of largest total IoU, at least
``MIN_IOU``); unmatched detections are false boxes, unmatched pasted faces are missed.

Scores on the found faces, and end to end, where a missed face counts as wrong (and as valence = arousal = 0, the
centre of the circumplex, for the CCC). The ratio of the end-to-end accuracy to the clean-crop accuracy is what
a user keeps of the reported accuracy. The faces are the split's images at the model's input size, so a face
pasted larger than that is upsampled; the pasted faces are otherwise clean (no rotation beyond ``max_angle``, no
blur, relighting or occluder: the robustness section measures those).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from affectlab.data.samples import FaceSplit
from affectlab.evaluation.metrics import ccc
from affectlab.evaluation.scenes import Box, Scene, SceneSpec, scenes_of
from affectlab.evaluation.trust import shift_metrics
from affectlab.models.affect_model import AffectModel
from affectlab.models.meta import ModelMeta
from affectlab.models.outputs import Outputs
from affectlab.runtime.backends import Backend, TorchBackend
from affectlab.runtime.faces import Detection, FaceDetector, iou, make_detector
from affectlab.runtime.predictor import AffectPredictor, Item
from affectlab.runtime.results import FaceResult
from affectlab.runtime.settings import DEFAULT_DETECTOR

__all__ = ["MIN_IOU", "SCENE_SPEC", "Matches", "faces_in_scenes_section", "match_boxes", "score_scenes"]

#: The scenes of the section: several faces per photo-sized frame, at the sizes faces have in group photos and
#: webcam frames, upright within the rotation the models are trained with, otherwise undamaged.
SCENE_SPEC = SceneSpec(
    width=640, height=480, min_face=48, max_face=200, faces=(2, 4), max_angle=10.0, p_blur=0.0, p_light=0.0,
    p_occlude=0.0,
)  # fmt: skip
#: Crops run at once: a few calls per section, so a cached-trunk backend appends to its cache a few times only.
SCENE_BATCH = 256
#: A detection and a pasted face are the same face when their boxes overlap at least this much (IoU).
MIN_IOU = 0.5


@dataclass(frozen=True)
class Matches:
    """One scene's detections against its pasted faces: ``pairs`` of (pasted index, detection index), and the
    pasted faces ``missed`` and the detections that are ``false`` boxes."""

    pairs: list[tuple[int, int]]
    missed: list[int]
    false: list[int]


def match_boxes(true: Sequence[Box], found: Sequence[Box], min_iou: float = MIN_IOU) -> Matches:
    """Pair pasted and detected boxes one to one, maximising the total IoU (Hungarian assignment); a pair
    overlapping less than ``min_iou`` is no match."""
    overlap = np.array([[iou(t, f) for f in found] for t in true]).reshape(len(true), len(found))
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    pairs = [(int(r), int(c)) for r, c in zip(rows, cols) if overlap[r, c] >= min_iou]
    matched_true, matched_found = {r for r, _ in pairs}, {c for _, c in pairs}
    return Matches(
        pairs=sorted(pairs),
        missed=[i for i in range(len(true)) if i not in matched_true],
        false=[j for j in range(len(found)) if j not in matched_found],
    )


def _outputs(faces: list[FaceResult]) -> Outputs:
    """The runtime's results of some faces as evaluation outputs (probabilities, set, V/A, intervals)."""
    out: Outputs = {}
    if not faces:
        return out
    first = faces[0]
    if first.probs is not None:
        out["probs"] = np.array([f.probs for f in faces])
        if first.prediction_set is not None:
            names = list(first.class_names)
            out["set"] = np.array([[n in (f.prediction_set or ()) for n in names] for f in faces])
    if first.valence is not None:
        out["va"] = np.array([[f.valence, f.arousal] for f in faces], dtype=np.float32)
        if first.valence_interval is not None:
            out["va_interval"] = np.array([[f.valence_interval, f.arousal_interval] for f in faces])
    return out


def score_scenes(
    scene_list: Sequence[Scene], found: Sequence[Sequence[FaceResult]], split: FaceSplit, clean: dict[str, Any]
) -> dict[str, Any]:
    """Count and score the detections ``found`` in each scene of ``scene_list`` against the faces of ``split``
    pasted there (``Scene.sources`` index ``split``); ``clean`` holds the clean-crop scores to compare with."""
    n = len(split)
    matched: dict[int, FaceResult] = {}
    false_boxes = 0
    for scene, faces in zip(scene_list, found, strict=True):
        matches = match_boxes(scene.boxes, [f.box for f in faces])
        false_boxes += len(matches.false)
        for t, f in matches.pairs:
            matched[scene.sources[t]] = faces[f]
    order = sorted(matched)
    hit = np.zeros(n, dtype=bool)
    hit[order] = True
    outputs = _outputs([matched[i] for i in order])
    section: dict[str, Any] = {
        "faces": n,
        "scenes": len(scene_list),
        "found": len(order),
        "missed": n - len(order),
        "false_boxes": false_boxes,
        "found_share": len(order) / n if n else None,
        "found_faces": {},
        "end_to_end": {},
        "clean": clean,
    }
    labels = split.expression[order] if "accuracy" in clean else None
    va = split.va[order] if "valence_ccc" in clean else None
    if labels is not None:
        right = np.zeros(n, dtype=bool)
        if order:
            right[order] = outputs["probs"].argmax(1) == labels
        section["found_faces"]["accuracy"] = float(right[hit].mean()) if order else None
        section["end_to_end"]["accuracy"] = float(right.mean())
    if va is not None:
        predicted = np.zeros((n, 2), dtype=np.float64)  # a missed face: the centre of the circumplex
        if order:
            predicted[order] = outputs["va"]
        for d, name in enumerate(("valence_ccc", "arousal_ccc")):
            section["found_faces"][name] = ccc(va[:, d], predicted[order, d]) if len(order) > 1 else None
            section["end_to_end"][name] = ccc(split.va[:, d], predicted[:, d])
    if order:
        section["found_faces"] |= shift_metrics(outputs, labels, va)
    for metric, value in section["end_to_end"].items():
        base = clean.get(metric)
        ratio = None if value is None or base is None or base <= 0 else value / base
        section[f"{metric}_ratio"] = ratio
    section["sentence"] = _sentence(section)
    return section


def _sentence(section: dict[str, Any]) -> str:
    metric = "accuracy" if "accuracy" in section["end_to_end"] else "valence_ccc"
    end, found, ratio = section["end_to_end"][metric], section["found_faces"].get(metric), section[f"{metric}_ratio"]
    name = metric.replace("_", " ")
    text = (
        f"The detector found {section['found']} of {section['faces']} faces in {section['scenes']} scenes "
        f"({section['false_boxes']} false boxes); {name} {_f(found)} on the faces found, {_f(end)} end to end "
        f"(missed = wrong)"
    )
    return text + (f", {ratio:.2f} of the clean crops' {_f(section['clean'].get(metric))}." if ratio else ".")


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


class _Recording:
    """The detector, remembering what it found in each image (by object: the scenes are kept with it)."""

    def __init__(self, detector: FaceDetector) -> None:
        self.name = detector.name
        self._detector = detector
        self.found: dict[int, list[Detection]] = {}

    def detect(self, image: np.ndarray) -> list[Detection]:
        found = self._detector.detect(image)
        self.found[id(image)] = found
        return found


class _Replay:
    """What a detector found in scenes it has already seen: a deterministic detector on the same pixels finds the
    same boxes, so the next model of a study pays for the detector once."""

    def __init__(self, name: str, found: dict[int, list[Detection]]) -> None:
        self.name = name
        self._found = found

    def detect(self, image: np.ndarray) -> list[Detection]:
        return list(self._found[id(image)])


#: The last scenes drawn and what the detector found in them, by ``_scenes_key`` (one entry, ~180 MB for 600 faces).
_SCENES: dict[str, tuple[list[Scene], list[list[Detection]]]] = {}


def _scenes_key(faces: Sequence[np.ndarray], seed: int, spec: SceneSpec, detector: str) -> str:
    digest = hashlib.sha1(f"{seed}|{spec}|{detector}|{len(faces)}".encode())
    for face in faces:
        digest.update(np.ascontiguousarray(face).tobytes())
    return digest.hexdigest()


def faces_in_scenes_section(
    model: AffectModel,
    meta: ModelMeta,
    split: FaceSplit,
    document: dict[str, Any],
    tta_flip: bool,
    seed: int = 0,
    detector: str = DEFAULT_DETECTOR,
    spec: SceneSpec = SCENE_SPEC,
    align: bool = False,
    backend: Backend | None = None,
) -> dict[str, Any]:
    """Paste ``split``'s faces into scenes, run them through the runtime predictor (the model as ``meta``
    describes it, with ``tta_flip``; ``align`` levels the eye line as ``predict --align`` does) and score them
    against the clean scores of the metrics ``document``. ``backend`` runs the crops instead of PyTorch on
    ``model`` (a frozen trunk's cached features); it must give what that would."""
    clean: dict[str, Any] = {}
    if "classification" in document:
        clean["accuracy"] = document["classification"]["accuracy"]
    if "valence" in document:
        clean["valence_ccc"], clean["arousal_ccc"] = document["valence"]["ccc"], document["arousal"]["ccc"]
    backend = backend or TorchBackend.from_model(model, dataclasses.replace(meta, tta_flip=tta_flip), "evaluation")
    faces = [split.images[i] for i in range(len(split))]
    finder = make_detector(detector)
    key = _scenes_key(faces, seed, spec, finder.name)
    recorded = _SCENES.get(key)
    if recorded is None:  # the first model on these faces: draw the scenes and run the detector on them
        scene_list = list(scenes_of(faces, seed, spec))
        replay: FaceDetector = _Recording(finder)
    else:  # the same scenes as the last model's, and what the same detector found in them (model-independent)
        scene_list, detections = recorded
        replay = _Replay(finder.name, {id(s.image): d for s, d in zip(scene_list, detections, strict=True)})
    predictor = AffectPredictor(backend, detector=replay, align=align, batch_size=SCENE_BATCH)
    items = (Item(f"scene {i}", scene.image) for i, scene in enumerate(scene_list))
    found = [list(result) for result in predictor.predict_stream(items)]
    if isinstance(replay, _Recording):
        _SCENES.clear()  # one set kept: a study scores its models on one split, one after another
        _SCENES[key] = (scene_list, [replay.found[id(s.image)] for s in scene_list])
    section = score_scenes(scene_list, found, split, clean)
    spec_text = (
        f"{spec.width}x{spec.height} scenes, {spec.faces[0]}-{spec.faces[1]} faces each at "
        f"{spec.min_face}-{spec.max_face} px, rotated up to {spec.max_angle:g} degrees"
    )
    return {"seed": seed, "detector": predictor.detector.name, "margin": predictor.margin,
            "shift": list(predictor.shift), "align": align, "scenes_spec": spec_text,
            "min_iou": MIN_IOU, **section}  # fmt: skip
