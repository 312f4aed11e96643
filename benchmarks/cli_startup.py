"""How long the ``affectlab`` command takes to refuse a mistyped value (issue 25: "well under a second").

Each refusal runs as the user would run it, a fresh ``python -m affectlab.cli`` process, ``--repeats`` times;
the table gives the median and the slowest wall time, and ``--version`` as the floor (the interpreter and the
parser alone). The load average is printed, since other processes on a shared machine slow every start.

    python benchmarks/cli_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REFUSALS = {
    "--backbone resnet19": ["train", "--data", "demo", "--backbone", "resnet19", "--out", "{tmp}/x"],
    "--detector yunet2": ["predict", "{tmp}", "x.jpg", "--detector", "yunet2"],
    "--recipe bset": ["train", "--recipe", "bset", "--data", "demo", "--out", "{tmp}/x"],
    "--version": ["--version"],
}


def time_command(argv: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "affectlab.cli", *argv], capture_output=True, check=False)
    return time.perf_counter() - started, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'refusal':<22} {'exit':>4} {'median s':>9} {'max s':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, argv in REFUSALS.items():
            command = [a.format(tmp=tmp) for a in argv]
            times, codes = zip(*(time_command(command) for _ in range(args.repeats)), strict=True)
            print(f"{name:<22} {codes[0]:>4} {statistics.median(times):>9.3f} {max(times):>7.3f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
