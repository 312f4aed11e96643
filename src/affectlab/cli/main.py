"""The ``affectlab`` command: verbs for data, study, train, evaluate, predict, export and serve.

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
from pathlib import Path
from typing import Any

from affectlab.cli.checks import preflight
from affectlab.config import TASKS, choices, packaged_recipes
from affectlab.errors import AffectlabError
from affectlab.version import __version__

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        action="append",
        help="dataset folder, AffectNet CSV file, or 'demo' (built-in synthetic faces); repeat it to train on "
        "several datasets at once (each split per source; see data.sources)",
    )
    _add_source_args(p)


def _add_source_args(p: argparse.ArgumentParser) -> None:
    """How to read a dataset and which split to use (train, study and data convert)."""
    p.add_argument("--layout", choices=choices("data", "layout"), help="dataset layout (default: auto)")
    p.add_argument("--image-root", help="image folder for the CSV layout (default: the CSV's folder)")
    p.add_argument("--class-map", help="class folders: NAME=Emotion,... to map folder names to emotions")
    p.add_argument(
        "--on-bad-sample", choices=choices("data", "on_bad_sample"), help="skip unreadable samples (default) or stop"
    )
    p.add_argument("--split-file", help="reuse a saved split.json instead of drawing a new split")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--recipe",
        help=f"YAML recipe file or packaged recipe ({', '.join(packaged_recipes())}); flags below override it",
    )
    p.add_argument(
        "--weights",
        help="imagenet | none | PATH (facemesh, face_resnet29: their own, 'facemesh', 'face'), or per backbone: "
        "vgg16=none,facemesh=facemesh",
    )
    p.add_argument("--freeze", action=argparse.BooleanOptionalAction, default=None, help="freeze the backbone")
    p.add_argument("--input-size", type=int, help="input side in pixels (default 128)")
    p.add_argument("--epochs", type=int, help="maximum epochs (default 12)")
    p.add_argument("--batch-size", type=int, help="batch size (default 32)")
    p.add_argument("--lr", type=float, help="learning rate of the head (default 1e-3)")
    p.add_argument("--seed", type=int, help="seed for the split and training (default 0)")
    p.add_argument("--out", required=True, help="output folder (refused if it exists, unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--accelerator", choices=choices("train", "accelerator"), help="where to train (default auto)")
    p.add_argument(
        "--devices", type=int, help="devices per node (default 1; -1: all); more than 1 needs --strategy ddp"
    )
    p.add_argument("--num-nodes", type=int, help="nodes (default 1); launch each under torchrun or srun")
    p.add_argument("--strategy", choices=choices("train", "strategy"), help="auto (default) or ddp")
    p.add_argument(
        "--logger",
        choices=choices("train", "logger"),
        help="experiment tracking: csv (history.csv only, default), tensorboard or mlflow",
    )
    p.add_argument("--logger-uri", help="mlflow tracking URI, or tensorboard log folder (see docs/training.md)")
    p.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        dest="overrides",
        help="any recipe option, e.g. --set train.num_workers=8 --set model.input_size=224 (repeatable)",
    )


def _pairs(text: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, v in (item.split("=", 1) for item in _csv(text))}


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Each flag that was given, as the named option it sets; unset flags leave the recipe's value."""
    weights: str | None = getattr(args, "weights", None)
    per_backbone = weights is not None and "=" in weights
    seeds = getattr(args, "seeds", None)
    flags = {
        **_data_overrides(args),
        "seed": args.seed,
        "model.weights": None if per_backbone else weights,
        "study.backbone_weights": _pairs(weights) if weights is not None and per_backbone else None,
        "model.freeze": args.freeze,
        "model.input_size": args.input_size,
        "model.backbone": getattr(args, "backbone", None),
        "model.task": getattr(args, "task", None),
        "train.epochs": args.epochs,
        "train.batch_size": args.batch_size,
        "train.lr": args.lr,
        "train.accelerator": args.accelerator,
        "train.devices": args.devices,
        "train.num_nodes": args.num_nodes,
        "train.strategy": args.strategy,
        "train.logger": args.logger,
        "train.logger_uri": args.logger_uri,
        "study.backbones": _csv(args.backbones) if getattr(args, "backbones", None) else None,
        "study.tasks": _csv(args.tasks) if getattr(args, "tasks", None) else None,
        "study.seeds": [int(s) for s in _csv(seeds)] if seeds else None,
        "study.source_sets": _source_sets(args.source_sets) if getattr(args, "source_sets", None) else None,
    }
    return {name: value for name, value in flags.items() if value is not None}


def _data_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        **_data_paths(args),
        "data.layout": args.layout,
        "data.image_root": args.image_root,
        "data.class_map": _pairs(args.class_map) if args.class_map else None,
        "data.on_bad_sample": args.on_bad_sample,
        "data.split_file": args.split_file,
    }


def _data_paths(args: argparse.Namespace) -> dict[str, Any]:
    """One ``--data`` is ``data.path`` as always; several are ``data.sources`` (``data.path`` names the first)."""
    paths: list[str] = [args.data] if isinstance(args.data, str) else args.data or []
    if len(paths) <= 1:
        return {"data.path": paths[0], "data.sources": []} if paths else {}
    per_source = [flag for flag in ("layout", "image_root", "class_map") if getattr(args, flag) is not None]
    if per_source:
        flags = ", ".join("--" + flag.replace("_", "-") for flag in per_source)
        raise AffectlabError(
            f"{flags} with several --data: each source has its own; list them under data.sources in a recipe"
        )
    return {"data.path": paths[0], "data.sources": [{"path": path} for path in paths]}


def _source_sets(text: str) -> list[list[str]]:
    """``a;b;a,b`` -> ``[[a], [b], [a, b]]``: the sources each model of a study trains on."""
    return [_csv(part) for part in text.split(";") if part.strip()]


def cmd_study(args: argparse.Namespace) -> int:
    from affectlab.api import study
    from affectlab.training.fit import quiet_lightning

    quiet_lightning(args.verbose)
    result = study(
        args.config, out=args.out, overwrite=args.overwrite, progress=not args.quiet, command=args.command_line
    )
    _print_table(result.to_dict()["runs"])
    print(f"report: {result.report}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from affectlab.api import train
    from affectlab.training.fit import quiet_lightning

    quiet_lightning(args.verbose)
    run = train(
        args.config,
        out=args.out,
        overwrite=args.overwrite,
        resume=args.resume,
        progress=not args.quiet,
        command=args.command_line,
    )
    if run is not None:  # rank zero of a DDP run, or a single process
        _print_table([run.to_dict()])
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from affectlab.api import evaluate
    from affectlab.evaluation.analysis import format_analysis
    from affectlab.evaluation.trust import format_confidence

    metrics = evaluate(
        args.run_dir,
        args.data,
        args.split,
        out=args.out,
        overwrite=args.overwrite,
        tta_flip=args.tta_flip,
        robustness=args.robustness,
        faces_in_scenes=args.faces_in_scenes,
    )
    _print_table([{"name": Path(args.run_dir).name, "metrics": metrics.to_dict()}])
    print(format_analysis(metrics.analysis))
    if metrics.robustness is not None:
        print(f"robustness: {metrics.robustness['sentence']}")
    if metrics.faces_in_scenes is not None:
        print(f"faces in scenes: {metrics.faces_in_scenes['sentence']}")
    confidence = format_confidence(metrics.to_dict().get("confidence"))
    if confidence:
        print(confidence)
    print(f"metrics: {metrics.path}")
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
    from affectlab.config import resolve_config
    from affectlab.data.shards import convert_dataset

    flags = {**_data_overrides(args), "data.split_seed": args.seed, "model.input_size": args.input_size}
    given = {name: value for name, value in flags.items() if value is not None}
    cfg = resolve_config(args.recipe, given, args.overrides)
    size = cfg.model.input_size
    manifest = convert_dataset(cfg.data, args.out, size, args.workers, args.overwrite, args.command_line)
    counts = ", ".join(f"{name} {n}" for name, n in manifest["counts"].items())
    print(
        f"wrote {sum(manifest['counts'].values())} faces at {size} px to {args.out} ({counts}; "
        f"{len(manifest['skipped'])} skipped)"
    )
    return 0


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _num(value: float | None) -> str:
    """Three decimals, or '-' where a metric is undefined on the data (kappa and AUC with one class, CCC of constants)."""
    return "-" if value is None else f"{value:.3f}"


def _print_table(runs: list[dict[str, Any]]) -> None:
    for run in runs:
        _print_row(run["name"], run["metrics"])
        for name, document in run["metrics"].get("sources", {}).items():  # several sources: each one's test split
            shared = document.get("classification_shared")
            extra = f"  ({len(shared['classes'])} shared classes: acc {_num(shared['accuracy'])})" if shared else ""
            _print_row(f"  {name}{'' if document['in_domain'] else ' (not trained on)'}", document, extra)


def _print_row(label: str, m: dict[str, Any], extra: str = "") -> None:
    parts = [label]
    if "classification" in m:
        c = m["classification"]
        parts.append(
            f"acc {_num(c['accuracy'])} f1w {_num(c['f1_weighted'])} kappa {_num(c['cohen_kappa'])} "
            f"auc {_num(c['auc_ovr'])}"
        )
    for dim in ("valence", "arousal"):
        if dim in m:
            d = m[dim]
            parts.append(f"{dim[0].upper()}: rmse {_num(d['rmse'])} ccc {_num(d['ccc'])}")
    if "votes" in m:  # crowd-voted faces (FER+): acc is the majority-vote accuracy, ties left out
        v = m["votes"]
        parts.append(f"votes: ce {_num(v['vote_cross_entropy'])} top-vote {_num(v['top_vote_agreement'])}")
    print("  ".join(parts) + extra)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="affectlab", description="Facial affect recognition: train, evaluate, use.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    parser.add_argument("--version", action="version", version=f"affectlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    study = sub.add_parser("study", help="train and compare backbones x tasks on one split, write a report")
    _add_data_args(study)
    _add_model_args(study)
    study.add_argument(
        "--backbones",
        help="comma-separated backbones (default: the recipe's grid, else vgg16,mobilenet_v2; demo: resnet18)",
    )
    study.add_argument(
        "--tasks", help="comma-separated tasks (default: the recipe's grid, else classification,regression)"
    )
    study.add_argument("--seeds", help="comma-separated split/training seeds, e.g. 0,1,2 (mean ± std)")
    study.add_argument(
        "--source-sets",
        help="with several --data: the sources each model trains on, sets separated by ';' and names by ',', e.g. "
        "'affectnet-3999;fer2013-train;affectnet-3999,fer2013-train' (every model is scored on every source)",
    )
    study.set_defaults(handler=cmd_study)

    train = sub.add_parser("train", help="train one model from a recipe, evaluate it on the test split")
    _add_data_args(train)
    _add_model_args(train)
    train.add_argument("--backbone", help="backbone (default: the recipe's, else mobilenet_v2)")
    train.add_argument("--task", choices=TASKS, help="task")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue a killed training in --out from its last finished epoch (same settings)",
    )
    train.set_defaults(handler=cmd_train)

    evaluate = sub.add_parser("evaluate", help="score a trained run on its split or on other data")
    evaluate.add_argument(
        "run_dir", help="run folder written by train or study, or a named model (affectlab-base, with --split all)"
    )
    evaluate.add_argument("--data", help="other dataset to score (use with --split all)")
    evaluate.add_argument("--split", default="test", choices=["test", "val", "all"])
    evaluate.add_argument("--out", help="where to write metrics.json and figures")
    evaluate.add_argument("--overwrite", action="store_true")
    evaluate.add_argument(
        "--tta-flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average over the image and its mirror (default: as the run was trained)",
    )
    evaluate.add_argument(
        "--robustness",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also score under camera damage, 9 damages x 3 severities (default: the run's train.robustness)",
    )
    evaluate.add_argument(
        "--faces-in-scenes",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also paste the faces into generated scenes and score them through the default detector "
        "(default: the run's train.faces_in_scenes)",
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
    check.add_argument("--layout", choices=choices("data", "layout"))
    check.add_argument("--image-root")
    check.set_defaults(handler=cmd_data_check)
    convert = data_sub.add_parser("convert", help="write a dataset as LitData shards (split once), to stream it")
    convert.add_argument("data", metavar="DATA", help="dataset folder, AffectNet CSV file, or 'demo'")
    convert.add_argument("--out", required=True, help="new or empty folder for the shards and manifest.json")
    convert.add_argument(
        "--recipe", help="recipe whose model.input_size and data settings (split seed, fractions) to convert with"
    )
    convert.add_argument(
        "--input-size", type=int, help="side of the stored face crops (default: the recipe's, else 128; demo: 64)"
    )
    convert.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="hashing/encoding processes")
    _add_source_args(convert)
    convert.add_argument("--seed", type=int, help="split seed (default 0, as train and study)")
    convert.add_argument("--overwrite", action="store_true", help="replace an earlier conversion in --out")
    convert.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        dest="overrides",
        help="any data or model option, e.g. --set data.val_fraction=0.1 (repeatable)",
    )
    convert.set_defaults(handler=cmd_data_convert)

    _add_deploy_commands(sub)
    return parser


def _add_deploy_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from affectlab.cli.deploy import add_commands

    add_commands(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["affectlab", *(sys.argv[1:] if argv is None else map(str, argv))])
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    previous = _terminate_as_interrupt()
    try:
        args.config = preflight(args, _flag_overrides)  # before torch is imported: a wrong value is answered at once
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
