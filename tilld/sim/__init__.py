"""Simulators that speak the real protocols: the reference back-end and test helpers."""
