"""API requests of a no-change `inv rollout`, and how long rollout takes to return once the last workload is ready.

Both against the stand-in API server (tests/standin/) through the real client, with the stand-in Prefect half
of tests/contract/clusterkit.py (bench/workers.py times the real one).
Goal for the delay: at most 1 s between the last workload becoming ready and rollout returning.

Usage: .venv/bin/python bench/rollout_requests.py [runs]
"""

import collections
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kit import pool_config, rollout  # noqa: E402
from kit.settings import WORKER_PREFIX  # noqa: E402
from tests.contract.clusterkit import StandInPrefect, digest_of  # noqa: E402
from tests.standin import FakeApi  # noqa: E402
from tests.rendering import make_settings  # noqa: E402

NS = "prefect"
GOAL = 1.0
WORKERS = [WORKER_PREFIX + queue.name for pool in pool_config.load() for queue in pool.queues]


def quiet(line: str) -> None:
    pass


def pinned(tag: str) -> str:
    """A tag with its digest, as `inv build push` records it: the registry is not what this bench counts."""
    return f"{tag}@{digest_of(tag)}"


def count_no_change(api: FakeApi, settings, cold: bool) -> collections.Counter:
    if cold:
        for cache in Path(tempfile.gettempdir()).glob("osrcp-*.json"):
            cache.unlink()
    api.clear_requests()
    rollout.rollout(settings, tag=pinned("v1"), timeout=10, prefect=StandInPrefect(api), out=quiet)
    kinds = collections.Counter()
    for request in api.requests:
        if request.query.get("watch"):
            kinds["WATCH"] += 1
        elif request.method == "GET" and (request.path.count("/") <= 3 or request.path == "/version"):
            kinds["discovery GET"] += 1
        elif request.query.get("dryRun") == "All":
            kinds["admission dry-run POST"] += 1
        else:
            kinds[request.method] += 1
    return kinds


def ready_delay(api: FakeApi, settings, tag: str) -> float:
    """Seconds from the last workload's ready status to rollout returning."""
    made_ready = {}

    def when_watched(kind: str, workloads: list[tuple[str, str]]) -> None:
        deadline = time.monotonic() + 10
        while not [r for r in api.requests if r.query.get("watch") == "true" and kind in r.path]:
            if time.monotonic() > deadline:
                return
            time.sleep(0.005)
        time.sleep(0.2)  # rollout is now blocked in its watch, as it would be while pods start
        for workload in workloads:
            api.make_ready(workload[0], NS, workload[1])
        made_ready["at"] = time.perf_counter()

    def controller():
        # The server first; the workers are applied, and watched, only once it is ready and the pools are made.
        when_watched("statefulsets", [("StatefulSet", "prefect-server")])
        when_watched("deployments", [("Deployment", name) for name in WORKERS])

    api.clear_requests()
    helper = threading.Thread(target=controller)
    helper.start()
    rollout.rollout(settings, tag=tag, timeout=10, prefect=StandInPrefect(api), out=quiet)
    returned = time.perf_counter()
    helper.join()
    return returned - made_ready["at"]


def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        tempfile.tempdir = workdir  # the discovery cache goes here, not into the shared /tmp
        api = FakeApi().start()
        os.environ["KUBECONFIG"] = api.write_kubeconfig(str(Path(workdir) / "kubeconfig"))
        settings = make_settings()
        try:
            api.controller(True)
            rollout.rollout(settings, tag=pinned("v1"), timeout=10, prefect=StandInPrefect(api), out=quiet)
            api.controller(False)
            for cold in (True, False):
                kinds = count_no_change(api, settings, cold)
                label = "cold discovery cache" if cold else "warm discovery cache"
                detail = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
                print(f"no-change rollout, {label}: {sum(kinds.values())} requests ({detail})")
            delays = [ready_delay(api, settings, pinned(f"v{run + 2}")) for run in range(runs)]
        finally:
            api.stop()
    median = statistics.median(delays)
    verdict = "meets" if max(delays) <= GOAL else "misses"
    print(f"last workload ready -> rollout returned: median {median * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms "
          f"over {runs} rollouts ({verdict} the {GOAL:g} s goal)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
