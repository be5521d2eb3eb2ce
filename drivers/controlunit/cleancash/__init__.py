"""CleanCash serial protocol (CCSP): codec, link and the device.

Layout: errors, framing, fields, messages, naks (pure codec); link (the
serial port and a framed link on its descriptor); device (CleanCashUnit, a
ControlUnit). controlunit.md "CleanCash serial protocol" holds the facts;
docs/controlunit.md says which are certain and which need checking.
"""

from __future__ import annotations

from .device import CcspTimeouts, CleanCashUnit
from .errors import CcspProtocolError
from .link import BAUDRATE, SerialPort
from .naks import NAK_ERRORS, NakError

__all__ = [
    "BAUDRATE",
    "NAK_ERRORS",
    "CcspProtocolError",
    "CcspTimeouts",
    "CleanCashUnit",
    "NakError",
    "SerialPort",
]
