"""``affectlab predict --engine ray``: batch prediction over many images as a Ray Data pipeline.

read paths -> detect and crop on CPU actors (with ``--landmarks`` / ``--eyes`` also FaceMesh and MediaPipe Iris,
on the whole picture, as ``predict`` runs them) -> the model on model actors (ONNX Runtime or PyTorch, as
``predict`` picks from the file) -> one Parquet file with the columns of the CSV results, in input order.

Each stage is the single-process code (``ScaledPhoto`` and ``photo_faces``, the backend, the records of
``ImageResult``), so the records equal ``affectlab predict``'s (to the last digits of a float: the model sees
other batches). The driver writes the file as batches come back, so its memory stays flat. On a cluster
(``--address auto``) the input paths must be readable on every node (shared storage).
"""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from affectlab.errors import AffectlabError
from affectlab.extras import require
from affectlab.runtime.pipeline import PredictSummary
from affectlab.runtime.results import UNCERTAIN, Detection, FaceResult, ImageResult, flat_record, record_columns
from affectlab.runtime.settings import PredictConfig
from affectlab.runtime.sources import Source

__all__ = ["RaySettings", "check_ray_request", "parquet_schema", "predict_with_ray"]


@dataclass(frozen=True)
class RaySettings:
    """The model, its ``PredictConfig`` (``address`` says which cluster), and how many actors each stage gets.

    ``detect_actors`` defaults to half the cluster's CPUs (at least one); ``input_size`` is the model's, filled in
    by ``predict_with_ray`` for the actors.
    """

    model: str
    config: PredictConfig = field(default_factory=PredictConfig)
    detect_actors: int | None = None
    model_actors: int = 1
    input_size: int = 0
    face_shift: tuple[float, float] = (0.0, 0.0)  # the model's crop offset, filled in with input_size

    def __post_init__(self) -> None:
        for name in ("detect_actors", "model_actors"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise AffectlabError(f"RaySettings.{name} must be at least 1, got {value}")


def check_ray_request(out: object, webcam: bool, annotated: bool) -> None:
    """What the Ray engine cannot do, refused before Ray starts: it writes Parquet, and reads image files only."""
    if not isinstance(out, (str, Path)) or Path(out).suffix.lower() != ".parquet":
        raise AffectlabError("--engine ray writes a Parquet file: give --out FILE.parquet")
    if webcam or annotated:
        raise AffectlabError("--engine ray scores image files; --webcam and --save-annotated need the local engine")


def parquet_schema(landmarks: bool = False, eyes: bool = False) -> Any:
    """The Parquet columns (``record_columns``) with types, so that a missing value is a typed null."""
    import pyarrow as pa

    types = {
        "source": pa.string(),
        "frame": pa.int64(),
        "time_s": pa.float64(),
        "face": pa.int64(),
        "track_id": pa.int64(),
        "x": pa.int64(),
        "y": pa.int64(),
        "w": pa.int64(),
        "h": pa.int64(),
        "label": pa.string(),
        "no_face": pa.bool_(),
        "error": pa.string(),
        "prediction_set": pa.string(),
        "blinks": pa.int64(),
    }
    return pa.schema([(name, types.get(name, pa.float64())) for name in record_columns(landmarks, eyes)])


#: The columns every detect batch has; ``mesh`` and ``eyes`` follow when landmarks or eyes are asked for.
_COLUMNS = ("order", "source", "face", "box", "error", "crop")


class DetectCrop:
    """A CPU actor: reads each image, finds its faces and crops them as the model was trained.

    One row per face (``face`` from 0), or one row (``face`` -1) for an image without a face or that cannot be
    read (``error`` then says why). With landmarks or eyes asked for, the whole picture is decoded, as ``predict``
    does then, and each row also carries the face's mesh and eyes (``FaceMesh``, ``Eyes``, pickled) for the model
    actor's records; the detector's five points are not passed on (the Parquet columns, as the CSV's, have none).
    """

    def __init__(self, settings: RaySettings) -> None:
        from affectlab.runtime.faces import make_detector

        config = settings.config
        assert config.margin is not None and settings.input_size > 0, "filled in by predict_with_ray"
        self.size, self.margin, self.align = settings.input_size, config.margin, config.align
        self.shift = settings.face_shift
        self.detector = make_detector(config.detector)
        self.landmarker: Any = None
        self.eye_landmarker: Any = None
        if config.landmarks or config.eyes:
            from affectlab.runtime.mesh import MeshLandmarker

            self.landmarker = MeshLandmarker()
        if config.eyes:
            from affectlab.runtime.eyes import EyeLandmarker

            self.eye_landmarker = EyeLandmarker()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from affectlab.runtime.decode import ScaledPhoto

        rows: dict[str, list[Any]] = {k: [] for k in (*_COLUMNS, "mesh", "eyes")}
        blank = np.zeros((self.size, self.size, 3), np.uint8)
        for order, source, path in zip(batch["order"], batch["source"], batch["path"], strict=True):
            found: list[Detection] = []
            meshes: list[Any] = []
            eyes: list[Any] = []
            error = None
            try:
                found, crops, meshes, eyes = self._faces(ScaledPhoto.read(path))
            except AffectlabError as exc:
                error = str(exc)
            if not found:
                crops = np.empty((0, self.size, self.size, 3), np.uint8)
            for face, (detection, crop, mesh, eye) in enumerate(zip(found, crops, meshes, eyes, strict=True)):
                self._add(rows, order, source, face, detection, None, crop, mesh, eye)
            if not found:
                self._add(rows, order, source, -1, None, error, blank)
        columns = {k: np.stack(rows[k]) if k in ("box", "crop") else np.asarray(rows[k]) for k in _COLUMNS}
        if self.landmarker is not None:  # pickled: Ray Data would turn the objects' arrays into its own types
            columns |= {k: np.array([pickle.dumps(v) for v in rows[k]], dtype=object) for k in ("mesh", "eyes")}
        return columns

    def _faces(self, photo: Any) -> tuple[list[Detection], np.ndarray, list[Any], list[Any]]:
        """The faces of one picture, their crops, and their meshes and eyes (None each unless asked for)."""
        from affectlab.runtime.decode import photo_faces
        from affectlab.runtime.faces import crop_faces

        if self.landmarker is None:  # decoded at the scales detection and crops need, as predict does
            found, crops = photo_faces(photo, self.detector, self.size, self.margin, self.align, self.shift)
            return found, crops, [None] * len(found), [None] * len(found)
        image = photo.decode(1)  # the mesh and the eyes need the whole picture, as in predict
        found = self.detector.detect(image)
        crops = crop_faces(image, found, self.size, self.margin, self.align, self.shift)
        meshes = self.landmarker(image, found)
        eyes = self.eye_landmarker(image, meshes) if self.eye_landmarker is not None else [None] * len(found)
        return found, crops, meshes, eyes

    @staticmethod
    def _add(
        rows: dict[str, list[Any]],
        order: int,
        source: str,
        face: int,
        detection: Detection | None,
        error: str | None,
        crop: np.ndarray,
        mesh: Any = None,
        eyes: Any = None,
    ) -> None:
        rows["order"].append(int(order))
        rows["source"].append(str(source))
        rows["face"].append(face)
        rows["box"].append(np.array((0, 0, 0, 0) if detection is None else detection.box, np.int64))
        rows["error"].append(error or "")
        rows["crop"].append(crop)
        rows["mesh"].append(mesh)
        rows["eyes"].append(eyes)


class RunModel:
    """A model actor: the backend ``predict`` would use, on batches of crops; returns the Parquet rows."""

    def __init__(self, settings: RaySettings) -> None:
        from affectlab.runtime.predictor import load

        self.backend = load(settings.model, detector="none", threads=settings.config.threads).backend
        self.class_names = self.backend.info.class_names
        self.min_confidence = settings.config.min_confidence
        self.landmarks, self.eyes = settings.config.landmarks, settings.config.eyes
        self.columns = record_columns(self.landmarks, self.eyes)

    def __call__(self, batch: dict[str, Any]) -> Any:
        import pyarrow as pa

        faces = np.asarray(batch["face"]) >= 0
        outputs = self.backend.run(np.asarray(batch["crop"])[faces]) if faces.any() else {}
        row_of = np.cumsum(faces) - 1  # a face's row in the outputs
        records = []
        for i, source in enumerate(batch["source"]):
            if not faces[i]:
                record = ImageResult(str(source), [], error=str(batch["error"][i]) or None).records()[0]
            else:
                box = tuple(int(v) for v in batch["box"][i])
                face = FaceResult.from_outputs(
                    outputs,
                    int(row_of[i]),
                    box,  # type: ignore[arg-type]
                    self.class_names,
                    None,
                    self.min_confidence,
                )
                if "mesh" in batch:  # pickled by this pipeline's own detect actors
                    face.mesh, face.eyes = pickle.loads(batch["mesh"][i]), pickle.loads(batch["eyes"][i])
                record = ImageResult(str(source), [face]).records()[0] | {"face": int(batch["face"][i])}
            records.append(flat_record(record, self.columns))
        table = pa.Table.from_pylist(records, schema=parquet_schema(self.landmarks, self.eyes))
        return table.append_column("order", pa.array(np.asarray(batch["order"], dtype=np.int64)))


def predict_with_ray(settings: RaySettings, sources: list[Source], out: Path) -> PredictSummary:
    """Predict on image ``sources`` with Ray Data and write ``out`` (Parquet); returns the counts."""
    from affectlab.atomic import atomic_write

    require("ray.data", "--engine ray")
    ray = require("ray", "--engine ray")
    pq = require("pyarrow.parquet", "--engine ray")

    unsupported = [s for s in sources if s.kind != "image" or s.path is None]
    if unsupported:
        raise AffectlabError(
            f"{unsupported[0].name}: --engine ray reads image files only (it is a {unsupported[0].kind}); "
            "use the default engine for videos, webcams and unreadable folders"
        )
    from affectlab.runtime.predictor import load_for

    predictor = load_for(settings.model, settings.config)  # here first: a bad model stops before Ray starts
    config = replace(settings.config, margin=predictor.margin)
    preprocess = predictor.info.preprocess
    settings = replace(settings, config=config, input_size=preprocess.input_size, face_shift=preprocess.face_shift)
    if not ray.is_initialized():
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # Ray's C++ core logs its notes on stderr
        ray.init(address=config.address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # records in input order, as the single-process run
    context.enable_progress_bars = False
    cpus = int(ray.cluster_resources().get("CPU", 1))
    detect_actors = settings.detect_actors or max(1, cpus // 2)
    items = [{"order": i, "source": s.name, "path": str(s.path)} for i, s in enumerate(sources)]
    dataset = (
        ray.data.from_items(items)
        .map_batches(DetectCrop, fn_constructor_args=(settings,), batch_size=16, concurrency=detect_actors, num_cpus=1)
        .map_batches(
            RunModel,
            fn_constructor_args=(settings,),
            batch_size=config.batch_for(webcam=False),
            concurrency=settings.model_actors,
            num_cpus=1,
        )
    )
    summary = PredictSummary(out=out)
    schema = parquet_schema(config.landmarks, config.eyes)

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, schema) as writer:
            for table in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
                table = table.select(schema.names).cast(schema)
                rows = table.to_pydict()
                summary.faces += sum(1 for f in rows["face"] if f is not None)
                summary.no_face += sum(bool(v) for v in rows["no_face"])
                summary.errors += sum(e is not None for e in rows["error"])
                summary.uncertain += sum(label == UNCERTAIN for label in rows["label"])
                summary.items += sum(1 for f in rows["face"] if f in (None, 0))
                summary.first_error = summary.first_error or next((e for e in rows["error"] if e is not None), None)
                writer.write_table(table)

    atomic_write(out, write)
    return summary
