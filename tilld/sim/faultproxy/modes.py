"""The fault proxy's modes, their options, and the traffic counted per mode."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

HTTP_ERRORS = {
    "http500": (500, "Internal Server Error", "internal-error"),
    "http401": (401, "Unauthorized", "unauthorized"),
}
MODES = ("pass", "refuse", "blackhole", "halfdead", "reset", "slow", "latency", *HTTP_ERRORS)
MODE_OPTIONS = {
    "slow": ("delay_s",),
    "reset": ("after_bytes",),
    "latency": ("up_s", "down_s", "jitter_s"),
}
DEFAULT_DELAY_S = 1.0
DEFAULT_AFTER_BYTES = 10
# A 50 ms round trip with a little jitter: a till on a shop's DSL or 4G link.
DEFAULT_UP_S = 0.025
DEFAULT_DOWN_S = 0.025
DEFAULT_JITTER_S = 0.005
SECONDS_OPTIONS = {
    "delay_s": DEFAULT_DELAY_S,
    "up_s": DEFAULT_UP_S,
    "down_s": DEFAULT_DOWN_S,
    "jitter_s": DEFAULT_JITTER_S,
}


class InvalidMode(ValueError):
    """A mode or option the proxy does not know; the control API answers 400."""


@dataclass(frozen=True)
class Mode:
    """A mode and its options; only ``slow``, ``reset`` and ``latency`` take any."""

    name: str
    delay_s: float = DEFAULT_DELAY_S
    after_bytes: int = DEFAULT_AFTER_BYTES
    up_s: float = DEFAULT_UP_S  # latency: each chunk to the target waits this long
    down_s: float = DEFAULT_DOWN_S  # latency: each chunk to the client waits this long
    jitter_s: float = DEFAULT_JITTER_S  # latency: plus a random 0..jitter_s, never overtaking

    @classmethod
    def parse(cls, name: object, **options: object) -> Mode:
        if not isinstance(name, str) or name not in MODES:
            raise InvalidMode(f"unknown mode {name!r}; the modes are {', '.join(MODES)}")
        unknown = sorted(set(options) - set(MODE_OPTIONS.get(name, ())))
        if unknown:
            allowed = ", ".join(MODE_OPTIONS.get(name, ())) or "no options"
            raise InvalidMode(
                f"mode {name} does not take {', '.join(unknown)} (it takes {allowed})"
            )
        seconds = {}
        for option, default in SECONDS_OPTIONS.items():
            value = options.get(option, default)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise InvalidMode(f"{option} must be a number of seconds, 0 or more, not {value!r}")
            seconds[option] = float(value)
        after_bytes = options.get("after_bytes", DEFAULT_AFTER_BYTES)
        if isinstance(after_bytes, bool) or not isinstance(after_bytes, int) or after_bytes < 0:
            raise InvalidMode(f"after_bytes must be a whole number, 0 or more, not {after_bytes!r}")
        return cls(name, after_bytes=after_bytes, **seconds)

    def describe(self) -> dict[str, Any]:
        """The mode as ``POST /mode`` takes it, so an answer can be posted back."""
        described: dict[str, Any] = {"mode": self.name}
        for option in MODE_OPTIONS.get(self.name, ()):
            described[option] = getattr(self, option)
        return described


@dataclass
class Traffic:
    connections: int = 0  # accepted while the mode was in force
    to_target: int = 0  # bytes forwarded to the target
    to_client: int = 0  # bytes sent to clients, forwarded or answered by the proxy
