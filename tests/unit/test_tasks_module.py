"""Listing the tasks must stay instant: tasks.py may not import the heavy clients at module level."""

import subprocess
import sys

from kit import ROOT

HEAVY = ("kubernetes", "docker", "prefect", "bcrypt", "passlib", "dotenv", "rich")


def test_loading_the_tasks_imports_no_heavy_client():
    probe = f"import sys, tasks; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
