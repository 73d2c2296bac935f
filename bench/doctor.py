"""Wall time of `inv doctor` against a reachable cluster and registry (goal: median under 3 s).

The cluster is the stand-in API server (tests/standin/) with a default StorageClass, an IngressClass and the
namespace in place, as a cluster ready for a rollout has them; the registry is the local one of
.ci/services/20-registries (KIT_TEST_REGISTRY, with KIT_TEST_DOCKER for the engine that asks it). The real
`inv` runs, so the time includes its imports.

Usage: set -a; . $KIT_CI_STATE/env; set +a; .venv/bin/python bench/doctor.py [runs]
"""

import os
import sys
import tempfile
from pathlib import Path

from timing import time_command, verdict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kit import doctor, rollout, settings  # noqa: E402
from tests.rendering import env_text  # noqa: E402
from tests.standin import FakeApi  # noqa: E402

INV = Path(sys.executable).parent / "inv"
GOAL = 3.0
STORAGE_CLASS = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "rancher.io/local-path",
                 "metadata": {"name": "standard", "annotations": {doctor.DEFAULT_STORAGE_CLASS: "true"}}}
INGRESS_CLASS = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "nginx"},
                 "spec": {"controller": "k8s.io/ingress-nginx"}}


def main(runs: int) -> None:
    registry = os.environ.get("KIT_TEST_REGISTRY")
    if not registry or not os.environ.get("KIT_TEST_DOCKER"):
        sys.exit("needs KIT_TEST_REGISTRY and KIT_TEST_DOCKER (bash .ci/run starts them; see the usage line)")
    with tempfile.TemporaryDirectory() as workdir:
        api = FakeApi().start()
        try:
            env_file = Path(workdir) / "bench.env"
            env_file.write_text(env_text(REGISTRY=registry))
            env = {**os.environ, "KUBECONFIG": api.write_kubeconfig(str(Path(workdir) / "kubeconfig")),
                   settings.ENV_FILE_VARIABLE: str(env_file), "DOCKER_HOST": os.environ["KIT_TEST_DOCKER"],
                   "TMPDIR": workdir}
            os.environ.update(KUBECONFIG=env["KUBECONFIG"])
            api.put(STORAGE_CLASS)
            api.put(INGRESS_CLASS)
            rollout.secrets(settings.load(env_file), out=lambda line: None)

            def no_failure(stdout: str) -> None:
                failed = [line for line in stdout.splitlines() if line.startswith(doctor.FAIL)]
                if failed:
                    sys.exit(f"doctor found a failure, so the cluster or registry is not set up: {failed}")

            time_command([INV, "doctor"], 1, cwd=ROOT, env=env)  # warm the discovery and file caches
            print(verdict("inv doctor", time_command([INV, "doctor"], runs, no_failure, cwd=ROOT, env=env), GOAL))
        finally:
            api.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
