"""What the eye stage (``--eyes``: MediaPipe Iris on both eyes, openness and gaze) costs per face, on one core.

Three predictors of the bundled model on scikit-image's astronaut photo (one face, haar detector, PyTorch on one
thread) are timed side by side, in alternating rounds so that a busy machine slows them alike: plain, with
``--landmarks`` (FaceMesh and head pose) and with ``--eyes`` (FaceMesh, then Iris). The eye stage alone
(``EyeLandmarker`` on the face's mesh) and the Iris network alone (two 64 px crops) are timed too. Times are CPU
milliseconds of the process per call (``cpu_ms_per_call``), best of ``--repeat`` rounds of ``--calls`` calls;
the 1-minute load average before and after is printed, since other jobs still share the caches and memory bus.

    python benchmarks/eyes_cost.py [--calls 20] [--repeat 3] [--out eyes_cost.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch
from skimage import data

from affectlab.evaluation.efficiency import cpu_ms_per_call
from affectlab.models.iris import load_iris
from affectlab.runtime.eyes import EyeLandmarker
from affectlab.runtime.faces import HaarDetector
from affectlab.runtime.mesh import MeshLandmarker
from affectlab.runtime.predictor import load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    image = data.astronaut()
    face = HaarDetector().detect(image)
    meshes = MeshLandmarker()(image, face)
    eyes, net = EyeLandmarker(), load_iris().to(memory_format=torch.channels_last)
    crops = torch.rand(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    setups = {
        "predict, plain (ms/face)": load(None, detector="haar", threads=1, workers=1),
        "predict --landmarks (ms/face)": load(None, detector="haar", threads=1, workers=1, landmarks=True),
        "predict --eyes (ms/face)": load(None, detector="haar", threads=1, workers=1, eyes=True),
    }
    rows: dict[str, float] = {}
    for _ in range(args.repeat):  # alternating rounds; the best of each is kept
        for name, predictor in setups.items():
            ms = cpu_ms_per_call(lambda p=predictor: p.predict(image), args.calls)
            rows[name] = min(rows.get(name, float("inf")), ms)
        ms = cpu_ms_per_call(lambda: eyes(image, meshes), args.calls)
        rows["eye stage alone: crops, Iris, openness, gaze (ms/face)"] = min(
            rows.get("eye stage alone: crops, Iris, openness, gaze (ms/face)", float("inf")), ms
        )
        with torch.inference_mode():
            ms = cpu_ms_per_call(lambda: net(crops), args.calls)
        rows["Iris network, 2 crops (ms)"] = min(rows.get("Iris network, 2 crops (ms)", float("inf")), ms)
    with_mesh = rows["predict --landmarks (ms/face)"]
    report = {
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread",
        "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        **rows,
        "eye stage share of predict --eyes": round(1 - with_mesh / rows["predict --eyes (ms/face)"], 3),
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
