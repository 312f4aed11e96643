"""Helpers for the inference tests: small models with non-trivial outputs, and scenes with drawn faces.

A randomly initialised MobileNetV2 has BatchNorm statistics of a fresh network, so its pooled features are
near zero and every input gets the same prediction; a test comparing two runtimes on it could not fail. The
model here has its BatchNorm statistics fitted to random images and its output layers scaled up, so different
inputs give clearly different probabilities and valence/arousal.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import torch
import uvicorn

from affectlab.config import ModelConfig
from affectlab.data.demo import generate_demo_dataset
from affectlab.data.transforms import Preprocess
from affectlab.models.affect_model import create_model
from affectlab.models.checkpoint import save_checkpoint
from affectlab.serve.app import ServeOptions, create_app

INPUT_SIZE = 64


def one_torch_thread() -> Iterator[None]:
    """Fixture body: PyTorch on one thread, restored afterwards.

    On a 2-core machine that is busy with other work, PyTorch's spinning OpenMP threads can make a 64 px batch
    take seconds instead of milliseconds; the tests' tiny batches gain nothing from a second thread.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make_run(root: Path, task: str = "multitask", seed: int = 0, expression_gain: float = 30.0) -> Path:
    """A run folder with ``model.pt``: mobilenet_v2 at 64 px whose outputs vary with the input.

    ``expression_gain`` scales the expression logits: the default makes confident, varied labels; a smaller one
    keeps the logits in a trained model's range (half-precision weights err in proportion to the logits).
    """
    torch.manual_seed(seed)
    config = ModelConfig(backbone="mobilenet_v2", weights="none", task=task, input_size=INPUT_SIZE, freeze=False)
    model = create_model(config)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the fitting batches
    model.train()
    generator = torch.Generator().manual_seed(seed)
    batches = [torch.rand(16, 3, INPUT_SIZE, INPUT_SIZE, generator=generator) * 4 - 2 for _ in range(3)]
    with torch.no_grad():
        for batch in batches:
            model(batch)
        model.eval()
        features = model.forward_features(torch.cat(batches))
        for head, gain in ((model.expression_head, expression_gain), (model.va_head, 4.0)):
            if head is not None:  # larger outputs, centred on the fitting images: varied labels and V/A
                head[-1].weight.mul_(gain)
                head[-1].bias.sub_(head(features).mean(0))
    run = root / f"run-{task}" if expression_gain == 30.0 else root / f"run-{task}-gain{expression_gain:g}"
    save_checkpoint(run / "model.pt", model, config, Preprocess(input_size=INPUT_SIZE), note="test model")
    return run


def demo_faces(root: Path, n_per_class: int = 2, size: int = 160) -> list[np.ndarray]:
    """Synthetic cartoon faces (BGR) from the demo generator."""
    folder = generate_demo_dataset(root / f"faces-{size}", n_per_class=n_per_class, image_size=size, seed=0)
    return [cv2.imread(str(p)) for p in sorted((folder / "images").glob("*.png"), key=lambda p: int(p.stem))]


def scene(faces: list[np.ndarray], positions: list[tuple[int, int]], size: tuple[int, int] = (480, 640)) -> np.ndarray:
    """Paste faces (BGR) onto a grey, lightly textured canvas at top-left ``positions`` (x, y)."""
    rng = np.random.default_rng(1)
    canvas = np.clip(rng.normal(110, 12, (*size, 3)), 0, 255).astype(np.uint8)
    for face, (x, y) in zip(faces, positions):
        h, w = face.shape[:2]
        canvas[y : y + h, x : x + w] = face
    return canvas


def no_face_image(size: tuple[int, int] = (240, 320)) -> np.ndarray:
    """Smooth gradient with a few rectangles: nothing face-like for a cascade."""
    ramp = np.linspace(40, 200, size[1], dtype=np.float32)[None, :, None]
    image = np.repeat(np.repeat(ramp, size[0], 0), 3, 2).astype(np.uint8)
    cv2.rectangle(image, (30, 30), (90, 70), (0, 90, 200), -1)
    cv2.rectangle(image, (200, 120), (290, 220), (200, 200, 40), -1)
    return image


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """Write BGR frames with the container's usual codec (MJPG for .avi, mp4v otherwise)."""
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, (frames[0].shape[1], frames[0].shape[0]))
    assert writer.isOpened(), f"OpenCV cannot write {path.suffix} here"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def free_port() -> int:
    """A loopback port no one listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: A safety net, not a timing: how long a helper waits for a server that is still alive before giving up. The
#: waits below end on the event (the server started, answered, or died), however busy the machine is.
STARTUP_LIMIT_S = 900


@contextmanager
def running(predictor: Any, **options: Any) -> Iterator[str]:
    """``create_app`` served by uvicorn on a free loopback port; yields the base URL."""
    with serving_app(create_app(predictor, ServeOptions(**options))) as url:
        yield url


@contextmanager
def serving_app(app: Any) -> Iterator[str]:
    """An app made by ``create_app`` served by uvicorn in a thread on a free loopback port; yields the base URL
    once the server has started (or fails at once if its thread dies)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_LIMIT_S
        while not server.started:
            assert thread.is_alive(), "server thread died before it started"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(60)


@contextmanager
def serving(args: list[str], log_path: Path, timeout_s: float = STARTUP_LIMIT_S) -> Iterator[str]:
    """``affectlab serve ARGS`` started as a user would, on a free loopback port; yields its base URL once
    ``/health`` answers, and stops it afterwards. It waits for that answer or for the process to exit, however
    long start-up takes on a busy machine; ``timeout_s`` is only a safety net against a server that hangs."""
    port = free_port()
    command = [sys.executable, "-m", "affectlab.cli", "serve", *args, "--port", str(port)]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if process.poll() is not None:
                    pytest.fail(f"server exited with {process.returncode}: {log_path.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{url}/health", timeout=10).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"server did not answer within {timeout_s:.0f} s: {log_path.read_text()[-2000:]}")
                time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=120)


def scores_of(run: Path) -> dict[str, Any]:
    """A run's ``metrics.json`` without its ``cost`` (seconds per section, which differ between two identical
    trainings): what two runs of the same model must agree on."""
    import json

    return {k: v for k, v in json.loads((run / "metrics.json").read_text()).items() if k != "cost"}
