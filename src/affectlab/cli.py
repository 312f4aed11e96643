"""The ``affectlab`` command: verbs for data, study, train, evaluate (and predict/export from inference).

Every user-caused failure is an ``AffectlabError`` and ends as one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from affectlab.errors import AffectlabError

__all__ = ["main", "build_parser"]

Handler = Callable[[argparse.Namespace], int]

#: What ``--data demo`` changes unless a recipe or flag says otherwise: nothing to download, a few minutes on 2 cores.
#: ResNet18 is used because it learns from random initialisation in a few epochs; VGG16 (no BatchNorm) stays at
#: chance from scratch and MobileNetV2 needs far more epochs (both measured on the demo set).
DEMO_PRESET = {"backbones": "resnet18", "weights": "none", "freeze": False, "input_size": 64, "epochs": 12}
STUDY_BACKBONES = "vgg16,mobilenet_v2"


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="dataset folder, AffectNet CSV file, or 'demo' (built-in synthetic faces)")
    p.add_argument("--layout", choices=["auto", "affectnet", "csv", "folders"], help="dataset layout (default: auto)")
    p.add_argument("--image-root", help="image folder for the CSV layout (default: the CSV's folder)")
    p.add_argument("--class-map", help="class folders: NAME=Emotion,... to map folder names to emotions")
    p.add_argument("--on-bad-sample", choices=["skip", "error"], help="skip unreadable samples (default) or stop")
    p.add_argument("--split-file", help="reuse a saved split.json instead of drawing a new split")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", help="YAML recipe (recipes/*.yaml); flags below override it")
    p.add_argument("--weights", help="imagenet | none | PATH, or per backbone: vgg16=none,mobilenet_v2=imagenet")
    p.add_argument("--freeze", action=argparse.BooleanOptionalAction, default=None, help="freeze the backbone")
    p.add_argument("--input-size", type=int, help="input side in pixels (default 128)")
    p.add_argument("--epochs", type=int, help="maximum epochs (default 12)")
    p.add_argument("--batch-size", type=int, help="batch size (default 32)")
    p.add_argument("--lr", type=float, help="learning rate of the head (default 1e-3)")
    p.add_argument("--seed", type=int, help="seed for the split and training (default 0)")
    p.add_argument("--out", required=True, help="output folder (refused if it exists, unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--accelerator", help="auto (default), cpu, gpu, cuda or mps")
    p.add_argument("--devices", type=int, help="devices per node (default 1; -1: all); more than 1 needs --strategy ddp")
    p.add_argument("--num-nodes", type=int, help="nodes (default 1); launch each under torchrun or srun")
    p.add_argument("--strategy", help="auto (default) or ddp")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", dest="overrides",
                   help="any recipe option, e.g. --set train.num_workers=8 --set model.input_size=224 (repeatable)")


def _parse_weights(text: str | None) -> tuple[str | None, dict[str, str]]:
    """'imagenet' -> default for all; 'vgg16=none,mobilenet_v2=imagenet' -> per backbone."""
    if not text:
        return None, {}
    if "=" not in text:
        return text, {}
    pairs = dict(item.split("=", 1) for item in text.split(",") if item)
    return None, {k.strip(): v.strip() for k, v in pairs.items()}


def _resolve_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from affectlab.config import RunConfig, load_recipe, parse_overrides, validate, with_overrides

    cfg = load_recipe(args.recipe) if args.recipe else RunConfig()
    data, model, train = cfg.data, cfg.model, cfg.train
    if args.data:
        data = replace(data, path=args.data)
    if data.path == "demo" and not args.recipe:
        model = replace(model, backbone=str(DEMO_PRESET["backbones"]).split(",")[0],
                        weights=str(DEMO_PRESET["weights"]), freeze=bool(DEMO_PRESET["freeze"]),
                        input_size=int(DEMO_PRESET["input_size"]))
        train = replace(train, epochs=int(DEMO_PRESET["epochs"]))
    class_map = dict(item.split("=", 1) for item in args.class_map.split(",")) if args.class_map else data.class_map
    data = replace(
        data, layout=args.layout or data.layout, image_root=args.image_root or data.image_root, class_map=class_map,
        on_bad_sample=args.on_bad_sample or data.on_bad_sample, split_file=args.split_file or data.split_file,
        split_seed=data.split_seed if args.seed is None else args.seed,
    )
    default_weights, _ = _parse_weights(args.weights)
    model = replace(
        model, weights=default_weights or model.weights, freeze=model.freeze if args.freeze is None else args.freeze,
        input_size=args.input_size or model.input_size,
    )
    train = replace(
        train, epochs=args.epochs or train.epochs, batch_size=args.batch_size or train.batch_size, lr=args.lr or train.lr,
        seed=train.seed if args.seed is None else args.seed, accelerator=args.accelerator or train.accelerator,
        devices=train.devices if args.devices is None else args.devices, num_nodes=args.num_nodes or train.num_nodes,
        strategy=args.strategy or train.strategy,
    )
    cfg = RunConfig(data, model, train)
    validate(cfg, args.recipe or "command line")
    return with_overrides(cfg, parse_overrides(args.overrides))


def cmd_study(args: argparse.Namespace) -> int:
    from affectlab.study import run_study
    from affectlab.training.fit import quiet_lightning

    quiet_lightning(args.verbose)
    cfg = _resolve_config(args)
    if cfg.train.devices != 1 or cfg.train.num_nodes != 1:
        raise AffectlabError("study trains its models one after another on one device each; "
                             "use 'affectlab train --devices N' for a multi-device run")
    _, per_backbone = _parse_weights(args.weights)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    backbones = args.backbones or (DEMO_PRESET["backbones"] if cfg.data.path == "demo" and not args.recipe else STUDY_BACKBONES)
    summary = run_study(
        cfg, args.out, _csv(str(backbones)), _csv(args.tasks), per_backbone, seeds, args.overwrite, not args.quiet,
        command=args.command_line,
    )
    _print_table(summary)
    print(f"report: {Path(args.out) / 'report.html'}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from affectlab.atomic import run_folder, write_json
    from affectlab.data.prepared import prepare_data
    from affectlab.experiment import run_experiment
    from affectlab.training.distributed import is_main_process
    from affectlab.training.fit import quiet_lightning

    quiet_lightning(args.verbose)
    cfg = _resolve_config(args)
    if args.backbone:
        cfg = replace(cfg, model=replace(cfg.model, backbone=args.backbone))
    if args.task:
        cfg = replace(cfg, model=replace(cfg.model, task=args.task))
    from affectlab.models.registry import get_backbone_spec

    get_backbone_spec(cfg.model.backbone)
    if not is_main_process():  # another rank of a DDP run: train alongside rank zero, which owns the run folder
        prepared = prepare_data(cfg.data, cfg.model.input_size)
        run_experiment(cfg, prepared, Path(args.out), progress=False, resume=args.resume)
        return 0
    if args.resume:
        _check_resumable(Path(args.out), cfg, args.overwrite)
    resumable = ("model.pt", "checkpoints/last.ckpt")  # a killed run keeps its folder, to be resumed
    with run_folder(
        args.out, args.overwrite, keep_if=resumable, kind="train", resume=args.resume, command=args.command_line
    ) as out:
        prepared = prepare_data(cfg.data, cfg.model.input_size)
        record = run_experiment(
            cfg, prepared, out, progress=not args.quiet, resume=args.resume, name=Path(args.out).resolve().name
        )
        write_json(out / "run.json", {**record, "data": prepared.summary()})
    _print_table({"runs": [record]})
    return 0


def _check_resumable(out: Path, cfg, overwrite: bool) -> None:  # type: ignore[no-untyped-def]
    """``--resume`` continues the run only with the settings it started with."""
    from affectlab.config import load_recipe
    from affectlab.training.fit import last_checkpoint

    if overwrite:
        raise AffectlabError("--resume continues a run and --overwrite replaces it; give one of them")
    if not last_checkpoint(out).is_file():
        raise AffectlabError(
            f"{out}: nothing to resume (no checkpoints/last.ckpt: the training finished, or never ended an epoch)"
        )
    if (out / "model.pt").exists():
        raise AffectlabError(f"{out}: the training already finished (model.pt exists)")
    saved = load_recipe(out / "config.yaml")
    if saved.to_dict() != cfg.to_dict():
        changed = [
            f"{section}.{key}" for section, values in cfg.to_dict().items() for key, value in values.items()
            if saved.to_dict().get(section, {}).get(key) != value
        ]
        raise AffectlabError(f"{out}: --resume needs the settings the run started with; changed: {', '.join(changed)}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from affectlab.evaluation.analysis import format_analysis
    from affectlab.evaluation.evaluate import evaluate_run

    metrics, target = evaluate_run(args.run_dir, args.data, args.split, args.out, args.overwrite, tta_flip=args.tta_flip)
    _print_table({"runs": [{"name": Path(args.run_dir).name, "metrics": metrics}]})
    print(format_analysis(metrics["analysis"]))
    print(f"metrics: {target / 'metrics.json'}")
    return 0


def cmd_data_demo(args: argparse.Namespace) -> int:
    from affectlab.data.demo import generate_demo_dataset

    path = generate_demo_dataset(args.out, n_per_class=args.n_per_class, image_size=args.size, seed=args.seed)
    print(f"wrote {8 * args.n_per_class} synthetic faces to {path}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from affectlab.data.check import check_dataset, format_report

    report = check_dataset(args.path, args.layout or "auto", args.image_root)
    print(format_report(report))
    return 1 if report.fatal else 0


def cmd_data_convert(args: argparse.Namespace) -> int:
    from affectlab.config import DataConfig
    from affectlab.data.shards import convert_dataset

    class_map = dict(item.split("=", 1) for item in args.class_map.split(",")) if args.class_map else {}
    cfg = DataConfig(path=args.data, layout=args.layout, image_root=args.image_root, class_map=class_map,
                     on_bad_sample=args.on_bad_sample, split_seed=args.seed, split_file=args.split_file)
    manifest = convert_dataset(cfg, args.out, args.input_size, args.workers, args.overwrite, args.command_line)
    counts = ", ".join(f"{name} {n}" for name, n in manifest["counts"].items())
    print(f"wrote {sum(manifest['counts'].values())} faces at {args.input_size} px to {args.out} ({counts}; "
          f"{len(manifest['skipped'])} skipped)")
    return 0


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _num(value: float | None) -> str:
    """Three decimals, or '-' where a metric is undefined on the data (kappa and AUC with one class, CCC of constants)."""
    return "-" if value is None else f"{value:.3f}"


def _print_table(summary: dict) -> None:  # type: ignore[type-arg]
    for run in summary["runs"]:
        m = run["metrics"]
        parts = [run["name"]]
        if "classification" in m:
            c = m["classification"]
            parts.append(f"acc {_num(c['accuracy'])} f1w {_num(c['f1_weighted'])} kappa {_num(c['cohen_kappa'])} "
                         f"auc {_num(c['auc_ovr'])}")
        for dim in ("valence", "arousal"):
            if dim in m:
                d = m[dim]
                parts.append(f"{dim[0].upper()}: rmse {_num(d['rmse'])} ccc {_num(d['ccc'])}")
        print("  ".join(parts))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="affectlab", description="Facial affect recognition: train, evaluate, use.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    study = sub.add_parser("study", help="train and compare backbones x tasks on one split, write a report")
    _add_data_args(study)
    _add_model_args(study)
    study.add_argument("--backbones", help=f"comma-separated backbones (default {STUDY_BACKBONES}; demo: resnet18)")
    study.add_argument("--tasks", default="classification,regression", help="comma-separated tasks")
    study.add_argument("--seeds", help="comma-separated split/training seeds, e.g. 0,1,2 (mean ± std)")
    study.set_defaults(handler=cmd_study)

    train = sub.add_parser("train", help="train one model from a recipe, evaluate it on the test split")
    _add_data_args(train)
    _add_model_args(train)
    train.add_argument("--backbone", help="backbone (default: the recipe's, else mobilenet_v2)")
    train.add_argument("--task", choices=["classification", "regression", "multitask"], help="task")
    train.add_argument("--resume", action="store_true",
                       help="continue a killed training in --out from its last finished epoch (same settings)")
    train.set_defaults(handler=cmd_train)

    evaluate = sub.add_parser("evaluate", help="score a trained run on its split or on other data")
    evaluate.add_argument("run_dir", help="run folder written by train or study")
    evaluate.add_argument("--data", help="other dataset to score (use with --split all)")
    evaluate.add_argument("--split", default="test", choices=["test", "val", "all"])
    evaluate.add_argument("--out", help="where to write metrics.json and figures")
    evaluate.add_argument("--overwrite", action="store_true")
    evaluate.add_argument(
        "--tta-flip", action=argparse.BooleanOptionalAction, default=None,
        help="average over the image and its mirror (default: as the run was trained)",
    )
    evaluate.set_defaults(handler=cmd_evaluate)

    data = sub.add_parser("data", help="demo data, dataset checks and conversion to shards")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    demo = data_sub.add_parser("demo", help="write the built-in synthetic face set")
    demo.add_argument("out")
    demo.add_argument("--n-per-class", type=int, default=100)
    demo.add_argument("--size", type=int, default=96)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=cmd_data_demo)
    check = data_sub.add_parser("check", help="report counts, V/A statistics and every problem in a dataset")
    check.add_argument("path")
    check.add_argument("--layout", choices=["auto", "affectnet", "csv", "folders"])
    check.add_argument("--image-root")
    check.set_defaults(handler=cmd_data_check)
    convert = data_sub.add_parser("convert", help="write a dataset as LitData shards (split once), to stream it")
    convert.add_argument("data", metavar="DATA", help="dataset folder, AffectNet CSV file, or 'demo'")
    convert.add_argument("--out", required=True, help="new or empty folder for the shards and manifest.json")
    convert.add_argument("--input-size", type=int, default=128, help="side of the stored face crops (default 128)")
    convert.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="hashing/encoding processes")
    convert.add_argument("--layout", choices=["auto", "affectnet", "csv", "folders"], default="auto")
    convert.add_argument("--image-root", help="image folder for the CSV layout (default: the CSV's folder)")
    convert.add_argument("--class-map", help="class folders: NAME=Emotion,... to map folder names to emotions")
    convert.add_argument("--on-bad-sample", choices=["skip", "error"], default="skip")
    convert.add_argument("--seed", type=int, default=0, help="split seed (default 0, as train and study)")
    convert.add_argument("--split-file", help="use a saved split.json instead of drawing the split")
    convert.add_argument("--overwrite", action="store_true", help="replace an earlier conversion in --out")
    convert.set_defaults(handler=cmd_data_convert)

    _add_inference_commands(sub)
    return parser


def _add_inference_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from affectlab.inference.commands import add_commands

    add_commands(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["affectlab", *(sys.argv[1:] if argv is None else map(str, argv))])
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    previous = _terminate_as_interrupt()
    try:
        return args.handler(args)
    except AffectlabError as exc:
        print(f"affectlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("affectlab: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _terminate_as_interrupt() -> Any:
    """SIGTERM (``kill``, a job scheduler) is handled like Ctrl-C: finished results kept, temporary files removed.
    Returns the previous handler, or None where signals cannot be set (not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_interrupt)


if __name__ == "__main__":
    sys.exit(main())
