"""Benchmark: bytes image/Dockerfile adds over the Prefect base image, against the seed's Dockerfile, and
the time of a warm rebuild after a change under flows/.

    .venv/bin/python bench/image_size.py

Needs a Docker engine and the base image prefecthq/prefect:<IMAGE_PREFECT_VERSION>-python3.11 (in CI, the
stand-in made by .ci/services/30-prefect-base). Builds four images side by side, on the same base:

- ours, with the defaults of .env.example (goal: at most 30 % of the bytes the seed's Dockerfile adds
  with its own package set);
- ours, with the seed's package set: every vendor-free driver plus IMAGE_EXTRAS=dataframes,spark (the
  seed's list as image/requirements/ modernised it: spark is the Spark Connect client, all the seed's
  pyspark could be without a Java runtime);
- the seed's Dockerfile (../shared/seed/) with each of those two package sets (goal for ours: at most
  60 % of the seed's bytes with the same set), changed only where it must (lines marked `bench:`):
  the same base; no Microsoft or Oracle downloads (unreachable here, and left out of ours too); the
  machine's CA certificates for pip (the seed has no CA handling, and pip cannot reach PyPI here
  without them); and the packages at the same versions as ours (the seed's unpinned list would pull
  other packages and even another Prefect), which needs two more -dev packages to compile.

Then it appends a line to a file under flows/ and times the rebuild of ours (goal: at most 10 s).
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kit import ROOT, image, progress, settings, streams  # noqa: E402

VENDOR_FREE = "kerberos,freetds,odbc,mariadb,oracle"
SEED_SET_EXTRAS = "dataframes,spark"

# The seed's Dockerfile as published, with the base image and the two vendor downloads changed (marked).
SEED_DOCKERFILE = """\
FROM {base} AS build

RUN echo "Europe/Warsaw" > /etc/timezone
RUN dpkg-reconfigure -f noninteractive tzdata

RUN apt update

RUN DEBIAN_FRONTEND=noninteractive apt-get -yq install krb5-user libgssapi-krb5-2
RUN apt install -yq --no-install-recommends \\
    curl gnupg cron wget unzip cifs-utils \\
    build-essential python3-dev unixodbc-dev freetds-dev \\
    libmariadb-dev libsasl2-dev libaio1 htop \\
    unixodbc odbcinst
# bench: headers for gssapi and mysqlclient, which the same package set as ours compiles
RUN apt install -yq --no-install-recommends libkrb5-dev pkg-config

RUN echo 'export PATH="$PATH:/opt/mssql-tools/bin"' >> ~/.bashrc
CMD ["source", "~/.bashrc"]

# bench: the msodbcsql17/18 .deb downloads are left out (vendor download, left out of ours too)

WORKDIR /opt/oracle
# bench: the Instant Client download is left out (vendor download, left out of ours too)
RUN apt-get update \\
    && apt-get install -y --no-install-recommends \\
    && apt-get autoremove -yqq --purge \\
    && apt-get clean \\
    && rm -rf /var/lib/apt/lists/*

WORKDIR /

# bench: the machine's CA certificates, without which pip cannot reach PyPI from here
COPY ca-certificates/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt
COPY requirements_build.txt /
RUN pip install --no-cache-dir -r /requirements_build.txt

RUN apt-get autoremove -yqq --purge \\
    && apt-get clean \\
    && rm -rf /var/lib/apt/lists/*

COPY config/krb5/krb5.conf /etc/
"""


def main() -> None:
    import docker

    api = docker.from_env(timeout=None).api
    defaults = example_settings()
    base = f"prefecthq/prefect:{defaults.image_prefect_version}-python3.11"
    base_size = api.inspect_image(base)["Size"]
    seed_set = example_settings(IMAGE_DRIVERS=VENDOR_FREE, IMAGE_EXTRAS=SEED_SET_EXTRAS)

    with tempfile.TemporaryDirectory() as scratch:
        project = copy_project(Path(scratch) / "kit")
        ours_default = build_ours(defaults, project, "bench-default")
        ours_seed_set = build_ours(seed_set, project, "bench-seed-set")
        seed = build_seed(api, base, seed_set, Path(scratch) / "seed", "bench/seed:seed-set")
        seed_default = build_seed(api, base, defaults, Path(scratch) / "seed-default", "bench/seed:default-set")
        flow = next(path for path in sorted((project / "flows").glob("*.py")))
        with flow.open("a") as changed:
            changed.write(f"# bench: changed at {time.time()}\n")
        before = api.inspect_image(ours_default)["Id"]
        started = time.monotonic()
        build_ours(defaults, project, "bench-default")
        warm = time.monotonic() - started
        if api.inspect_image(ours_default)["Id"] == before:
            raise SystemExit("the warm rebuild gave the same image: the change under flows/ was not built")

    added = {name: api.inspect_image(ref)["Size"] - base_size
             for name, ref in (("ours_default", ours_default), ("ours_seed_set", ours_seed_set), ("seed", seed),
                               ("seed_default", seed_default))}
    print(f"\nbase image {base}: {mb(base_size)}")
    print(f"{'image':44} {'bytes added':>12} {'of seed':>8} {'goal':>6}")
    print(f"{'seed Dockerfile (seed package set)':44} {mb(added['seed']):>12} {'100 %':>8}")
    print(row("ours, seed package set", added["ours_seed_set"], added["seed"], 60))
    print(row("ours, .env.example defaults", added["ours_default"], added["seed"], 30))
    print(f"{'seed Dockerfile (our default package set)':44} {mb(added['seed_default']):>12}")
    print(row("ours, the same default package set", added["ours_default"], added["seed_default"], 60)
          + " (of the seed Dockerfile with that set)")
    print(f"  (defaults: IMAGE_DRIVERS={','.join(defaults.image_drivers)} "
          f"IMAGE_EXTRAS={','.join(defaults.image_extras)})")
    print(f"warm rebuild after a change under flows/: {warm:.1f} s (goal <= 10 s)")
    print("\nlargest layers each adds (the Python packages of the seed package set are the same in both):")
    base_layers = len(api.history(base))
    for name, ref in (("seed", seed), ("ours, seed package set", ours_seed_set), ("ours, defaults", ours_default)):
        added_layers = api.history(ref)[: -base_layers]
        for layer in sorted(added_layers, key=lambda entry: entry["Size"], reverse=True)[:3]:
            print(f"  {name:24} {mb(layer['Size']):>10}  {instruction(layer['CreatedBy'])}")


def example_settings(**overrides: str) -> settings.Settings:
    text = (ROOT / ".env.example").read_text().replace(settings.PLACEHOLDER, "bench-password-long-enough")
    for key, value in overrides.items():
        text = re.sub(rf"^{key}=.*$", f"{key}={value}", text, flags=re.M)
    return settings.parse(text)


def copy_project(target: Path) -> Path:
    for name in ("image", "config", "flows"):
        shutil.copytree(ROOT / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def build_ours(current: settings.Settings, project: Path, tag: str) -> str:
    built = image.build(current, project, tag=tag, echo=lambda line: None)
    return f"{built.repository}:{built.tag}"


def build_seed(api, base: str, current: settings.Settings, context: Path, tag: str) -> str:
    """The seed's Dockerfile, installing the same packages at the same versions as ours."""
    (context / "config/krb5").mkdir(parents=True)
    shutil.copy(ROOT / "config/krb5.conf", context / "config/krb5/krb5.conf")
    (context / "Dockerfile").write_text(SEED_DOCKERFILE.format(base=base))
    pins = dict(line.split("==", 1) for line in (ROOT / "image/constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    pins = {normalise(name): version for name, version in pins.items()}
    groups = ["base", *current.image_drivers, *current.image_extras]
    wanted = []
    for group in groups:
        for line in (ROOT / f"image/requirements/{group}.txt").read_text().splitlines():
            if line and not line.startswith("#"):
                name = normalise(re.split(r"[\[=<>]", line, maxsplit=1)[0])
                wanted.append(f"{line}=={pins[name]}" if name in pins else line)
    (context / "requirements_build.txt").write_text("\n".join(wanted) + "\n")
    shutil.copytree(ROOT / "config/ca-certificates", context / "ca-certificates",
                    ignore=shutil.ignore_patterns("*.md"))
    stream = api.build(path=str(context), tag=tag, network_mode="host", rm=True, forcerm=True, decode=True)
    streams.BuildLog(progress.PlainBuild(lambda line: None, verbose=False)).read(stream)
    return tag


def normalise(name: str) -> str:
    """A package name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def row(label: str, added: int, seed: int, goal: int) -> str:
    share = 100 * added / seed
    verdict = "ok" if share <= goal else "MISSED"
    return f"{label:44} {mb(added):>12} {share:>6.0f} % {'<= ' + str(goal) + ' %':>6} {verdict}"


def instruction(created_by: str) -> str:
    """A history entry's instruction, without the shell prefix and the build args the builder records."""
    text = re.sub(r"^(\|\d+( \S+=\S*)+ )?(/bin/(ba)?sh( -\S+| pipefail)* -c )?(#\(nop\) )?", "",
                  " ".join(created_by.split()))
    return text if len(text) <= 70 else text[:69] + "…"


def mb(size: int) -> str:
    return f"{size / 1e6:,.0f} MB"


if __name__ == "__main__":
    main()
