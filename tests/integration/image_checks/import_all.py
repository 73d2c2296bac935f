"""Imports every top-level module of the distributions named on the command line, and prints one line per
distribution: `name: module, …` or `name: FAILED module (error)`. Run inside the image, where the build
has stripped the libraries and deleted the packages' test suites: both must break no import. A module
that needs an optional package the image does not have (duckdb's ADBC driver, say) is listed as such."""

import importlib
import importlib.util
import sys
from importlib.metadata import packages_distributions


def main(names: list[str]) -> None:
    modules_of: dict[str, list[str]] = {}
    for module, distributions in packages_distributions().items():
        for distribution in distributions:
            modules_of.setdefault(canonical(distribution), []).append(module)
    for name in names:
        modules = sorted(module for module in modules_of.get(canonical(name), []) if not module.startswith("__"))
        imported, failures = [], []
        for module in modules:
            try:
                importlib.import_module(module)
                imported.append(module)
            except ModuleNotFoundError as error:
                if error.name and importlib.util.find_spec(error.name.partition(".")[0]) is None:
                    imported.append(f"{module} (needs {error.name}, not installed)")
                else:
                    failures.append(f"{module} ({error})")
            except Exception as error:  # every kind of failure is a finding to report, not to stop on
                failures.append(f"{module} ({type(error).__name__}: {error})")
        print(f"{name}: FAILED {'; '.join(failures)}" if failures else f"{name}: {', '.join(imported) or 'NO MODULES'}")


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


if __name__ == "__main__":
    main(sys.argv[1:])
