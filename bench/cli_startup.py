"""Wall time of `inv --list`: the kit's tasks must stay instant to list (goal: median <= 0.25 s).

Usage: .venv/bin/python bench/cli_startup.py [runs]
"""

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INV = Path(sys.executable).parent / "inv"
GOAL = 0.25


def main(runs: int) -> None:
    subprocess.run([INV, "--list"], cwd=ROOT, check=True, capture_output=True)  # warm the file cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([INV, "--list"], cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    verdict = "meets" if median <= GOAL else "misses"
    print(f"inv --list: median {median:.3f} s, min {min(times):.3f} s, max {max(times):.3f} s "
          f"over {runs} runs ({verdict} the {GOAL} s goal)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
