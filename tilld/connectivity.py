"""Two facts, probed on their own: is the back-end reachable, is the internet reachable.

Each fact has hysteresis: one lost probe is confirmed by a quick second one
before the fact flips to down, so a dropped packet does not send the till
offline. While a fact is down it is probed with exponential backoff and full
jitter (a random wait between 0 and the capped exponential), so a fleet of
tills does not stampede a server that is coming back. A failed real request
counts as a probe: selling notices an outage before the next probe does.

While a fact is up, a probe starts every ``interval_s`` whether or not the
one before has answered: a server that has gone silent is noticed one
interval after the first unanswered probe, not after that probe's whole
timeout, so the timeout can stay long enough for a slow but working back-end
(docs/benchmarks.md weighs the two). Results may then come out of order; the
rule for that is ``Fact.record``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from drivers.backoff import backoff_delay

from .journal import now_with_offset
from .rules import Connectivity

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("tilld.connectivity")

FAILURES_TO_FLIP = 2  # hysteresis: a single lost probe does not flip the mode
CONFIRM_DELAY_S = 0.2  # how soon a first failure is re-probed
# Probes in flight at once while a fact is up: enough for FAILURES_TO_FLIP of
# them to be waiting out their timeouts while the next one starts.
MAX_PROBES_IN_FLIGHT = FAILURES_TO_FLIP + 1


@dataclass
class Fact:
    name: str
    up: bool = False
    since: str = ""
    last_error: str | None = None
    failures: int = 0
    answered: bool = False  # a first probe has answered, one way or the other
    newest_counted: int = -1  # the number of the newest probe whose result counted

    def record(self, ok: bool, error: str | None = None, probe_no: int | None = None) -> bool:
        """Take one probe result; True if the fact flipped.

        Probes overlap, so their results can come out of order: the result of
        a probe started before the newest one already counted says nothing
        newer about the server and is ignored. ``probe_no`` None (a real
        request) always counts.
        """
        if probe_no is not None:
            if probe_no < self.newest_counted:
                return False
            self.newest_counted = probe_no
        self.answered = True
        if ok:
            self.failures = 0
            if not self.up:
                self.up, self.since = True, now_with_offset()
                return True
            return False
        self.failures += 1
        self.last_error = error
        if self.up and self.failures >= FAILURES_TO_FLIP:
            self.up, self.since = False, now_with_offset()
            return True
        if not self.since:
            self.since = now_with_offset()
        return False


Probe = Callable[[], Awaitable[None]]


class ConnectivityMonitor:
    def __init__(
        self,
        *,
        server_probe: Probe | None,
        internet_probes: list[str],
        interval_s: float,
        backoff_cap_s: float,
        probe_timeout_s: float,
        on_change: Callable[[Connectivity], None],
        rng: random.Random | None = None,
    ) -> None:
        self.server = Fact("server")
        self.internet = Fact("internet")
        self._server_probe = server_probe
        self._internet_targets = internet_probes
        self.interval_s = interval_s
        self.backoff_cap_s = backoff_cap_s
        self.probe_timeout_s = probe_timeout_s
        self._on_change = on_change
        self._rng = rng or random.Random()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._probes: dict[str, set[asyncio.Task[None]]] = {}  # in flight, per fact
        self._wake = {"server": asyncio.Event(), "internet": asyncio.Event()}
        # Set when a fact comes back up: a watch waiting for its one probe
        # while down goes back on the beat at once (_watch).
        self._back = {"server": asyncio.Event(), "internet": asyncio.Event()}
        self._session: aiohttp.ClientSession | None = None
        if server_probe is None:
            self.server.last_error = "no back-end configured (backend.url is empty)"
            self.server.answered = True
        # Until every probed fact has answered once, the mode is a guess (both
        # facts start down): no mode change is told, so a UI does not show a
        # red no-internet, then server-unreachable, in a till's first second.
        # With nothing to probe the mode is known at once.
        self.settled = all(f.answered for f in self._facts)

    @property
    def state(self) -> Connectivity:
        internet = self.internet.up if self._internet_targets else self.server.up
        return Connectivity(server=self.server.up, internet=internet)

    @property
    def _facts(self) -> list[Fact]:
        return [self.server] + ([self.internet] if self._internet_targets else [])

    def describe(self) -> dict[str, object]:
        facts = self._facts
        errors = {f.name: f.last_error for f in facts if not f.up and f.last_error}
        since = max((f.since for f in facts if f.since), default="")
        return {"since": since or None, "last_error": errors or None, "probing": not self.settled}

    async def start(self) -> None:
        if self._internet_targets:
            self._session = _http_session()
        if self._server_probe is not None:
            self._tasks["server"] = asyncio.create_task(
                self._watch(self.server, self._probe_server)
            )
        if self._internet_targets:
            self._tasks["internet"] = asyncio.create_task(
                self._watch(self.internet, self._probe_internet)
            )

    async def stop(self) -> None:
        tasks = [*self._tasks.values(), *(t for probes in self._probes.values() for t in probes)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._probes.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def reconfigure(
        self,
        *,
        internet_probes: list[str],
        interval_s: float,
        backoff_cap_s: float,
        probe_timeout_s: float,
    ) -> None:
        """New probe settings from a reload; a changed target list restarts the internet probe."""
        self.interval_s = interval_s
        self.backoff_cap_s = backoff_cap_s
        self.probe_timeout_s = probe_timeout_s
        if list(internet_probes) != self._internet_targets:
            before = self.state
            old = [self._tasks.pop("internet", None), *self._probes.pop("internet", set())]
            stopping = [task for task in old if task is not None]
            for task in stopping:
                task.cancel()
            await asyncio.gather(*stopping, return_exceptions=True)
            self._internet_targets = list(internet_probes)
            if self._internet_targets:
                # Start from what the mode said so far; the first probe corrects it.
                self.internet.up = before.internet
                self.internet.failures = 0
                if self._session is None:
                    self._session = _http_session()
                self._tasks["internet"] = asyncio.create_task(
                    self._watch(self.internet, self._probe_internet)
                )
            after = self.state
            if after != before:
                log.warning(
                    "mode %s -> %s (probe targets changed)", before.mode.value, after.mode.value
                )
                self._on_change(after)
        for wake in self._wake.values():
            wake.set()  # the next probe uses the new settings now, not after the old delay

    def probe_now(self) -> None:
        """Probe every fact at once instead of after the backoff (a technician asked to sync)."""
        for wake in self._wake.values():
            wake.set()

    def report_server(self, ok: bool, error: str | None) -> None:
        """A real request to the back-end succeeded or failed: treat it as a probe."""
        self._record(self.server, ok, error)
        if not ok:
            self._wake["server"].set()  # confirm soon rather than at the next interval

    def _record(self, fact: Fact, ok: bool, error: str | None, probe_no: int | None = None) -> None:
        before = self.state
        flipped = fact.record(ok, error, probe_no)
        if flipped and fact.up:
            self._back[fact.name].set()
        elif flipped:
            log.warning("%s unreachable: %s", fact.name, error)
        elif not ok and fact.failures == 1 and fact.up:
            log.info("%s probe failed once (%s); confirming", fact.name, error)
        after = self.state
        if not self.settled:
            if all(f.answered for f in self._facts):
                self.settled = True
                log.log(
                    logging.INFO if after.mode.value == "online" else logging.WARNING,
                    "mode %s (first probes answered)",
                    after.mode.value,
                )
                self._on_change(after)
            return
        if after != before:
            log.warning("mode %s -> %s", before.mode.value, after.mode.value)
            self._on_change(after)

    async def _watch(self, fact: Fact, probe: Probe) -> None:
        """Probe ``fact``: one probe at a time with backoff while down, on a beat while up."""
        loop = asyncio.get_running_loop()
        fact.newest_counted = -1  # this watch numbers its probes from 1
        in_flight = self._probes.setdefault(fact.name, set())
        wake = self._wake[fact.name]
        attempt = 0
        number = 0
        while True:
            if fact.up and len(in_flight) >= MAX_PROBES_IN_FLIGHT:
                await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            was_up = fact.up
            number += 1
            started = loop.time()
            wake.clear()
            task = asyncio.create_task(self._probe_once(fact, probe, number))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            if was_up:
                # Up: the next probe starts on the beat, answered or not; a
                # failure (this probe's, an older one's, a real request's)
                # wakes the loop to confirm it sooner.
                attempt = 0
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval_s):
                        await wake.wait()
                if wake.is_set():
                    await asyncio.sleep(max(0.0, started + CONFIRM_DELAY_S - loop.time()))
                continue
            # Down: one probe at a time. The fact may come back up meanwhile
            # by another way (an older probe's late answer, a real request);
            # then it goes on the beat from now, not once this probe has timed
            # out, or a back-end silent again at once is noticed that late.
            back = self._back[fact.name]
            back.clear()
            came_back = asyncio.ensure_future(back.wait())
            try:
                await asyncio.wait({task, came_back}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                came_back.cancel()
            if fact.up:
                attempt, delay = 0, self.interval_s
            else:
                delay = backoff_delay(
                    attempt, self.interval_s, self.backoff_cap_s, self._rng.random
                )
                attempt += 1
            wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await wake.wait()

    async def _probe_once(self, fact: Fact, probe: Probe, number: int) -> None:
        try:
            # Not wait_for: on Python 3.11 it can swallow the cancellation
            # that stops the monitor (tilld/shutdown.py).
            async with asyncio.timeout(self.probe_timeout_s):
                await probe()
            ok, error = True, None
        except TimeoutError:
            ok, error = False, f"timed out (no answer within {self.probe_timeout_s:g} s)"
        except Exception as exc:  # any failure of a probe is an unreachable fact
            ok, error = False, str(exc) or type(exc).__name__
        self._record(fact, ok, error, number)
        if not ok:
            self._wake[fact.name].set()

    async def _probe_server(self) -> None:
        assert self._server_probe is not None
        await self._server_probe()

    async def _probe_internet(self) -> None:
        """Reachable if any target answers: a TCP connect, or any HTTP response."""
        errors = []
        for target in self._internet_targets:
            try:
                await self._probe_target(target)
                return
            except Exception as exc:
                errors.append(f"{target}: {exc or type(exc).__name__}")
        raise ConnectionError("; ".join(errors))

    async def _probe_target(self, target: str) -> None:
        parts = urlsplit(target)
        if parts.scheme == "tcp":
            _reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
            writer.close()
            return
        assert self._session is not None
        async with self._session.get(target, allow_redirects=False) as response:
            await response.read()


def _http_session() -> aiohttp.ClientSession:
    # Imported here: a till that probes no internet target never loads aiohttp's client.
    import aiohttp

    return aiohttp.ClientSession()
