"""The Python API: one function per CLI verb, each returning a typed result.

The CLI parses its arguments and makes exactly one of these calls, so what a script does with
``affectlab.train(...)`` is what ``affectlab train ...`` does. Settings resolve as everywhere:
defaults < recipe (a path, a packaged name such as ``"best"``, or a ``RunConfig``) < keyword overrides < ``sets``.
``predict``, ``export`` and ``serve`` take the prediction settings of ``PredictConfig`` (and ``serve`` those of
``ServeOptions``) as keywords of the same names.

    >>> import affectlab
    >>> run = affectlab.train("best", data="path/to/affectnet", out="runs/best", epochs=3)
    >>> run.metrics.accuracy, run.metrics.ccc
    >>> metrics = affectlab.evaluate(run.path, split="val")
    >>> study = affectlab.study("reference", data="path/to/affectnet", out="runs/reference")
    >>> summary = affectlab.predict("runs/best", ["photos/"], out="faces.jsonl", detector="haar")
    >>> onnx = affectlab.export("runs/best")
    >>> affectlab.serve(onnx, port=8000)

Each function imports what it needs when called: ``predict`` on an ONNX file never imports PyTorch or Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from affectlab.config import RunConfig
from affectlab.errors import AffectlabError
from affectlab.runtime.settings import PredictConfig, split_options

if TYPE_CHECKING:
    from affectlab.evaluation.evaluate import Metrics
    from affectlab.experiment import Run
    from affectlab.export.onnx import export_model as export
    from affectlab.runtime.pipeline import PredictSummary
    from affectlab.serve.app import serve
    from affectlab.studies import Study

__all__ = [
    "Metrics",
    "PredictConfig",
    "PredictSummary",
    "Run",
    "Study",
    "evaluate",
    "export",
    "predict",
    "serve",
    "study",
    "train",
]

#: Names served from the modules that define them, on first use: the result types bring PyTorch and Lightning,
#: and ``export`` and ``serve`` are the functions that ``affectlab.export(...)`` and ``affectlab.serve(...)`` call.
_LAZY = {
    "Metrics": ("affectlab.evaluation.evaluate", "Metrics"),
    "Run": ("affectlab.experiment", "Run"),
    "Study": ("affectlab.studies", "Study"),
    "PredictSummary": ("affectlab.runtime.pipeline", "PredictSummary"),
    "export": ("affectlab.export.onnx", "export_model"),
    "serve": ("affectlab.serve.app", "serve"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'affectlab.api' has no attribute {name!r}")


#: ``data=``: one dataset (a path, as ``--data``), or several (a list of paths or ``data.sources`` mappings).
DataArg = str | Path | Sequence[str | Path | dict[str, Any]] | None

#: What a killed training leaves in its folder that ``resume=True`` continues from; the folder is kept for it.
RESUMABLE = ("model.pt", "checkpoints/last.ckpt")


def train(
    recipe: str | Path | RunConfig | None = None,
    *,
    data: DataArg = None,
    out: str | Path,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    eval_split: str = "test",
    sets: Sequence[str] | None = None,
    command: str | None = None,
    **overrides: Any,
) -> Run | None:
    """Train one model on the train split, select on val, score ``eval_split`` once, and write the run folder.

    ``overrides`` are option names (``epochs=3``, ``backbone="resnet18"``, ``seed=1`` for the split and the
    training) or ``"section.key"`` pairs; ``sets`` are ``--set`` strings. ``resume`` continues a killed run in
    ``out`` with the settings it started with. ``eval_split="val"`` scores the validation split instead, for
    model selection that never touches the test split. Under DDP every rank calls this; rank zero scores,
    writes and returns the run, the other ranks train alongside it and return None.
    """
    from affectlab.atomic import run_folder, write_json
    from affectlab.config import resolve_config
    from affectlab.data.dataset import open_dataset
    from affectlab.experiment import check_resumable, finish_tracking, run_experiment
    from affectlab.models.backbones import get_backbone_spec
    from affectlab.training.distributed import is_main_process
    from affectlab.training.loggers import DEFAULT_EXPERIMENT, Tracking, require_logger

    cfg = resolve_config(recipe, _with_data(data, overrides), sets).single_run()
    get_backbone_spec(cfg.model.backbone)
    if cfg.model.branch is not None:
        try:
            get_backbone_spec(cfg.model.branch)
        except AffectlabError as exc:
            raise AffectlabError(f"model.branch: {exc}") from None
    require_logger(cfg.train)
    out = Path(out)
    tracking = Tracking(DEFAULT_EXPERIMENT, out.resolve().name, str(out.resolve()))
    if not is_main_process():  # another rank of a DDP run: train alongside rank zero, which owns the run folder
        prepared = open_dataset(cfg.data, cfg.model.input_size)
        return run_experiment(
            cfg, prepared, out, progress=False, resume=resume, eval_split=eval_split, tracking=tracking
        )
    if resume:
        check_resumable(out, cfg, overwrite)
    with run_folder(out, overwrite, keep_if=RESUMABLE, kind="train", resume=resume, command=command) as folder:
        prepared = open_dataset(cfg.data, cfg.model.input_size)
        run = run_experiment(
            cfg,
            prepared,
            folder,
            progress=progress,
            resume=resume,
            name=out.resolve().name,
            eval_split=eval_split,
            tracking=tracking,
        )
        assert run is not None
        run.data = prepared.summary()
        run.path = out
        write_json(folder / "run.json", run.to_dict())
        finish_tracking(run, folder)
    return run


def evaluate(
    run: str | Path | Run,
    data: str | None = None,
    split: str = "test",
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    tta_flip: bool | None = None,
    robustness: bool | None = None,
    faces_in_scenes: bool | None = None,
) -> Metrics:
    """Score a saved run on its test or validation split, or (``split="all"``) on other data.

    Writes ``metrics.json`` and the figures (into the run folder for its own test split, else into
    ``eval-<split>-<data>`` inside it, or into ``out``); ``tta_flip`` overrides the run's flip TTA,
    ``robustness`` its ``train.robustness`` (the scores under camera damage, docs/robustness.md) and
    ``faces_in_scenes`` its ``train.faces_in_scenes`` (the faces pasted into generated scenes, through the
    default detector).
    """
    from affectlab.experiment import Run, evaluate_run

    path = run.path if isinstance(run, Run) else run
    return evaluate_run(
        path, data, split, out, overwrite, tta_flip=tta_flip, robustness=robustness, faces_in_scenes=faces_in_scenes
    )


def study(
    recipe: str | Path | RunConfig | None = None,
    *,
    data: DataArg = None,
    out: str | Path,
    overwrite: bool = False,
    progress: bool = True,
    sets: Sequence[str] | None = None,
    command: str | None = None,
    **overrides: Any,
) -> Study:
    """Train every backbone x task of the config's study grid on one shared split per seed, then write
    ``summary.json``, the reports and ``study.yaml``.

    The grid is ``study.backbones``, ``study.tasks``, ``study.seeds`` and ``study.backbone_weights``
    (``backbones=["resnet18"]``, ``seeds=[0, 1, 2]``, ``backbone_weights={"vgg16": "none"}``); without them,
    the recipe's own backbone and task, else the reference study's VGG16 and MobileNetV2 x both tasks.
    """
    from affectlab.config import resolve_config
    from affectlab.studies import run_study

    cfg = resolve_config(recipe, _with_data(data, overrides), sets)
    if cfg.train.devices != 1 or cfg.train.num_nodes != 1:
        raise AffectlabError(
            "study trains its models one after another on one device each; "
            "use 'affectlab train --devices N' for a multi-device run"
        )
    return run_study(cfg, out, overwrite, progress, command=command)


def predict(
    model: str | Path | None = None,
    inputs: str | Path | Sequence[str | Path] = (),
    *,
    out: str | Path | TextIO | None = None,
    webcam: int | None = None,
    save_annotated: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
    config: PredictConfig | None = None,
    **options: Any,
) -> PredictSummary:
    """Find the faces in photos, folders (recursive), videos or a webcam, and predict expression and V/A for each.

    Args:
        model: a run folder, a ``.pt`` checkpoint, a ``.onnx`` file or a named model; None: the bundled
            ``affectlab-base`` (see docs/first-hour.md).
        inputs: image files, folders and video files (one path or several).
        out: where the records go: a ``.jsonl`` or ``.csv`` file (``.parquet`` with ``engine="ray"``), written
            atomically; an open text stream (JSON lines, as ``affectlab predict`` writes to stdout); or None to
            keep the results in memory, in ``summary.results`` (for long videos, give a file).
        webcam: also read this camera (e.g. 0) until Ctrl-C.
        save_annotated: a folder for copies of the inputs with boxes, labels and V/A drawn on them.
        overwrite: replace an existing ``out`` file or annotated files.
        progress: show a progress bar on stderr.
        config: prediction settings; ``options`` (``detector="haar"``, ``every=5``, ...) are its fields, and
            override it.

    Returns:
        The counts (items, faces, no face, errors), the files written, and without ``out`` the ``ImageResult``
        of each item (one ``FaceResult`` per face), in input order. An unreadable input is an error record, not
        an exception.

    Raises:
        AffectlabError: before any work, for a bad model, option, output path or camera.

    Example:
        >>> summary = affectlab.predict(None, "photos/", detector="haar")  # None: the bundled model
        >>> [(face.label, face.valence) for result in summary.results for face in result]
    """
    from affectlab.models.registry import resolve_model
    from affectlab.runtime.faces import make_detector
    from affectlab.runtime.pipeline import check_out_file, predict_local
    from affectlab.runtime.sources import expand_inputs

    config = _predict_config(config, options)
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if not inputs and webcam is None:
        raise AffectlabError("predict: give at least one INPUT (image, folder or video) or --webcam INDEX")
    model = resolve_model(model)  # a named model is checked (or downloaded) before any input is read
    if config.shard is not None and webcam is not None:
        raise AffectlabError("--shard splits files between jobs; it cannot be used with --webcam")
    if config.engine == "ray":
        from affectlab.batch.ray_engine import check_ray_request

        check_ray_request(out, webcam is not None, save_annotated is not None)
    if isinstance(out, (str, Path)):
        check_out_file(Path(out), overwrite, ".parquet" if config.engine == "ray" else ".jsonl or .csv")
    detector = make_detector(config.detector)  # an unknown detector fails before anything is read
    sources = expand_inputs([str(i) for i in inputs], webcam)
    if not sources:
        raise AffectlabError("no images or videos found in the given inputs")
    if config.shard is not None:
        from affectlab.batch.sharding import take_shard

        sources = take_shard(sources, *config.shard)
    from affectlab.export.runtime_model import model_for_backend

    given, model = model, model_for_backend(model, config.backend)  # a run folder runs from its ONNX export
    if config.engine == "ray":
        from affectlab.batch.ray_engine import RaySettings, predict_with_ray

        return predict_with_ray(RaySettings(str(model), config), sources, Path(out))  # type: ignore[arg-type]
    local = replace(config, detector=detector)  # the one made above: "auto" says once what it picked
    return predict_local(model, sources, local, out, save_annotated, overwrite, progress, source=given)


def _predict_config(config: PredictConfig | None, options: dict[str, Any]) -> PredictConfig:
    """``config`` (default: the defaults) with ``options`` (field names) replacing its values."""
    (known,) = split_options(options, PredictConfig)
    return replace(config, **known) if config is not None else PredictConfig(**known)


def _with_data(data: DataArg, overrides: dict[str, Any]) -> dict[str, Any]:
    """``data`` as the ``data.path`` option, or a list of several as ``data.sources`` (paths, or mappings with a
    ``path`` and the other ``SourceConfig`` keys); without it, the recipe's (or the demo's) data."""
    if data is None:
        return overrides
    if isinstance(data, (str, Path)):
        return {"data.path": str(data), "data.sources": [], **overrides}
    sources = [str(item) if isinstance(item, (str, Path)) else item for item in data]
    if not sources:
        raise AffectlabError("data=[]: name at least one dataset")
    first = sources[0]
    return {"data.path": first if isinstance(first, str) else first.get("path"), "data.sources": sources, **overrides}
