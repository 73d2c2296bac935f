"""The Prefect-on-Kubernetes kit: settings from .env, rendered manifests, and the edges that apply them."""

from pathlib import Path

# The kit's files (.env, manifests/, config/) are found from here, whatever the working directory.
ROOT = Path(__file__).resolve().parent.parent
