"""Wall time of `inv --list`: the kit's tasks must stay instant to list (goal: median <= 0.25 s).

Usage: .venv/bin/python bench/cli_startup.py [runs]
"""

import subprocess
import sys
from pathlib import Path

from timing import time_command, verdict

ROOT = Path(__file__).resolve().parent.parent
INV = Path(sys.executable).parent / "inv"
GOAL = 0.25


def main(runs: int) -> None:
    subprocess.run([INV, "--list"], cwd=ROOT, check=True, capture_output=True)  # warm the file cache
    print(verdict("inv --list", time_command([INV, "--list"], runs, cwd=ROOT), GOAL))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
