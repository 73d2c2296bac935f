"""What the benchmarks share: timing a command over repeated runs, and one verdict line against a goal."""

import statistics
import subprocess
import time
from collections.abc import Callable


def time_command(command: list, runs: int, check: Callable[[str], None] = lambda stdout: None, **popen) -> list[float]:
    """Wall time of each of `runs` runs; `check` may reject a run by its output (e.g. one that did write)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(command, check=True, capture_output=True, text=True, **popen)
        times.append(time.perf_counter() - start)
        check(done.stdout)
    return times


def verdict(name: str, times: list[float], goal: float) -> str:
    median = statistics.median(times)
    meets = "meets" if median <= goal else "misses"
    return (f"{name}: median {median:.3f} s, min {min(times):.3f} s, max {max(times):.3f} s over {len(times)} "
            f"runs ({meets} the {goal} s goal)")
