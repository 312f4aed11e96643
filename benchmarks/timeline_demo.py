"""The timeline picture in docs/predicting.md: two test faces that cross in a generated video, through ``predict``.

Face A (upper row, moving right) shows a Happy test image for the first half and a Sad one for the second; face
B (lower row, moving left) shows Surprise, then Anger. The video (8 s at 10 frames/s, 640x480) is built in a
temporary folder from the run's test split and ``affectlab predict --smooth 5 --save-annotated`` writes the
per-track summary and timeline, which are copied to ``--out``. No face image is kept.

    python benchmarks/timeline_demo.py --run RUN_DIR [--out docs/images/timeline_example.png]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from in_the_wild import DEFAULT_DATA, test_split

from affectlab.cli import main as cli
from affectlab.evaluation import scenes as composites
from affectlab.labels import EMOTIONS


def first_of(part, name: str) -> int:  # type: ignore[no-untyped-def]
    return int(np.flatnonzero(part.expression == EMOTIONS.index(name))[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path("docs/images/timeline_example.png"))
    args = parser.parse_args()

    _, part, paths = test_split(args.run, args.data)
    crops = composites.load_crops(paths)
    a = [cv2.resize(crops[first_of(part, n)], (150, 150)) for n in ("Happy", "Sad")]
    b = [cv2.resize(crops[first_of(part, n)], (150, 150)) for n in ("Surprise", "Anger")]
    backdrop = composites.background(np.random.default_rng(0), 480, 640)
    n = 80
    with tempfile.TemporaryDirectory(prefix="affectlab-timeline-") as tmp:
        video = Path(tmp) / "two_faces.avi"
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (640, 480))
        for i in range(n):
            frame = backdrop.copy()
            xa, xb = 20 + int(460 * i / (n - 1)), 470 - int(460 * i / (n - 1))
            frame[60:210, xa : xa + 150] = a[i >= n // 2]
            frame[250:400, xb : xb + 150] = b[i >= n // 2]
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
        out = Path(tmp) / "annotated"
        code = cli(
            [
                "predict",
                str(args.run),
                str(video),
                "--smooth",
                "5",
                "--save-annotated",
                str(out),
                "--quiet",
                "--out",
                str(Path(tmp) / "records.jsonl"),
            ]
        )
        print(json.dumps(json.loads((out / "two_faces.tracks.json").read_text()), indent=1))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(out / "two_faces.tracks.png", args.out)
    print(f"exit {code}; timeline: {args.out}")


if __name__ == "__main__":
    main()
