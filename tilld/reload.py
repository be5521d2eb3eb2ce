"""Reloading the configuration without a restart: what may change live, and the one reload path.

SIGHUP (``systemctl reload tilld``) and the ``admin.reload`` operation both
come here, so they can never differ. A reload reads the file again, compares
it key by key with the running configuration and applies the keys that are
safe to change while selling. Keys that shape the daemon's identity or its
open resources (the journal's directory, the socket, the till id the journal
is bound to, the back-end session, devices) keep their running value and are
named in a warning: they take effect at the next restart. An invalid file
changes nothing and is reported; a reload never stops the till.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, SecretStr

from .config import Settings
from .errors import ConfigError, Reason, Refused
from .sdnotify import Notifier

log = logging.getLogger("tilld.reload")

# Dotted prefixes of the keys that need a restart; every other key reloads live.
RESTART_ONLY: tuple[str, ...] = (
    "till.id",  # the journal is bound to it
    "paths",  # the journal is open there, under a lock
    "api",  # the socket is bound, the role groups resolved
    "backend",  # one HTTP session with its URL, token and timeout
    "devices",  # drivers own their device nodes
)

Loader = Callable[[], Settings]
Applier = Callable[[Settings], Awaitable[None]]


def needs_restart(key: str) -> bool:
    return any(key == prefix or key.startswith(prefix + ".") for prefix in RESTART_ONLY)


def flatten(model: BaseModel, prefix: str = "") -> dict[str, Any]:
    """Every leaf key of a configuration as ``section.key`` -> value (secrets unmasked)."""
    leaves: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            leaves |= flatten(value, f"{prefix}{name}.")
        else:
            leaves[prefix + name] = (
                value.get_secret_value() if isinstance(value, SecretStr) else value
            )
    return leaves


def changed_keys(old: Settings, new: Settings) -> list[str]:
    before, after = flatten(old), flatten(new)
    return sorted(key for key in before if before[key] != after[key])


def keep_restart_only(old: Settings, new: Settings) -> Settings:
    """``new`` with every restart-only key set back to its running value."""
    merged: BaseModel = new
    for prefix in RESTART_ONLY:
        parts = prefix.split(".")
        merged = _replace(merged, parts, _get(old, parts))
    assert isinstance(merged, Settings)
    return merged


def _get(model: BaseModel, parts: list[str]) -> Any:
    for part in parts:
        model = getattr(model, part)
    return model


def _replace(model: BaseModel, parts: list[str], value: Any) -> BaseModel:
    head, rest = parts[0], parts[1:]
    replaced = _replace(getattr(model, head), rest, value) if rest else value
    return model.model_copy(update={head: replaced})


class Reloader:
    """Reads, compares and applies the configuration; one reload at a time."""

    def __init__(
        self,
        current: Settings,
        load: Loader | None,
        apply: Applier,
        notifier: Notifier,
    ) -> None:
        self.current = current
        self._load = load
        self._apply = apply
        self._notifier = notifier
        self._lock = asyncio.Lock()

    async def reload(self, origin: str) -> dict[str, Any]:
        if self._load is None:
            log.warning("reload (%s) ignored: not started from a configuration file", origin)
            raise Refused(
                Reason.RELOAD_UNAVAILABLE,
                "This daemon was not started from a configuration file (the demo builds its "
                "own); restart it to change its settings.",
            )
        async with self._lock:
            self._notifier.reloading()
            try:
                return await self._reload(origin)
            finally:
                # READY=1 after RELOADING=1 whether or not anything changed:
                # systemd waits for it to finish `systemctl reload`.
                self._notifier.ready()

    async def _reload(self, origin: str) -> dict[str, Any]:
        assert self._load is not None
        try:
            # Reading and validating the file is blocking work: off the loop.
            loaded = await asyncio.to_thread(self._load)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload (%s): configuration: %s", origin, problem)
            log.error("reload (%s) refused: keeping the running configuration", origin)
            raise Refused(
                Reason.CONFIG_INVALID,
                "The configuration file is invalid; nothing was changed. "
                "Run `tilld config check` and fix the keys it names.",
                problems=exc.problems,
            ) from None
        changed = changed_keys(self.current, loaded)
        restart = [key for key in changed if needs_restart(key)]
        applied = [key for key in changed if not needs_restart(key)]
        effective = keep_restart_only(self.current, loaded)
        await self._apply(effective)
        self.current = effective
        for key in restart:
            log.warning(
                "reload (%s): %s changed but needs a restart (systemctl restart tilld); "
                "still running with the old value",
                origin,
                key,
            )
        log.info(
            "reload (%s): %s", origin, f"applied {', '.join(applied)}" if applied else "no changes"
        )
        return {"changed": changed, "applied": applied, "restart_required": restart}
