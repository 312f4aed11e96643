"""The picture of the web page in docs/serving.md: a run served on loopback, two synthetic demo faces
uploaded in Chromium.

The faces come from the built-in demo generator (never from a real dataset); the server runs with ``--detector
none``, so each picture is one face crop. Needs Debian's ``chromium`` and Playwright (``.[test]``).

    python benchmarks/page_screenshot.py --run RUN [--out docs/images/web_page.png]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import _free_port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="run folder, .pt or .onnx to serve")
    parser.add_argument("--out", type=Path, default=Path("docs/images/web_page.png"))
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from affectlab.data.demo import generate_demo_dataset

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        images = sorted((generate_demo_dataset(tmp / "demo", 1, 160, seed=0) / "images").glob("*.png"))
        picked = images[1:3]  # two drawn expressions
        port = _free_port()
        command = [sys.executable, "-m", "affectlab.cli", "serve", str(args.run), "--detector", "none",
                   "--port", str(port)]  # fmt: skip
        with (tmp / "serve.log").open("w") as log:
            server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=shutil.which("chromium"))
                page = browser.new_page(viewport={"width": 1100, "height": 800})
                page.goto(url + "/")
                page.locator("input[type=file]").first.set_input_files([str(p) for p in picked])
                page.wait_for_function("document.querySelectorAll('.face-label').length === 2", timeout=60_000)
                page.wait_for_timeout(500)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True, type="png")
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
