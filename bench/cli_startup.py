"""Benchmark: wall time of `ao --version` and `ao config validate` on the largest example.

Usage: python bench/cli_startup.py [--runs 15]   (run from the repository, with `ao` installed)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], runs: int) -> float:
    subprocess.run(cmd, check=True, capture_output=True)  # warm the page cache
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    ao = shutil.which("ao") or str(Path(sys.executable).parent / "ao")
    largest = max((ROOT / "examples").glob("*.yaml"), key=lambda p: p.stat().st_size)
    print(f"median of {args.runs} runs")
    print(f"ao --version:                      {timed([ao, '--version'], args.runs):7.1f} ms")
    print(f"ao --help:                         {timed([ao, '--help'], args.runs):7.1f} ms")
    print(f"ao config validate {largest.name:<15} {timed([ao, 'config', 'validate', '--file-only', str(largest)], args.runs):7.1f} ms")


if __name__ == "__main__":
    main()
