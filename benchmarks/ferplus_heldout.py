"""FER+'s held-out faces that no model of the comparison has seen: today's bundled model against FER+-trained runs.

Issue 36 compares AffectNet + FER+ (votes) with AffectNet + FER-2013 (the bundled model). Both are scored on FER+'s
held-out split, but the FER-2013 copy (`fer2013-train`, 6,294 JPEG faces) holds the same images as FER+: a FER+ test
face may be a face the bundled model trained on. This script finds those faces by their pixels (the JPEGs are
re-encodings, so it matches each FER-2013 face to its nearest FER+ face and accepts a mean absolute difference of a
few grey levels; it prints the distance distribution so the cut can be checked), writes a FER+-layout folder of each
run's held-out faces without them (symbolic links and a filtered ``label.csv``, in a temporary folder: the data is
never copied), and scores every model on it with ``affectlab.evaluate(..., split="all")``: majority accuracy
(ties, unknown and NF left out, FER+'s standard protocol), macro-F1, and the vote cross-entropy and top-vote
agreement.

    python benchmarks/ferplus_heldout.py /work/runs/fp-s0 /work/runs/fp-s1 /work/runs/fp-s2 \\
        --ferplus ../shared/data/ferplus-train --fer2013 ../shared/data/fer2013-train \\
        --models affectlab-base [--out results/ferplus_heldout.json]

Each FER+ run's held-out faces are its own split's (``split.json``); every model in ``--models`` and the run itself
are scored on that run's subset, so a row compares models on the same faces. ``{seed}`` in a model's path is the
run's split seed, so each run can be paired with the run of the same seed trained without FER+
(``--models affectlab-base 'runs/face-s{seed}'``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from affectlab.atomic import write_json
from affectlab.data.ferplus import LABEL_FILE

#: Largest mean absolute difference (grey levels, 0-255) between a FER-2013 JPEG and its FER+ PNG to call them one
#: face: JPEG re-encoding moves pixels by a few levels; distinct faces differ by tens.
SAME_FACE = 8.0


def read_grey(paths: list[Path]) -> np.ndarray:
    """(N, 48, 48) uint8 faces; FER's images are all 48 px grey."""
    faces = np.empty((len(paths), 48, 48), np.uint8)
    for i, path in enumerate(paths):
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise SystemExit(f"{path}: cannot be read as an image")
        faces[i] = image if image.shape == (48, 48) else cv2.resize(image, (48, 48), interpolation=cv2.INTER_AREA)
    return faces


def fer2013_copies(ferplus: Path, fer2013: Path) -> tuple[set[str], np.ndarray]:
    """Names of FER+ images that are a face of ``fer2013``, and every FER-2013 face's distance to its nearest."""
    fp_paths = sorted(ferplus.glob("*.png"))
    fer_paths = sorted(fer2013.glob("*/*.jpg"))
    fp, fer = read_grey(fp_paths).astype(np.float32), read_grey(fer_paths).astype(np.float32)
    small = lambda x: x.reshape(len(x), 12, 4, 12, 4).mean(axis=(2, 4)).reshape(len(x), -1)
    a, b = small(fer), small(fp)
    copies: set[str] = set()
    distances = np.empty(len(fer), np.float32)
    b_sq = (b**2).sum(axis=1)
    for start in range(0, len(a), 512):
        chunk = a[start : start + 512]
        d2 = (chunk**2).sum(axis=1)[:, None] - 2 * chunk @ b.T + b_sq[None, :]
        for offset, row in enumerate(d2):
            i = start + offset
            candidates = np.argsort(row)[:5]
            full = np.abs(fp[candidates] - fer[i]).mean(axis=(1, 2))
            distances[i] = full.min()
            copies.update(fp_paths[c].name for c, d in zip(candidates, full, strict=True) if d <= SAME_FACE)
    return copies, distances


def heldout_folder(run: Path, ferplus: Path, leave_out: set[str], into: Path) -> tuple[Path, int, int]:
    """A FER+-layout folder of ``run``'s FER+ test faces not in ``leave_out``; (folder, kept, left out)."""
    split = json.loads((run / "split.json").read_text())["sources"]
    names = [n for n in split if "ferplus" in n or "fer+" in n.lower()]
    if not names:
        raise SystemExit(f"{run / 'split.json'}: no FER+ source (sources: {', '.join(split)})")
    test = {Path(i).name for i in split[names[0]]["test"]}
    folder = into / run.name
    folder.mkdir(parents=True)
    kept = 0
    with (ferplus / LABEL_FILE).open(newline="") as src, (folder / LABEL_FILE).open("w", newline="") as dst:
        writer = csv.writer(dst)
        for row in csv.reader(src):
            if row and row[0] in test and row[0] not in leave_out:
                writer.writerow(row)
                (folder / row[0]).symlink_to((ferplus / row[0]).resolve())
                kept += 1
    return folder, kept, len(test) - kept


def scores(metrics: dict[str, Any]) -> dict[str, Any]:
    votes = metrics.get("votes") or {}
    c = metrics.get("classification") or {}
    return {
        "majority_accuracy": c.get("accuracy"),
        "f1_macro": c.get("f1_macro"),
        "n_majority": votes.get("n_majority"),
        "vote_cross_entropy": votes.get("vote_cross_entropy"),
        "top_vote_agreement": votes.get("top_vote_agreement"),
    }


def main(argv: list[str] | None = None) -> int:
    import affectlab

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders trained with FER+ as a source")
    parser.add_argument("--ferplus", type=Path, required=True)
    parser.add_argument("--fer2013", type=Path, required=True)
    parser.add_argument(
        "--models",
        nargs="*",
        default=["affectlab-base"],
        help="models scored beside each run; {seed} is replaced by the run's split seed (runs/face-s{seed})",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    copies, distances = fer2013_copies(args.ferplus, args.fer2013)
    print(
        f"FER-2013 faces matched in FER+: {len(copies)} of {len(distances)}; nearest-face distance (grey levels) "
        f"quantiles 5/50/95/99%: {np.percentile(distances, [5, 50, 95, 99]).round(2).tolist()}; "
        f"between {SAME_FACE} and 20: {int(((distances > SAME_FACE) & (distances < 20)).sum())}",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ferplus-heldout-") as tmp:
        for run in args.runs:
            folder, kept, left = heldout_folder(run, args.ferplus, copies, Path(tmp))
            print(f"{run.name}: {kept} held-out FER+ faces, {left} left out as FER-2013 copies", flush=True)
            seed = json.loads((run / "split.json").read_text())["seed"]
            for model in [str(run), *(m.replace("{seed}", str(seed)) for m in args.models)]:
                metrics = affectlab.evaluate(
                    model,
                    str(folder),
                    "all",
                    out=Path(tmp) / f"eval-{run.name}-{Path(model).name}",
                    robustness=False,
                    faces_in_scenes=False,
                ).to_dict()
                row = {"split_of": run.name, "model": Path(model).name, "faces": kept, **scores(metrics)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    result = {"same_face_max_difference": SAME_FACE, "fer2013_copies": len(copies), "rows": rows}
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
