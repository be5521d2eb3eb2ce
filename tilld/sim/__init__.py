"""Simulators that speak the real protocols: the reference back-end and the fault proxy.

They share the device simulators' exit codes and signal handling.
"""

from __future__ import annotations

from drivers.sim import EX_CANTCREAT, EX_CONFIG, EX_OK, stop_requested

__all__ = ["EX_CANTCREAT", "EX_CONFIG", "EX_OK", "stop_requested"]
