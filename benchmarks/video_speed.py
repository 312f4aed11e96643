"""Frames/s of ``predict`` on a 1080p video with two faces: the path before issue 26 against the new default and
``--detect-every N``, side by side in one run, with what key frames cost in accuracy.

The video is generated at run time: two AffectNet test faces (from ``--data``'s default split, so a model trained
on that split never saw them; synthetic demo faces without ``--data``) glide over a lightly textured 1920 x 1080
scene at 30 frames/s, each about 240 px, and each slot changes its face every 2 seconds. It is encoded as H.264
(libx264, CRF 23) through PyAV when that is installed (``pip install av==18.1.0``), as cameras and phones write
it, else as MPEG-4 part 2 through OpenCV (cheaper to decode: the script says which).

Each mode runs the video through the same pipeline as ``affectlab predict`` (``run_predictions``, records written
as JSON lines to memory):

- ``today``: the model on PyTorch, one thread for everything (``--backend torch --workers 1``): the path before
  issue 26;
- ``new default``: ONNX Runtime from the model's export, video decoded ahead in a thread of its own, detection in
  ``--workers`` threads while the model runs;
- ``--detect-every 3`` and ``5``: the new default, detecting faces on every 3rd or 5th frame only.

Accuracy: each face found is matched to the slot whose true box it overlaps most (IoU at least .3); a slot-frame
counts as right when a matched face's label is the slot face's AffectNet label. Against the default mode it also
gives the mean |probability| difference of matched faces, which is what key frames change. Timings depend on what
else runs on the machine: the load average is printed with them.

    python benchmarks/video_speed.py [--model affectlab-base] [--data ../shared/data/affectnet-3999] [--seconds 30]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT, FPS = 1920, 1080, 30
SIDE = 240  # face size in pixels
FACE_SECONDS = 2.0  # each slot shows a new face this often
DEFAULT_DATA = Path("../shared/data/affectnet-3999")


@dataclass
class Slot:
    """Where one of the two faces is in each frame (top-left corner) and which face it shows."""

    start: tuple[float, float]
    amplitude: tuple[float, float]
    period_s: float

    def corner(self, t: float) -> tuple[int, int]:
        phase = 2 * np.pi * t / self.period_s
        return (
            int(self.start[0] + self.amplitude[0] * np.sin(phase)),
            int(self.start[1] + self.amplitude[1] * np.sin(2 * phase)),
        )


SLOTS = (Slot((380, 300), (220, 120), 9.0), Slot((1250, 420), (200, 140), 7.0))


def test_faces(data: Path | None, count: int, scratch: Path) -> list[tuple[np.ndarray, int]]:
    """``count`` (BGR face, label) pairs: test-split AffectNet faces in ``data``, else synthetic demo faces."""
    if data is not None and (data / "images").is_dir():
        from affectlab.config import DataConfig
        from affectlab.data.source import read_source

        samples = read_source(DataConfig(path=str(data)), splits=("test",)).by_split["test"]
        chosen = [s for s in samples if s.expression is not None][:count]
        return [(cv2.imread(str(s.path)), int(s.expression)) for s in chosen]
    from affectlab.data.demo import generate_demo_dataset

    demo = generate_demo_dataset(scratch / "demo", n_per_class=-(-count // 8), image_size=224, seed=0)
    paths = sorted((demo / "images").glob("*.png"))[:count]
    return [(cv2.imread(str(p)), int(str(np.load(demo / "annotations" / f"{p.stem}_exp.npy")))) for p in paths]


def truth(frame: int) -> list[tuple[tuple[int, int, int, int], int]]:
    """(box, index of the face shown) of each slot in ``frame``."""
    t = frame / FPS
    shown = int(t // FACE_SECONDS)
    return [((*slot.corner(t), SIDE, SIDE), 2 * shown + k) for k, slot in enumerate(SLOTS)]


def write_video(path: Path, faces: list[tuple[np.ndarray, int]], seconds: float) -> str:
    """The two-face video at ``path``; returns the codec used."""
    rng = np.random.default_rng(0)
    coarse = rng.integers(60, 200, (9, 16, 3)).astype(np.uint8)
    scene = cv2.resize(coarse, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
    scene = np.clip(scene + rng.normal(0, 6, scene.shape), 0, 255).astype(np.uint8)
    resized = [cv2.resize(face, (SIDE, SIDE), interpolation=cv2.INTER_AREA) for face, _ in faces]

    def frame_at(i: int) -> np.ndarray:
        frame = scene.copy()
        for (x, y, w, h), index in truth(i):
            frame[y : y + h, x : x + w] = resized[index % len(resized)]
        return frame

    n = int(seconds * FPS)
    try:
        import av
    except ImportError:
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
        for i in range(n):
            writer.write(frame_at(i))
        writer.release()
        return "MPEG-4 part 2 (OpenCV mp4v; install av for H.264)"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"crf": "23", "preset": "fast"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frame_at(i), format="bgr24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return "H.264 (libx264, CRF 23, PyAV)"


def timed_run(predictor, video: Path) -> tuple[float, list[dict]]:  # type: ignore[no-untyped-def]
    from affectlab.runtime.pipeline import run_predictions
    from affectlab.runtime.records import RecordWriter
    from affectlab.runtime.settings import PredictConfig
    from affectlab.runtime.sources import expand_inputs

    stream = io.StringIO()
    writer = RecordWriter(stream, "jsonl")
    started = time.perf_counter()
    run_predictions(
        predictor, expand_inputs([str(video)]), lambda result: writer.write(result.records()), PredictConfig()
    )
    seconds = time.perf_counter() - started
    return seconds, [json.loads(line) for line in stream.getvalue().splitlines()]


def matched(records: list[dict]) -> dict[tuple[int, int], dict]:
    """(frame, slot) -> the record of the face that overlaps that slot's true box most (IoU at least .3)."""
    from affectlab.runtime.faces import iou

    by_slot: dict[tuple[int, int], tuple[float, dict]] = {}
    for record in records:
        if record.get("box") is None:
            continue
        for k, (box, _) in enumerate(truth(record["frame"])):
            overlap = iou(box, tuple(record["box"]))
            key = (record["frame"], k)
            if overlap >= 0.3 and overlap > by_slot.get(key, (0.0, {}))[0]:
                by_slot[key] = (overlap, record)
    return {key: record for key, (_, record) in by_slot.items()}


def scores(records: list[dict], labels: list[int], frames: int, class_names: list[str]) -> dict[str, float]:
    """Found rate and accuracy over every (frame, slot): a slot with no face found counts as wrong."""
    found = matched(records)
    right = sum(
        class_names.index(record["label"]) == labels[truth(frame)[k][1] % len(labels)]
        for (frame, k), record in found.items()
        if record.get("label") in class_names
    )
    return {"found": len(found) / (2 * frames), "accuracy": right / (2 * frames)}


def prob_difference(reference: list[dict], other: list[dict]) -> float:
    """Mean |probability| difference of the slot-frames both runs matched."""
    a, b = matched(reference), matched(other)
    diffs = [
        np.abs(np.asarray(list(a[key]["probs"].values())) - np.asarray(list(b[key]["probs"].values()))).mean()
        for key in a.keys() & b.keys()
    ]
    return float(np.mean(diffs)) if diffs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="affectlab-base", help="run folder, .pt file or named model")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="AffectNet folder for the test faces")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the video (default 30)")
    parser.add_argument("--workers", type=int, help="the new default's --workers (default: the usable CPUs)")
    parser.add_argument("--out", type=Path, help="write the numbers as JSON")
    args = parser.parse_args()

    import affectlab
    from affectlab.export.runtime_model import model_for_backend
    from affectlab.models.registry import resolve_model
    from affectlab.runtime.predictor import load

    model = resolve_model(args.model)
    started = time.perf_counter()
    model_for_backend(model, "onnx")  # exported once if there is none yet: timed apart
    print(f"ONNX export of {model}: {time.perf_counter() - started:.1f} s (0 if it existed)")
    modes = {
        "today (torch, 1 thread)": lambda: load(model, workers=1),
        "new default": lambda: affectlab.load(model, workers=args.workers),
        "new default, --detect-every 3": lambda: affectlab.load(model, workers=args.workers, detect_every=3),
        "new default, --detect-every 5": lambda: affectlab.load(model, workers=args.workers, detect_every=5),
    }
    with tempfile.TemporaryDirectory(prefix="affectlab-video-speed-") as tmp:
        scratch = Path(tmp)
        faces = test_faces(args.data, 2 * int(np.ceil(args.seconds / FACE_SECONDS)), scratch)
        labels = [label for _, label in faces]
        video = scratch / "two-faces-1080p.mp4"
        codec = write_video(video, faces, args.seconds)
        frames = int(args.seconds * FPS)
        source = args.data if (args.data / "images").is_dir() else "synthetic demo faces"
        print(f"video: {frames} frames of {WIDTH}x{HEIGHT} at {FPS} fps, {codec}, {video.stat().st_size / 1e6:.1f} MB")
        print(f"faces: {len(faces)} from {source}; load before: {os.getloadavg()}")
        rows: dict[str, dict[str, float]] = {}
        records: dict[str, list[dict]] = {}
        for mode, make in modes.items():
            predictor = make()
            seconds, got = timed_run(predictor, video)
            records[mode] = got
            rows[mode] = {"seconds": seconds, "fps": frames / seconds}
            rows[mode].update(scores(got, labels, frames, list(predictor.info.class_names)))
            print(
                f"{mode}: {predictor.info.runtime}, workers {predictor.workers}, detect every "
                f"{predictor.detect_every}: {seconds:.1f} s, "
                f"{frames / seconds:.1f} frames/s, found {rows[mode]['found']:.3f}, "
                f"accuracy {rows[mode]['accuracy']:.3f}",
                flush=True,
            )
        print(f"load after: {os.getloadavg()}")
    today, default = list(modes)[:2]
    print()
    print("| mode | frames/s | vs today | faces found | accuracy | mean abs. prob. change vs default |")
    print("|---|---|---|---|---|---|")
    for mode, row in rows.items():
        change = prob_difference(records[default], records[mode])
        row["prob_change_vs_default"] = change
        print(
            f"| {mode} | {row['fps']:.1f} | {row['fps'] / rows[today]['fps']:.2f}x | {row['found']:.3f} | "
            f"{row['accuracy']:.3f} | {change:.4f} |"
        )
    if args.out:
        payload = {"rows": rows, "codec": codec, "frames": frames, "load": os.getloadavg()}
        args.out.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
