"""The checked-in YAML stays clean under the repository's yamllint configuration."""

from yamllint import linter
from yamllint.config import YamlLintConfig

from kit import ROOT


def test_manifests_and_config_are_yamllint_clean():
    config = YamlLintConfig(file=str(ROOT / ".yamllint.yaml"))
    paths = sorted((ROOT / "manifests").rglob("*.yaml")) + sorted((ROOT / "config").glob("*.yaml"))
    assert paths
    problems = [f"{path.name}:{p.line}: {p.message}" for path in paths
                for p in linter.run(path.read_text(), config, str(path))]
    assert problems == []
