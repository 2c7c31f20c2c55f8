"""Ingest's errors, under the shared tree of peepers_common.errors.

::

InfrastructureError
└── SpoolUnavailable        the spool could not store a record durably
"""

from __future__ import annotations

from peepers_common.errors import InfrastructureError

__all__ = ["SpoolUnavailable"]


class SpoolUnavailable(InfrastructureError):
    """The durable spool could not store a record."""
