"""dlib's face ResNet (``face_resnet29``, 150 px) against MobileNetV2 (160 px) as affectlab models: parameters,
multiply-adds, CPU ms per face at batch 1 on one thread (NCHW and channels_last), side by side in one process;
and the packaged float16 weights' descriptor error against float32 ones, where dlib's original file is given.
Times are CPU seconds of the process (robust on a shared machine), best of ``--repeat`` rounds of ``--calls``.

    python benchmarks/face_resnet.py [--calls 30] [--repeat 5] [--dat dlib_face_recognition_resnet_model_v1.dat]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from affectlab.config import ModelConfig
from affectlab.evaluation.efficiency import count_flops, count_parameters, cpu_ms_per_call
from affectlab.models.affect_model import create_model
from affectlab.models.face_resnet import FaceResNet29, load_face_resnet

FIXTURE = Path(__file__).parents[1] / "tests" / "fixtures" / "dlib_face_reference.npz"


def model_row(backbone: str, weights: str, size: int, calls: int, repeat: int) -> dict[str, float | int]:
    model = create_model(ModelConfig(backbone=backbone, weights=weights, task="multitask", input_size=size)).eval()
    x = torch.rand(1, 3, size, size)
    row: dict[str, float | int] = {
        "input_px": size,
        "parameters": count_parameters(model)["total"],
        "trunk_parameters": sum(p.numel() for p in model.trunk.parameters()),
        "mmacs": round(count_flops(model, size) / 2e6, 1),
    }
    with torch.inference_mode():
        row["ms_nchw"] = cpu_ms_per_call(lambda: model(x), calls, repeat)
        fast = model.to(memory_format=torch.channels_last)
        xl = x.contiguous(memory_format=torch.channels_last)
        row["ms_channels_last"] = cpu_ms_per_call(lambda: fast(xl), calls, repeat)
    return row


def fp16_error(dat: Path) -> dict[str, float]:
    """Max |descriptor difference| on the test's reference chips: packaged float16 weights vs float32 from the .dat,
    and each against dlib's own descriptors (recorded in the fixture)."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
    from convert_dlib_face import normalise, read_dat, reference_chips, state_dict

    ref = np.load(FIXTURE)
    x = normalise(reference_chips({"faces": ref["faces"], "noise": ref["noise"]}))
    full = FaceResNet29().eval()
    full.load_state_dict(state_dict(read_dat(dat.read_bytes())))
    with torch.inference_mode():
        d32, d16 = full(x).numpy(), load_face_resnet()(x).numpy()
    return {
        "fp16_vs_fp32": float(np.abs(d16 - d32).max()),
        "fp32_vs_dlib": float(np.abs(d32 - ref["descriptors"]).max()),
        "fp16_vs_dlib": float(np.abs(d16 - ref["descriptors"]).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dat", type=Path, help="dlib's original file, for the float16 error")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report: dict[str, object] = {"torch": torch.__version__, "threads": 1, "load_before": os.getloadavg()}
    report["face_resnet29"] = model_row("face_resnet29", "face", 150, args.calls, args.repeat)
    report["mobilenet_v2"] = model_row("mobilenet_v2", "none", 160, args.calls, args.repeat)
    if args.dat:
        report["descriptor_error"] = fp16_error(args.dat)
    report["load_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
