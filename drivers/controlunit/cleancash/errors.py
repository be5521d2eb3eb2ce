"""The one error the CleanCash codec raises for bad input."""

from __future__ import annotations


class CcspProtocolError(ValueError):
    """Characters that are not valid CCSP: the message names what was wrong and where.

    Every parser in drivers/controlunit/cleancash raises this, and only this,
    for bad input, so a unit (or line noise) can never crash the driver with
    an IndexError.
    """
