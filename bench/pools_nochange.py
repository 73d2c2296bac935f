"""Wall time of a no-change `inv pools` against a local Prefect server, Prefect's own import included
(goal: median <= 2.5 s, and no writes).

Starts `prefect server start` on a free port with a throwaway .env's auth string and the stand-in API server
(the kubernetes pool's template is dry-run in a cluster before it is first written), runs `inv pools --tag`
once to create the pools, then times the runs that must find nothing to do.

Usage: .venv/bin/python bench/pools_nochange.py [runs]
"""

import subprocess
import sys
import tempfile
from pathlib import Path

from timing import time_command, verdict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kit import manifests, pool_config, settings  # noqa: E402
from tests.standin import FakeApi  # noqa: E402
from tests.integration.prefect_server import clean_environment, prefect_server  # noqa: E402

INV = Path(sys.executable).parent / "inv"
GOAL = 2.5


def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env_file = Path(tmp) / ".env"
        text = settings.fill_template((ROOT / ".env.example").read_text(),
                                      {"LOGIN_PASSWORD": settings.generate_password()})
        settings.write_env_file(env_file, text)
        kit_settings = settings.load(env_file)
        api = FakeApi().start()
        # What a rollout left there for the template's dry run: the namespace and the accounts.
        for obj in manifests.render(kit_settings, "", pool_config.load()):
            if obj["kind"] in ("Namespace", "ServiceAccount"):
                api.put(obj)
        try:
            with prefect_server(Path(tmp), {"PREFECT_SERVER_API_AUTH_STRING": kit_settings.auth_string}) as server:
                command = [INV, "pools", "--api-url", server.api_url, "--tag", "bench"]
                env = clean_environment({"KIT_ENV_FILE": str(env_file), "TMPDIR": tmp,
                                         "KUBECONFIG": api.write_kubeconfig(str(Path(tmp) / "kubeconfig"))})
                subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)  # creates the pools
                times = time_command(command, runs, check=no_writes, cwd=ROOT, env=env)
        finally:
            api.stop()
    print(verdict(f"inv pools (no change, {len(pool_config.load())} pool(s))", times, GOAL))


def no_writes(stdout: str) -> None:
    writes = [line for line in stdout.splitlines()[1:] if not line.startswith("unchanged ")]
    if writes:
        sys.exit(f"not a no-change run: {writes}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
