"""`inv profile`: a Prefect profile named after the namespace, so the user's own `prefect` CLI talks
to the deployed server (what the seed did with `prefect config set`, minus PREFECT_API_KEY).
"""

from __future__ import annotations

from pathlib import Path

from kit import prefect_api
from kit.settings import Settings


def write(settings: Settings, api_url: str | None = None, activate: bool = False) -> tuple[str, Path]:
    """Create or update the profile; returns its name and the profiles file it lives in."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY, PREFECT_API_URL, get_current_settings
    from prefect.settings.profiles import load_profiles, save_profiles

    url = prefect_api.api_url(settings, api_url)
    profiles = load_profiles(include_defaults=False)
    # None removes the key: a Cloud key left in the profile would be sent instead of the auth string by
    # older Prefect clients.
    profiles.update_profile(settings.namespace, {PREFECT_API_URL: url, PREFECT_API_AUTH_STRING: settings.auth_string,
                                                 PREFECT_API_KEY: None})
    if activate:
        profiles.set_active(settings.namespace)
    path = get_current_settings().profiles_path
    # The file is about to hold the password, and Prefect sets 0600 only on a file it creates itself.
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    save_profiles(profiles)
    return settings.namespace, path
