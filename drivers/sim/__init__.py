"""Simulators that speak the devices' real bytes over ptys and TCP sockets.

Each runs as its own process (`tilld sim printer|scanner`), announces its
addresses as `key=value` lines on stdout, and takes orders on a small HTTP
control port, so tests and the demo drive them the same way a technician can
with curl.
"""
