"""Fit the crop protocol of a run trained before ``train.fit_crop`` existed (see ``affectlab.runtime.crop_fit``).

Usage::

    python tools/fit_crop.py runs/my-run            # print the fit, change nothing
    python tools/fit_crop.py runs/my-run --write    # store it in runs/my-run/model.pt (rewritten atomically)

The fit runs the default detector over the run's own training split (its ``split.json``), as training now does
after the last epoch. Without ``--write`` the run keeps the crop it was trained and evaluated with.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from affectlab.config import load_recipe
from affectlab.data.dataset import open_dataset
from affectlab.errors import AffectlabError
from affectlab.models.checkpoint import load_checkpoint, save_face_crop
from affectlab.runtime.crop_fit import fit_crop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder (config.yaml, split.json, model.pt)")
    parser.add_argument("--write", action="store_true", help="store the fitted crop in the run's model.pt")
    args = parser.parse_args(argv)
    try:
        if not (args.run / "split.json").is_file():
            raise AffectlabError(f"{args.run}: no split.json; the crop is fitted on the run's own training split")
        cfg = load_recipe(args.run / "config.yaml")
        _, meta = load_checkpoint(args.run)
        data_cfg = dataclasses.replace(cfg.data, split_file=str(args.run / "split.json"))
        train = open_dataset(data_cfg, meta.preprocess.input_size, splits=("train",)).splits["train"]
        fit = fit_crop(train.images, seed=cfg.train.seed)
        print(json.dumps(fit.to_dict()))
        if args.write and fit.fitted:
            assert fit.margin is not None and fit.shift is not None
            save_face_crop(args.run / "model.pt", fit.margin, fit.shift)
            print(f"{args.run / 'model.pt'}: crop margin {fit.margin}, shift {fit.shift}")
    except AffectlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
