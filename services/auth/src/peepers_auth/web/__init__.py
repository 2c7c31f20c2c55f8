"""The seller web app: pages over the read APIs, live updates, its own process.

``python -m peepers_auth web`` runs it (docs/web.md).
"""

__all__: list[str] = []
