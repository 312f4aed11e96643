"""benchmarks/gpu.py, the one script a lent GPU machine runs, checked on the CPU with tiny sizes, so it has not
rotted by the time a GPU is lent: every part (training per augmentation site, inference, serving) must run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_script_runs_every_part_on_a_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--small", "--out", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["small"] is True and report["device"]
    assert report["training"]["loader"]["images_per_s"] > 0 and report["training"]["device"]["images_per_s"] > 0
    assert report["inference"]["torch"]["batch_1"] > 0 and report["inference"]["torch"]["batch_256"] > 0
    assert "skipped" in report["inference"]["onnx"] or report["inference"]["onnx"]["batch_256"] > 0
    serving = report["serving"]
    assert serving["max_batch_1"] > 0 and serving["max_batch_32"] > 0
