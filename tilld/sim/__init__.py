"""Simulators that speak the real protocols: the reference back-end and the fault proxy.

They share the device simulators' exit codes (sysexits(3), from ``os``) and signal handling.
"""

from __future__ import annotations

from drivers.sim import stop_requested

__all__ = ["stop_requested"]
