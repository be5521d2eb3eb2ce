"""The one error the nexo codec and HTTP layer raise for bad input."""

from __future__ import annotations


class NexoProtocolError(ValueError):
    """Bytes that are not a nexo message we can use: the text names what and where.

    Every parser in drivers/nexo raises this, and only this, for bad input, so a
    terminal (or anything else on the network) can never crash the driver with
    a KeyError or an expat error.
    """
