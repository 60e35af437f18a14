"""Start-up: wall time of `zoo --help`, `zoo list`, `zoo plugins` vs listing timm's models.

    python bench/startup.py [--repeat 5]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from common import table


def wall(command: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    python = sys.executable
    baseline = wall([python, "-c", "import timm; timm.list_models()"], args.repeat)
    rows = [["python -c 'import timm; timm.list_models()'", f"{baseline * 1000:,.0f}", "1.0x"]]
    for command in (["--help"], ["list"], ["plugins"], ["list", "timm/*"]):
        seconds = wall([python, "-m", "zoo", *command], args.repeat)
        rows.append([f"zoo {' '.join(command)}", f"{seconds * 1000:,.0f}", f"{baseline / seconds:.1f}x faster"])
    print(f"\nStart-up wall time, median of {args.repeat}\n")
    print(table(["command", "ms", "vs listing timm's models"], rows))


if __name__ == "__main__":
    main()
