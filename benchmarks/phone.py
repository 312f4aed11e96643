"""Size and CPU latency of one model in every export format, side by side in one run (issue 39).

    PYTHONPATH=src python benchmarks/phone.py [--model affectlab-base] [--threads 1,4] [--repeats 50]

Exports the model to ONNX, LiteRT and ExecuTorch (fp32, and int8 with ``--int8``) and Core ML (size only: it runs
on Apple platforms alone), then times one crop per call, as a phone app calls it, in each runtime: ONNX Runtime,
``ai_edge_litert`` and ``executorch.runtime`` with XNNPACK. The formats take turns within each repetition, so a
change in the machine's load touches them alike; the load average is printed beside the table. Formats whose
extra is not installed are listed as absent.

With ``--int8`` it also prints each int8 file's calibration and its check against PyTorch fp32 (from the file's
metadata), and, when ``--model`` is a run folder whose data is where it trained, the top-class agreement with
PyTorch fp32 on up to ``--test-faces`` of the run's test faces, which the calibration never saw.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _size(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def _onnx_runner(path: Path, threads: int):  # type: ignore[no-untyped-def]
    from affectlab.runtime.backends import OnnxBackend

    backend = OnnxBackend(path, threads=threads)
    return lambda crop: backend.run(crop)


def _set_executorch_threads(threads: int) -> None:
    try:  # the Python runtime's XNNPACK thread pool is process-wide
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

        _unsafe_reset_threadpool(threads)
    except ImportError:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="affectlab-base")
    parser.add_argument("--threads", default="1,4")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument(
        "--int8", action="store_true", help="also int8 ONNX, LiteRT and ExecuTorch (calibrated as the export does)"
    )
    parser.add_argument("--test-faces", type=int, default=600, help="test faces for the int8 agreement (a run)")
    parser.add_argument(
        "--files",
        metavar="DIR",
        help="keep the exported files in DIR and reuse those already there (export once, time later on an idle CPU)",
    )
    parser.add_argument("--no-timing", action="store_true", help="export (and report int8) only")
    parser.add_argument("--skip", default="", help="files not to make, e.g. executorch-int8 (comma-separated)")
    args = parser.parse_args()

    import affectlab
    from affectlab.errors import AffectlabError
    from affectlab.export.phone import phone_runner

    formats = [("onnx", False), ("tflite", False), ("executorch", False), ("coreml", False)]
    if args.int8:
        formats += [("onnx", True), ("tflite", True), ("executorch", True)]
    suffix = {"onnx": ".onnx", "tflite": ".tflite", "executorch": ".pte", "coreml": ".mlpackage"}
    with tempfile.TemporaryDirectory(prefix="affectlab-phone-bench-") as tmp:
        folder = Path(args.files or tmp)
        files: dict[str, Path] = {}
        for fmt, int8 in formats:
            name = f"{fmt}{'-int8' if int8 else ''}"
            out = folder / f"model{'-int8' if int8 else ''}{suffix[fmt]}"
            if out.exists():
                files[name] = out
                continue
            if name in args.skip.split(","):
                print(f"{name}: skipped (--skip)")
                continue
            try:
                files[name] = affectlab.export(args.model, format=fmt, int8=int8, out=out)
            except AffectlabError as exc:
                print(f"{name}: absent ({exc})")
        size = _input_size(files)
        crop = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
        rows = []
        for threads in [] if args.no_timing else [int(t) for t in args.threads.split(",")]:
            _set_executorch_threads(threads)
            runners = {}
            for name, path in files.items():
                fmt = name.split("-")[0]
                if fmt == "coreml":
                    continue
                runners[name] = _onnx_runner(path, threads) if fmt == "onnx" else phone_runner(fmt, path, threads)
                runners[name](crop)  # warm-up
            times: dict[str, list[float]] = {name: [] for name in runners}
            for _ in range(args.repeats):
                for name, run in runners.items():
                    start = time.perf_counter()
                    run(crop)
                    times[name].append((time.perf_counter() - start) * 1000)
            rows += [(name, threads, statistics.median(t)) for name, t in times.items()]
        print(
            f"\nmodel {args.model}, {size} px, one crop per call; load average {os.getloadavg()}; {os.cpu_count()} CPUs"
        )
        print("| format | file MB | threads | median ms |\n|---|---|---|---|")
        for name, path in files.items():
            timed = [(t, ms) for n, t, ms in rows if n == name] or [("-", float("nan"))]
            for threads, ms in timed:
                print(f"| {name} | {_size(path):.1f} | {threads} | {ms:.2f} |")
        if args.int8:
            _int8_report(args.model, files, args.test_faces)


def _int8_report(model: str, files: dict[str, Path], limit: int) -> None:
    """Each int8 file's calibration and check (its metadata), and its agreement on the run's held-out test faces."""
    from affectlab.export.int8 import run_data_available, run_faces
    from affectlab.export.phone import phone_runner, read_phone_metadata
    from affectlab.runtime.backends import ONNX_OUTPUTS, OnnxBackend, TorchBackend

    int8 = {name: path for name, path in files.items() if name.endswith("-int8")}
    crops = run_faces(Path(model), "test", _input_size(files), limit)[0] if run_data_available(Path(model)) else None
    reference = TorchBackend(Path(model)).run(crops) if crops is not None else None
    print("\n| int8 file | calibration | check on the calibration crops | top class = fp32, test faces |")
    print("|---|---|---|---|")
    for name, path in int8.items():
        fmt = name.split("-")[0]
        onnx = OnnxBackend(path) if fmt == "onnx" else None
        meta = onnx.info.extra if onnx is not None else read_phone_metadata(fmt, path)
        check = meta["int8_check"]
        held_out = "-"
        if crops is not None and reference is not None:
            if onnx is not None:
                probs = onnx.run(crops)["probs"]
            else:
                runner = phone_runner(fmt, path)
                probs = np.concatenate([runner(crop[None])[ONNX_OUTPUTS["probs"]] for crop in crops])
            agree = float(np.mean(probs.argmax(1) == reference["probs"].argmax(1)))
            held_out = f"{agree:.3f} of {len(crops)}"
        print(
            f"| {name} | {meta['calibration']} | agreement {check.get('class_agreement')}, mean abs prob diff "
            f"{check.get('mean_abs_prob_diff')}, V/A {check.get('mean_abs_va_diff')} ({check['kernel']}) | {held_out} |"
        )


def _input_size(files: dict[str, Path]) -> int:
    from affectlab.runtime.backends import OnnxBackend

    return OnnxBackend(files["onnx"]).info.preprocess.input_size


if __name__ == "__main__":
    main()
