"""The Prefect-on-Kubernetes kit: settings from .env, rendered manifests, and the edges that apply them."""
