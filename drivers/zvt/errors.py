"""The one error the ZVT codec raises."""

from __future__ import annotations


class ZvtProtocolError(ValueError):
    """Bytes that are not valid ZVT: the message names what was wrong and where.

    Every parser in drivers/zvt raises this, and only this, for bad input, so
    a terminal (or line noise) can never crash the driver with an IndexError.
    """
