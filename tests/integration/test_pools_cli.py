"""The tasks as a user runs them (`inv pools`, `inv profile`), against a real Prefect server."""

import stat
import subprocess
import sys
import tomllib
from pathlib import Path

from kit import ROOT, pool_config, pools, prefect_api, settings
from tests.integration.prefect_server import PREFECT, clean_environment
from tests.rendering import IMAGE
from tests.services import nowhere_kubeconfig

INV = str(Path(sys.executable).parent / "inv")


def run(command, env):
    return subprocess.run(command, cwd=ROOT, env=clean_environment(env), capture_output=True, text=True, timeout=120)


def test_inv_pools_with_a_wrong_password_is_one_error_line_naming_the_settings_file(kit_server, tmp_path):
    env_file = tmp_path / "staging.env"
    text = settings.fill_template((ROOT / ".env.example").read_text(), {"LOGIN_PASSWORD": "wrong-password-123"})
    settings.write_env_file(env_file, text)
    # The kubernetes pool needs a cluster only to dry-run its template, which comes after the 401: a kubeconfig
    # naming a server nobody listens on shows that nothing asked it.
    kubeconfig = nowhere_kubeconfig(tmp_path / "kubeconfig")
    done = run([INV, "pools", "--api-url", kit_server.api_url, "--tag", "v1"],
               {"KIT_ENV_FILE": str(env_file), "KUBECONFIG": str(kubeconfig)})
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: LOGIN_USER/LOGIN_PASSWORD: {kit_server.api_url} answered 401 Unauthorized; the server's auth "
        f"string differs from {env_file}: fix it there, or roll it out to the server (`inv rollout`)"]
    assert "wrong-password-123" not in done.stdout + done.stderr


def test_inv_profile_points_the_users_prefect_cli_at_the_server(kit_env_file, kit_settings, kit_server, tmp_path):
    home = tmp_path / "prefect-home"
    home.mkdir()
    profiles = home / "profiles.toml"
    # A profile left over from the seed's `prefect config set PREFECT_API_KEY=…`.
    profiles.write_text('active = "local"\n[profiles.local]\n[profiles.prefect]\nPREFECT_API_KEY = "pnu_old"\n')
    env = {"KIT_ENV_FILE": str(kit_env_file), "PREFECT_HOME": str(home)}

    done = run([INV, "profile", "--api-url", kit_server.api_url, "--activate"], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote profile prefect to {profiles} (PREFECT_API_URL, PREFECT_API_AUTH_STRING)")
    written = tomllib.loads(profiles.read_text())
    assert written["active"] == "prefect"
    assert written["profiles"]["prefect"] == {"PREFECT_API_URL": kit_server.api_url,
                                              "PREFECT_API_AUTH_STRING": settings.load(kit_env_file).auth_string}
    assert "local" in written["profiles"], "other profiles are kept"
    assert stat.S_IMODE(profiles.stat().st_mode) == 0o600, "the file holds the password"

    # The user's own CLI, with nothing but the profile, passes the server's auth check.
    declared = pool_config.load()
    with prefect_api.connect(kit_settings, kit_server.api_url) as client:
        pools.write(client, declared, pools.kubernetes_templates(kit_settings, declared, {"production": IMAGE}))
    cli = run([PREFECT, "work-pool", "inspect", "production"], {"PREFECT_HOME": str(home)})
    assert cli.returncode == 0 and "type='kubernetes'" in cli.stdout, cli.stdout + cli.stderr
