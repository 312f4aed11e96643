"""The Python API: one function per CLI verb, each returning a typed result with ``to_dict()``.

The CLI parses its arguments and makes exactly one of these calls, so what a script does with
``affectlab.train(...)`` is what ``affectlab train ...`` does. Settings resolve as everywhere:
defaults < recipe (a path, a packaged name such as ``"best"``, or a ``RunConfig``) < keyword overrides < ``sets``.

    >>> import affectlab
    >>> run = affectlab.train("best", data="path/to/affectnet", out="runs/best", epochs=3)
    >>> run.metrics.accuracy, run.metrics.ccc
    >>> metrics = affectlab.evaluate(run.path, split="val")
    >>> study = affectlab.study("reference", data="path/to/affectnet", out="runs/reference")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from affectlab.atomic import run_folder, write_json
from affectlab.config import RunConfig, resolve_config
from affectlab.data.dataset import open_dataset
from affectlab.errors import AffectlabError
from affectlab.evaluation.evaluate import Metrics
from affectlab.experiment import Run, check_resumable, evaluate_run, run_experiment
from affectlab.models.backbones import get_backbone_spec
from affectlab.study import Study, run_study
from affectlab.training.distributed import is_main_process

__all__ = ["Metrics", "Run", "Study", "evaluate", "study", "train"]

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
    cfg = resolve_config(recipe, _with_data(data, overrides), sets).single_run()
    get_backbone_spec(cfg.model.backbone)
    out = Path(out)
    if not is_main_process():  # another rank of a DDP run: train alongside rank zero, which owns the run folder
        prepared = open_dataset(cfg.data, cfg.model.input_size)
        return run_experiment(cfg, prepared, out, progress=False, resume=resume, eval_split=eval_split)
    if resume:
        check_resumable(out, cfg, overwrite)
    with run_folder(out, overwrite, keep_if=RESUMABLE, kind="train", resume=resume, command=command) as folder:
        prepared = open_dataset(cfg.data, cfg.model.input_size)
        run = run_experiment(
            cfg, prepared, folder, progress=progress, resume=resume, name=out.resolve().name, eval_split=eval_split
        )
        assert run is not None
        run.data = prepared.summary()
        run.path = out
        write_json(folder / "run.json", run.to_dict())
    return run


def evaluate(
    run: str | Path | Run,
    data: str | None = None,
    split: str = "test",
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    tta_flip: bool | None = None,
) -> Metrics:
    """Score a saved run on its test or validation split, or (``split="all"``) on other data.

    Writes ``metrics.json`` and the figures (into the run folder for its own test split, else into
    ``eval-<split>-<data>`` inside it, or into ``out``); ``tta_flip`` overrides the run's flip TTA.
    """
    return evaluate_run(run.path if isinstance(run, Run) else run, data, split, out, overwrite, tta_flip=tta_flip)


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
    cfg = resolve_config(recipe, _with_data(data, overrides), sets)
    if cfg.train.devices != 1 or cfg.train.num_nodes != 1:
        raise AffectlabError(
            "study trains its models one after another on one device each; "
            "use 'affectlab train --devices N' for a multi-device run"
        )
    return run_study(cfg, out, overwrite, progress, command=command)


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
