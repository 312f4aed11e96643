"""FaceMesh speed on one core: the network in PyTorch (NCHW and channels_last) and in ONNX Runtime, the TFLite
original under LiteRT where ``ai-edge-litert`` is installed, and ``MeshLandmarker`` per face with and without the
upright second pass. Times are CPU seconds of the process (robust on a shared machine), best of ``--repeat``
rounds of ``--calls`` calls, on scikit-image's astronaut photo.

    python benchmarks/facemesh.py [--calls 50] [--repeat 5] [--tflite face_landmark.tflite] [--out facemesh.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import onnxruntime as ort
import torch
from skimage import data

from affectlab.evaluation.efficiency import cpu_ms_per_call
from affectlab.models.facemesh import WEIGHTS, load_facemesh
from affectlab.runtime.faces import HaarDetector
from affectlab.runtime.mesh import MeshLandmarker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tflite", type=Path, help="face_landmark.tflite, to time the original under LiteRT")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    image = data.astronaut()
    face = HaarDetector().detect(image)[0]
    net = load_facemesh()
    x = torch.from_numpy(image[65:257, 160:352]).permute(2, 0, 1)[None].float() / 255
    rows: dict[str, float] = {}
    with torch.inference_mode():
        rows["pytorch NCHW, 1 crop (ms)"] = cpu_ms_per_call(lambda: net(x), args.calls, args.repeat)
        fast = load_facemesh().to(memory_format=torch.channels_last)
        xl = x.contiguous(memory_format=torch.channels_last)
        rows["pytorch channels_last, 1 crop (ms)"] = cpu_ms_per_call(lambda: fast(xl), args.calls, args.repeat)
        x8 = x.repeat(8, 1, 1, 1).contiguous(memory_format=torch.channels_last)
        rows["pytorch channels_last, 8 crops, per crop (ms)"] = round(
            cpu_ms_per_call(lambda: fast(x8), max(1, args.calls // 8), args.repeat) / 8, 2
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "facemesh.onnx"
        torch.onnx.export(net, (x,), path, dynamo=True, input_names=["image"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        rows["onnxruntime, 1 crop (ms)"] = cpu_ms_per_call(
            lambda: session.run(None, {"image": x.numpy()}), args.calls, args.repeat
        )
    if args.tflite:
        from ai_edge_litert.interpreter import Interpreter

        lite = Interpreter(model_path=str(args.tflite), num_threads=1)
        lite.allocate_tensors()
        nhwc = x.permute(0, 2, 3, 1).numpy().copy()

        def run_lite() -> None:
            lite.set_tensor(lite.get_input_details()[0]["index"], nhwc)
            lite.invoke()

        rows["tflite (LiteRT, XNNPACK), 1 crop (ms)"] = cpu_ms_per_call(run_lite, args.calls, args.repeat)
    for refine in (False, True):
        landmarker = MeshLandmarker(refine=refine)
        name = f"MeshLandmarker refine={refine}, 1 face incl. crop and pose (ms)"
        rows[name] = cpu_ms_per_call(lambda mesh=landmarker: mesh(image, [face]), args.calls, args.repeat)
    report = {
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread",
        "weights_bytes": WEIGHTS.stat().st_size,
        "parameters": sum(p.numel() for p in net.parameters()),
        **rows,
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
