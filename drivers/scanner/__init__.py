"""Barcode scanners: serial, USB keyboard wedge (evdev) and USB HID POS.

Every kind turns its device's bytes into `ScanData` through the same
decoding rules (prefix and suffix stripping, symbology, debounce, garbage
reported as an error) in `decoding.py`, so a code reads the same whichever
cable the scanner came with.
"""
