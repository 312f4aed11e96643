"""End-to-end frames/s on 640x480 frames with one face: detection, cropping and the model, side by side.

The frames are composite scenes (``affectlab.evaluation.scenes``) with exactly one face of 60-250 px each, as a webcam or a
talking-head video would give. Each pipeline is ``affectlab.load(model, detector=...)`` streaming the frames with
batch size 1 (one frame in, its faces out: the latency-bound video and webcam case). The model is MobileNetV2 at
160 px with the ImageNet trunk (``../shared/weights``) and an untrained multitask head, with flip TTA on as in
``recipes/best.yaml`` (two passes per face), run by PyTorch eager and by ONNX Runtime (exported with
``affectlab export``). Speed does not depend on the head's weights.

Everything runs on one core (model runtime, OpenCV and yuface threads set to 1) and is timed in CPU seconds of
the process, so frames/s is per core and hardly depends on what else a shared machine runs (wall time under a
load average of 15 on 2 cores was 10-20 times slower and random). Pipelines are measured in rounds (each
pipeline once per round, ``--rounds``), and each pipeline's best round is reported.

    python benchmarks/end_to_end.py [--frames 40] [--rounds 3] [--out e2e.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from affectlab.evaluation import scenes as composites
from affectlab.reports.study_report import markdown_table

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "affectnet-3999"
WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_v2-b0353104.pth"
PIPELINES = (("haar", "pytorch"), ("haar", "onnx"), ("yuface", "pytorch"), ("yuface", "onnx"))


def build_run(tmp: Path, size: int = 160) -> Path:
    """A run folder: ImageNet MobileNetV2, untrained multitask head, flip TTA recorded as in best.yaml."""
    os.environ["TORCH_HOME"] = str(tmp / "torch-home")
    cache = tmp / "torch-home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    shutil.copy(WEIGHTS, cache / WEIGHTS.name)
    import torch

    from affectlab.config import ModelConfig
    from affectlab.data.transforms import Preprocess
    from affectlab.models.affect_model import create_model
    from affectlab.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    config = ModelConfig(backbone="mobilenet_v2", weights="imagenet", task="multitask", input_size=size)
    model = create_model(config).eval()
    meta = {"config": {"train": {"tta_flip": True}}}
    return save_checkpoint(tmp / "run" / "model.pt", model, config, Preprocess(input_size=size), **meta).parent


def measure(predictor, frames: list) -> tuple[float, int]:  # type: ignore[no-untyped-def, type-arg]
    """(frames per second, faces found) for one pass over the frames, one frame per call."""
    from affectlab.runtime.predictor import Item

    predictor.predict(frames[0])  # warm-up
    start = time.process_time()
    faces = sum(len(r) for r in predictor.predict_stream(Item("frame", f) for f in frames))
    return len(frames) / (time.process_time() - start), faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import cv2

    import affectlab
    from affectlab.export.onnx import export_model

    cv2.setNumThreads(1)
    paths = sorted((args.data / "images").glob("*.jpg"), key=lambda p: int(p.stem))
    crops = composites.load_crops(paths)
    spec = composites.SceneSpec(640, 480, min_face=60, max_face=250, faces=(1, 1))
    frames = [s.image for s in composites.scenes(args.seed, crops, args.frames, spec)]
    with tempfile.TemporaryDirectory(prefix="affectlab-e2e-") as tmp:
        run = build_run(Path(tmp))
        models = {"pytorch": run, "onnx": export_model(run)}
        predictors = {
            (det, rt): affectlab.load(models[rt], detector=det, batch_size=1, threads=1) for det, rt in PIPELINES
        }
        print(f"{len(frames)} frames 640x480, one face each; load average {os.getloadavg()[0]:.2f}", flush=True)
        best: dict[tuple[str, str], tuple[float, int]] = {}
        for round_ in range(args.rounds):
            for key, predictor in predictors.items():
                fps, faces = measure(predictor, frames)
                best[key] = max(best.get(key, (0.0, 0)), (fps, faces))
                print(f"round {round_}: {key[0]} + {key[1]}: {fps:.1f} frames/s, {faces} faces", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    base = best[("haar", "pytorch")][0]
    rows = [
        {
            "detector": d,
            "runtime": r,
            "fps": best[(d, r)][0],
            "faces": best[(d, r)][1],
            "vs_haar_pytorch": best[(d, r)][0] / base,
            "vs_haar_same_runtime": best[(d, r)][0] / best[("haar", r)][0],
        }
        for d, r in PIPELINES
    ]
    table = [
        [
            r["detector"],
            r["runtime"],
            f"{r['fps']:.1f}",
            f"{r['faces']}/{len(frames)}",
            f"{r['vs_haar_same_runtime']:.1f}x",
        ]
        for r in rows
    ]
    print()
    print(markdown_table(["detector", "model runtime", "frames/s", "faces found", "vs Haar, same runtime"], table))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
