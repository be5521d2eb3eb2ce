"""Claiming a USB device through pyusb, for the printer and the HID POS scanner.

Called from a thread (pyusb blocks). The kernel driver that bound the device
(usblp, usbhid) is detached first, or it would own the device and we could
not read or write it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .device import DeviceUnavailable


@dataclass
class ClaimedUsb:
    device: Any
    endpoint_in: Any
    endpoint_out: Any


def claim(vendor_id: int, product_id: int, what: str) -> ClaimedUsb:
    """Find, detach and claim interface 0 of `vendor_id:product_id`; its bulk/interrupt ends."""
    try:
        import usb.core
        import usb.util
    except ImportError as exc:
        raise DeviceUnavailable("pyusb is not installed") from exc
    try:
        device = usb.core.find(idVendor=vendor_id, idProduct=product_id)
    except usb.core.NoBackendError as exc:
        raise DeviceUnavailable("libusb is not installed (apt install libusb-1.0-0)") from exc
    if device is None:
        raise DeviceUnavailable(f"no USB {what} {vendor_id:04x}:{product_id:04x} is plugged in")
    try:
        for interface in device.get_active_configuration():
            if device.is_kernel_driver_active(interface.bInterfaceNumber):
                device.detach_kernel_driver(interface.bInterfaceNumber)
        usb.util.claim_interface(device, 0)
        interface = device.get_active_configuration()[(0, 0)]

        def end(direction: int) -> Any:
            return usb.util.find_descriptor(
                interface,
                custom_match=lambda e: usb.util.endpoint_direction(e.bEndpointAddress) == direction,
            )

        return ClaimedUsb(device, end(usb.util.ENDPOINT_IN), end(usb.util.ENDPOINT_OUT))
    except usb.core.USBError as exc:
        raise DeviceUnavailable(f"cannot claim the {what}: {exc}") from exc


def release(device: Any) -> None:
    """Give the device back; an unplugged one has nothing left to release."""
    import usb.core
    import usb.util

    try:
        usb.util.dispose_resources(device)
    except usb.core.USBError:
        return
