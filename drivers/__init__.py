"""Hardware drivers for tilld: bytes and devices, never sales.

Nothing here imports from `tilld`; the daemon imports these drivers.
"""
