"""The orders service's own errors, under the common tree (`peepers_common.errors`).

::

PeepersError
├── InvalidOrderNotification (ValueError)   a record that names no order, shipment or
│                                           payment of its seller: to the DLQ
├── MailRejected                            the SMTP server refused the sender or the
│                                           recipient: no retry fixes it, to the DLQ
├── ResourceBusy
│   ├── ShipmentNotLinked                   a shipment of no order cached yet: parked,
│   │                                       retried once its order is known
│   ├── BackfillBusy                        another run backfills the seller now: retried
│   │                                       (then that run covers it)
│   └── MailInFlight                        another mailer process is sending this mail:
│                                           retried (then the ledger has it)
└── InfrastructureError
└── MailUnavailable                     the SMTP server refused or did not answer:
the mail is parked and sent when it is back
"""

from __future__ import annotations

from peepers_common.errors import InfrastructureError, PeepersError, ResourceBusy


class InvalidOrderNotification(PeepersError, ValueError):
    """A notification that does not name an order, shipment or payment of its seller."""


class MailRejected(PeepersError):
    """The SMTP server refused the sender or every recipient (a 5xx reply)."""


class ShipmentNotLinked(ResourceBusy):
    """No cached order names this shipment yet (its order's notification is behind it)."""


class BackfillBusy(ResourceBusy):
    """Another run (a rebuild's, or a connection's) is backfilling this seller now."""


class MailInFlight(ResourceBusy):
    """Another mailer process holds this (order, transition)'s mail: it is sending it."""


class MailUnavailable(InfrastructureError):
    """The SMTP server did not take the message (down, refused, timed out)."""
