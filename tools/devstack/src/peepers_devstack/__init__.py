"""``make run``: the whole Peepers stack against the ML sandbox (see orchestrator.py)."""

from peepers_devstack.orchestrator import Options, Orchestrator

__all__ = ["Options", "Orchestrator"]
