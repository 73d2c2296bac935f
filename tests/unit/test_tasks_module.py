"""The tasks as the `inv` command presents them: listing stays instant (tasks.py imports no heavy client at
module level), and a bad option value is one line, never Invoke's traceback."""

import os
import subprocess
import sys

import invoke
import pytest

from kit import ROOT

HEAVY = ("kubernetes", "docker", "prefect", "bcrypt", "passlib", "dotenv", "rich")
INV = os.path.join(os.path.dirname(sys.executable), "inv")


def test_loading_the_tasks_imports_no_heavy_client():
    probe = f"import sys, tasks; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def numeric_options() -> list[tuple[str, str, type]]:
    """(task, flag, kind) of every int or float option of every task in tasks.py."""
    sys.path.insert(0, str(ROOT))
    try:
        collection = invoke.Collection.from_module(__import__("tasks"))
    finally:
        sys.path.remove(str(ROOT))
    return [(name, f"--{argument.names[0]}", argument.kind)
            for name in collection.task_names for argument in collection[name].get_arguments()
            if argument.kind in (int, float)]


def test_the_tasks_have_numeric_options_to_check():
    assert {("rollout", "--timeout"), ("logs", "--tail")} <= {(task, flag) for task, flag, _ in numeric_options()}


@pytest.mark.parametrize("task, flag, kind", numeric_options())
def test_a_word_for_a_numeric_option_is_one_line_and_exit_1(tmp_path, task, flag, kind):
    # Parsing happens before the task runs: no settings file is needed to get this far.
    done = subprocess.run([INV, task, flag, "abc"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "KIT_ENV_FILE": str(tmp_path / "absent.env")})
    assert done.returncode == 1
    assert done.stdout == ""
    word = "a whole number" if kind is int else "a number"
    [line] = done.stderr.splitlines()
    assert line.startswith(f"error: {flag}: 'abc' is not {word}; e.g. {flag} ")


def test_numeric_options_keep_their_type_in_the_help():
    done = subprocess.run([INV, "--help", "rollout"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "--timeout=INT" in done.stdout
