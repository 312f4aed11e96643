"""``affectlab predict --engine ray``: batch prediction over many images as a Ray Data pipeline.

read paths -> detect and crop on CPU actors -> the model on model actors (ONNX Runtime or PyTorch, as ``predict``
picks from the file) -> one Parquet file with the columns of the CSV results, in input order.

Each stage is the single-process code (``read_rgb``, the detector, ``crop_faces``, the backend, the records of
``ImageResult``), so the records equal ``affectlab predict``'s (to the last digits of a float: the model sees
other batches). The driver writes the file as batches come back, so its memory stays flat. On a cluster
(``--address auto``) the input paths must be readable on every node (shared storage).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from affectlab.errors import AffectlabError
from affectlab.extras import require
from affectlab.runtime.results import CSV_COLUMNS, UNCERTAIN, Detection, ImageResult, face_result, flat_record
from affectlab.runtime.sources import Source

__all__ = ["RaySettings", "parquet_schema", "predict_with_ray"]


@dataclass(frozen=True)
class RaySettings:
    model: str
    detector: str = "auto"
    margin: float | None = None
    align: bool = False
    batch_size: int = 32
    threads: int | None = None
    address: str | None = None  # None: a local Ray on this machine; "auto": the running cluster
    detect_actors: int | None = None  # None: half the cluster's CPUs, at least one
    model_actors: int = 1
    input_size: int = 0  # the model's, filled in by predict_with_ray
    min_confidence: float | None = None  # label faces below this calibrated top probability "uncertain"


def parquet_schema() -> Any:
    """The Parquet columns: ``CSV_COLUMNS`` with types, so that a missing value is a typed null."""
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
    }
    return pa.schema([(name, types.get(name, pa.float64())) for name in CSV_COLUMNS])


class DetectCrop:
    """A CPU actor: reads each image, finds its faces and crops them as the model was trained.

    One row per face (``face`` from 0), or one row (``face`` -1) for an image without a face or that cannot be
    read (``error`` then says why). Landmarks are not passed on: the Parquet columns, as the CSV's, have none.
    """

    def __init__(self, settings: RaySettings) -> None:
        from affectlab.runtime.faces import make_detector

        assert settings.margin is not None and settings.input_size > 0, "filled in by predict_with_ray"
        self.size, self.margin, self.align = settings.input_size, settings.margin, settings.align
        self.detector = make_detector(settings.detector)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from affectlab.data.images import read_rgb
        from affectlab.runtime.faces import crop_faces

        rows: dict[str, list[Any]] = {k: [] for k in ("order", "source", "face", "box", "error", "crop")}
        blank = np.zeros((self.size, self.size, 3), np.uint8)
        for order, source, path in zip(batch["order"], batch["source"], batch["path"], strict=True):
            found: list[Detection] = []
            error = None
            try:
                image = read_rgb(path)
                found = self.detector.detect(image)
                crops = crop_faces(image, found, self.size, self.margin, self.align)
            except AffectlabError as exc:
                error = str(exc)
            if not found:
                crops = np.empty((0, self.size, self.size, 3), np.uint8)
            for face, (detection, crop) in enumerate(zip(found, crops, strict=True)):
                self._add(rows, order, source, face, detection, None, crop)
            if not found:
                self._add(rows, order, source, -1, None, error, blank)
        return {k: np.stack(v) if k in ("box", "crop") else np.asarray(v) for k, v in rows.items()}

    @staticmethod
    def _add(
        rows: dict[str, list[Any]],
        order: int,
        source: str,
        face: int,
        detection: Detection | None,
        error: str | None,
        crop: np.ndarray,
    ) -> None:
        rows["order"].append(int(order))
        rows["source"].append(str(source))
        rows["face"].append(face)
        rows["box"].append(np.array((0, 0, 0, 0) if detection is None else detection.box, np.int64))
        rows["error"].append(error or "")
        rows["crop"].append(crop)


class RunModel:
    """A model actor: the backend ``predict`` would use, on batches of crops; returns the Parquet rows."""

    def __init__(self, settings: RaySettings) -> None:
        from affectlab.runtime.predictor import load

        self.backend = load(settings.model, detector="none", threads=settings.threads).backend
        self.class_names = self.backend.info.class_names
        self.min_confidence = settings.min_confidence

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
                face = face_result(box, outputs, int(row_of[i]), self.class_names, None, self.min_confidence)  # type: ignore[arg-type]
                record = ImageResult(str(source), [face]).records()[0] | {"face": int(batch["face"][i])}
            records.append(flat_record(record))
        table = pa.Table.from_pylist(records, schema=parquet_schema())
        return table.append_column("order", pa.array(np.asarray(batch["order"], dtype=np.int64)))


def predict_with_ray(settings: RaySettings, sources: list[Source], out: Path) -> dict[str, int]:
    """Predict on image ``sources`` with Ray Data and write ``out`` (Parquet); returns counts for the summary."""
    from affectlab.atomic import atomic_write

    require("ray.data", "--engine ray")
    ray = require("ray", "--engine ray")
    pq = require("pyarrow.parquet", "--engine ray")

    if settings.model_actors < 1 or (settings.detect_actors is not None and settings.detect_actors < 1):
        raise AffectlabError("--ray-actors: at least one actor per stage")
    unsupported = [s for s in sources if s.kind != "image" or s.path is None]
    if unsupported:
        raise AffectlabError(
            f"{unsupported[0].name}: --engine ray reads image files only (it is a {unsupported[0].kind}); "
            "use the default engine for videos, webcams and unreadable folders"
        )
    from affectlab.runtime.predictor import load

    predictor = load(
        settings.model, settings.detector, settings.batch_size, settings.margin, settings.threads, settings.align
    )  # here first: a bad model or detector stops before Ray starts
    settings = replace(settings, margin=predictor.margin, input_size=predictor.info.preprocess.input_size)
    if not ray.is_initialized():
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # Ray's C++ core logs its notes on stderr
        ray.init(address=settings.address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
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
            batch_size=settings.batch_size,
            concurrency=settings.model_actors,
            num_cpus=1,
        )
    )
    counts = {"items": 0, "faces": 0, "no_face": 0, "errors": 0, "uncertain": 0}

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, parquet_schema()) as writer:
            for table in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
                table = table.select(parquet_schema().names).cast(parquet_schema())
                rows = table.to_pydict()
                counts["faces"] += sum(1 for f in rows["face"] if f is not None)
                counts["no_face"] += sum(bool(v) for v in rows["no_face"])
                counts["errors"] += sum(e is not None for e in rows["error"])
                counts["uncertain"] += sum(label == UNCERTAIN for label in rows["label"])
                counts["items"] += sum(1 for f in rows["face"] if f in (None, 0))
                writer.write_table(table)

    atomic_write(out, write)
    return counts


def cmd_predict_ray(args: Any, sources: list[Source]) -> int:
    """``predict --engine ray``, after the command's checks: run the pipeline and print the summary line."""
    import sys

    settings = RaySettings(
        args.model,
        args.detector,
        args.margin,
        args.align,
        args.batch_size or 32,
        args.threads,
        args.address,
        min_confidence=args.min_confidence,
    )
    counts = predict_with_ray(settings, sources, Path(args.out))
    if not args.quiet:
        print(
            f"{counts['items']} item(s); {counts['faces']} face(s); {counts['no_face']} without a face; "
            + (f"{counts['uncertain']} uncertain; " if args.min_confidence is not None else "")
            + f"{counts['errors']} error(s)\nresults: {args.out}",
            file=sys.stderr,
        )
    return 1 if counts["errors"] else 0
