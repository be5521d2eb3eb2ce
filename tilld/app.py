"""The composition root: builds every object, starts them in order, stops them in reverse.

Start-up reads like the list it is (``Daemon._parts``): the journal, the
till's own state, the network and device parts, the APIs, READY=1.
tilld/lifecycle.py starts the list and stops what started in reverse, also
after a start-up that failed half-way. Nothing before the APIs waits for the
back-end or a device, so a till with its server gone still comes up. It is
one file, a little over 500 lines, so the wiring and the part list are read
in one place.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .api.jsonrpc import Dispatcher
from .api.roles import RoleMap
from .api.socket import ClientLimits, SocketServer
from .backend import BackendClient
from .cardpay import CardPayments
from .catalog import Catalog
from .catalog_loading import CatalogLoader
from .config import Settings
from .connectivity import ConnectivityMonitor
from .devices import Devices
from .errors import Refused, StartupError
from .events import EventBus
from .journal import Journal
from .lifecycle import Lifecycle, Part
from .logs import set_level
from .outbox import Outbox
from .payment_policy import PaymentPolicy
from .printing import Printing
from .receipt import Seller
from .refunds import Refunds
from .registering import Registering
from .reload import Loader, Reloader
from .reporting import Reports
from .rules import Connectivity
from .sdnotify import Notifier
from .selling import Selling
from .settlement import Settlement
from .shutdown import EXIT_S, JOURNAL_CLOSE_S, STOP_BUDGET_S
from .supervision import StatusReporter, WatchdogPinger
from .swish import SwishPayments
from .sync import SyncEngine
from .testhooks import install as install_test_hooks
from .ticket_scans import TicketScans
from .till import DemoControls, Till

if TYPE_CHECKING:
    from .api.dbus import DBusService

log = logging.getLogger("tilld")

# Requests in flight when SIGTERM comes get this long to be answered.
API_DRAIN_S = 2.0
# How long a thread holding the GIL keeps the event loop waiting for it. The
# journal's threads run Python too (a sync batch's 200 entries encoded on the
# bulk reader); at Python's default 5 ms, a gate's answer could wait that long
# several times over during a drain, for the handover alone.
GIL_SWITCH_S = 0.001
JOURNAL = "the journal"


def check_state_dir(settings: Settings) -> None:
    state = settings.paths.state_dir
    if state.exists() and not state.is_dir():
        raise StartupError(
            f"the state directory {state} is a file, not a directory. Move it aside or "
            "set paths.state_dir."
        )
    try:
        state.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(
            f"cannot create the state directory {state}: {exc.strerror}. "
            "Create it and give it to the tilld user, or set paths.state_dir."
        ) from exc
    if not os.access(state, os.W_OK | os.X_OK):
        raise StartupError(
            f"the state directory {state} is not writable by uid {os.getuid()}; "
            "the journal cannot be kept there. Give it to the tilld user "
            "(chown tilld: it) or set paths.state_dir."
        )


def lock_state_dir(settings: Settings) -> int:
    """Hold an exclusive lock on the state directory for the daemon's lifetime.

    Two daemons on one journal would each keep their own idea of its head and
    fight over every sequence number; the second one must not start at all.
    The kernel drops the lock when the process dies, even by SIGKILL.
    """
    path = settings.paths.state_dir / "tilld.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StartupError(
            f"another tilld is already using the state directory {settings.paths.state_dir}; "
            "stop it first (systemctl stop tilld) or give this one its own paths.state_dir."
        ) from None
    return fd


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        load_settings: Loader | None = None,
        notifier: Notifier | None = None,
        watchdog_s: float | None = None,
        demo: DemoControls | None = None,
    ) -> None:
        """``load_settings`` re-reads the configuration on reload (None: no reloads);
        ``notifier`` talks to systemd (None: nobody is listening); ``demo`` is the
        demo's switches (tilld demo only).

        Every part is built here once, in dependency order, and given what it
        needs through its constructor. The running configuration is read
        through ``self.current_settings``: a reload replaces it in one place."""
        self.settings = settings
        self.notifier = notifier or Notifier(None)
        self.events = EventBus()
        self.journal = Journal(settings.journal_path, settings.till.id, self.notifier)
        # The back-end client and the monitor report to each other (a failed
        # request counts as a probe; a probe is a request): they meet here.
        self.backend = BackendClient(
            settings.backend.url,
            settings.till.id,
            token_file=settings.backend.token_file,
            timeout_s=settings.backend.timeout_s,
            report=self._server_report,
        )
        self.monitor = ConnectivityMonitor(
            server_probe=(
                (lambda: self.backend.health(settings.connectivity.probe_timeout_s))
                if self.backend.configured
                else None
            ),
            internet_probes=settings.connectivity.internet_probes,
            interval_s=settings.connectivity.probe_interval_s,
            backoff_cap_s=settings.connectivity.backoff_cap_s,
            probe_timeout_s=settings.connectivity.probe_timeout_s,
            on_change=self._mode_changed,
        )
        current = self.current_settings
        connectivity = self._connectivity
        catalog = Catalog(settings.catalog_path)
        self.outbox = Outbox(self.journal, self.events)
        self.catalog_loader = CatalogLoader(catalog, self.journal, current)
        self.sync = SyncEngine(
            self.outbox,
            self.catalog_loader,
            self.journal,
            self.backend,
            batch_size=settings.sync.batch_size,
            backoff_cap_s=settings.connectivity.backoff_cap_s,
            catalog_refresh_s=settings.sync.catalog_refresh_s,
            server_up=lambda: self.monitor.server.up,
        )
        self.scans = scans = TicketScans(
            catalog, self.journal, self.events, connectivity, self.outbox, self.sync.register_now
        )
        self.devices = Devices(
            self.events,
            scans.gate_scan,
            scanner=settings.devices.scanner,
            printer=settings.devices.printer,
            terminal=settings.devices.terminal,
            controlunit=settings.devices.controlunit,
        )
        seller = Seller(
            settings.till.seller_name,
            settings.till.org_number,
            settings.till.address,
            settings.till.id,
        )
        self.registering = Registering(
            self.devices.controlunit,
            self.journal,
            self.events,
            seller,
            answer_wait_s=settings.devices.controlunit.answer_wait_s,
        )
        self.devices.watchers.append(self.registering.unit_status_changed)
        printer = settings.devices.printer
        self.printing = Printing(
            self.devices.printer,
            self.journal,
            self.events,
            seller,
            self.registering,
            width=printer.width,
            code_page=printer.code_page,
            drawer_pin=printer.drawer_pin,
            cache_dir=settings.paths.state_dir / "cache",
        )
        settlement = Settlement(
            current,
            self.journal,
            self.events,
            catalog,
            connectivity,
            self.outbox,
            self.printing,
            self.registering,
        )
        self.card = CardPayments(
            self.devices.terminal,
            self.journal,
            self.events,
            settlement,
            connectivity=connectivity,
            settings=current,
        )
        self.swish = SwishPayments(
            settlement,
            self.journal,
            self.events,
            self.backend,
            payee=lambda: current().till.seller_name,
            poll_interval_s=settings.swish.poll_interval_s,
            timeout_s=settings.swish.timeout_s,
        )
        policy = PaymentPolicy(current, catalog, connectivity, self.card)
        self.reloader = Reloader(settings, load_settings, self._apply_settings, self.notifier)
        self.till = Till(
            current,
            journal=self.journal,
            events=self.events,
            backend=self.backend,
            monitor=self.monitor,
            catalog=catalog,
            outbox=self.outbox,
            catalog_loader=self.catalog_loader,
            settlement=settlement,
            policy=policy,
            selling=Selling(
                current,
                self.journal,
                self.events,
                catalog,
                connectivity,
                settlement,
                policy,
                self.backend,
                card=self.card,
                swish=self.swish,
            ),
            refunds=Refunds(current, self.journal, connectivity, settlement, policy, self.card),
            scans=scans,
            reports=Reports(
                current,
                self.journal,
                self.outbox,
                self._unit_id,
                self.printing.print_report,
                self.card.close_batch,
            ),
            sync=self.sync,
            card=self.card,
            devices=self.devices,
            printing=self.printing,
            reload=self.reloader.reload,
            demo=demo,
        )
        roles = RoleMap(settings.api.cashier_group, settings.api.tech_group)
        self.api = SocketServer(
            settings.api.socket_path,
            Dispatcher(self.till, roles),
            self.events,
            roles,
            ClientLimits(
                max_clients=settings.api.max_clients,
                per_uid=settings.api.max_clients_per_uid,
                tech_reserved=settings.api.tech_reserved_clients,
                line_timeout_s=settings.api.line_timeout_s,
            ),
        )
        self.dbus = self._dbus_service(settings, roles)
        self.status_reporter = StatusReporter(self.notifier, self.events, self.describe)
        self.watchdog = WatchdogPinger(self.notifier, watchdog_s)
        self.lifecycle = Lifecycle()
        self.parts = self._parts()
        self._reloads: asyncio.Task[None] | None = None
        self._started_at = time.monotonic()
        self._on_ready: Callable[[], None] | None = None
        self._stop = asyncio.Event()
        self._reload_wanted = asyncio.Event()
        self._stopping = False
        # Set when the stop begins: the process is gone by then (tilld/shutdown.py).
        self.exit_deadline = math.inf
        self.journal_closed = False

    def current_settings(self) -> Settings:
        """The running configuration: the one a reload put into effect last."""
        return self.settings

    def _unit_id(self) -> str | None:
        unit = self.devices.controlunit
        return unit.identity.unit_id if unit is not None and unit.identity else None

    def _connectivity(self) -> Connectivity:
        return self.monitor.state

    def _server_report(self, ok: bool, error: str | None) -> None:
        self.monitor.report_server(ok, error)

    def _mode_changed(self, state: Connectivity) -> None:
        self.till.mode_changed(state)

    async def run(self, on_ready: Callable[[], None] | None = None) -> None:
        started = time.monotonic()
        sys.setswitchinterval(GIL_SWITCH_S)
        check_state_dir(self.settings)
        lock = lock_state_dir(self.settings)
        try:
            await self._run(started, on_ready)
        finally:
            os.close(lock)

    async def _run(self, started: float, on_ready: Callable[[], None] | None) -> None:
        # Handlers first: a SIGTERM or SIGHUP during start-up must not kill the
        # daemon half-way; it is acted on once the till is up.
        self._install_signal_handlers()
        self._started_at = started
        self._on_ready = on_ready
        try:
            try:
                await self.lifecycle.start(self.parts)
                await self._stop.wait()
            finally:
                # At SIGTERM, or when the start-up failed: whatever started stops.
                self._stop_began()
                journal_open = JOURNAL in self.lifecycle.started
                problems = await self.lifecycle.stop(self.exit_deadline - EXIT_S)
                self.journal_closed = journal_open and JOURNAL not in {p.step for p in problems}
        finally:
            self._remove_signal_handlers()
        log.info("stopped")

    def _stop_began(self) -> None:
        """Start the stop's clock, once: at SIGTERM, or when start-up fails."""
        if self.exit_deadline == math.inf:
            self.exit_deadline = time.monotonic() + STOP_BUDGET_S

    def _dbus_service(self, settings: Settings, roles: RoleMap) -> DBusService | None:
        if settings.api.dbus == "none":
            return None
        # Imported only when a bus is configured: dbus-fast and the D-Bus
        # adapter are a twentieth of a start's imports, and a till (or a
        # test) without a bus has no use for them.
        from .api.dbus import DBusService

        return DBusService(settings.api.dbus, self.till, self.events, roles)

    def _parts(self) -> list[Part]:
        """Every part in the order it starts; the stop is the reverse (tilld/lifecycle.py).

        The journal first and closed last, with time kept for it: a sale being
        committed is either fully stored or not at all. Nothing before the
        APIs waits for the back-end or a device (each reconnects on its own),
        so a till with its server gone is ready as soon as its journal is.
        The APIs start last and stop first: by the time anyone can ask, all
        they need runs, and requests in flight at SIGTERM get their answers
        while it still does. READY=1 follows the APIs; its stop (STOPPING=1,
        no new sales) is the first thing a stop does after STATUS= reports."""
        return [
            Part(
                JOURNAL,
                self.journal.open,
                self.journal.close,
                JOURNAL_CLOSE_S,
                reserved_s=JOURNAL_CLOSE_S,
            ),
            # Pings from here to the end: a slow start or drain must not look like a hang.
            Part("the watchdog", _started(self.watchdog.start), self.watchdog.stop, 0.25),
            # The catalog, the open sales, the outbox's counts; the sale sweep.
            Part("the till", self.till.start, self.till.stop, 0.5),
            Part("the back-end client", self.backend.start, self.backend.stop, 0.5),
            Part("connectivity probes", self.monitor.start, self.monitor.stop, 0.5),
            Part("sync", self.sync.start, self.sync.stop, 0.25),
            # A scanner's scans are registered live until the devices have
            # stopped; those left are journaled, and sync replays them.
            Part("live scan registrations", _started(lambda: None), self.scans.stop, 0.25),
            Part("Swish", self.swish.start, self.swish.stop, 0.25),
            Part("the devices", self.devices.start, self.devices.stop, 1.25),
            Part("printing", self.printing.start, self._stop_printing, 1.0),
            # Registers receipts with the control unit, then prints them.
            Part("control unit registrations", self.registering.start, self.registering.stop, 0.25),
            # Payments in doubt are known before anyone can ask to void their sale.
            Part("card payments", self.card.start, self.card.stop, 0.5),
            # Operations started without waiting (a card payment at the terminal)
            # are cancelled before the card payments and devices they use stop.
            Part("jobs", _started(lambda: None), self.till.jobs.stop, 0.5),
            Part("SIGHUP reloads", self._start_reloads, self._stop_reloads, 0.25),
            # D-Bus never stops the till from starting: without a bus it warns and retries.
            Part("the APIs", self._start_apis, self._stop_apis, API_DRAIN_S + 0.5),
            Part("readiness", self._ready, self._stopping_begins, 0.25),
            Part(
                "STATUS= reports",
                _started(self.status_reporter.start),  # sends the first STATUS= at once
                self.status_reporter.stop,
                0.25,
            ),
        ]

    async def _ready(self) -> None:
        log.info(
            "till %s ready in %.0f ms: mode %s, journal at seq %d",
            self.settings.till.id,
            (time.monotonic() - self._started_at) * 1000,
            self.till.connectivity.mode.value,
            self.journal.head_seq,
        )
        self.notifier.ready()
        if self._on_ready is not None:
            self._on_ready()

    async def _stopping_begins(self) -> None:
        log.info("stopping: no new sales")
        self._stopping = True
        self.till.accepting_sales = False
        self.status_reporter.push("STOPPING=1")

    async def _stop_printing(self) -> None:
        # Drawer kicks a sale set off are still on their way to the printer:
        # they get their moment (settlement.py) before the printer goes.
        await self.till.settlement.stop()
        await self.printing.stop()

    async def _start_reloads(self) -> None:
        self._reloads = asyncio.create_task(self._reload_on_sighup(), name="SIGHUP reloads")

    async def _stop_reloads(self) -> None:
        if self._reloads is not None:
            self._reloads.cancel()
            await asyncio.gather(self._reloads, return_exceptions=True)

    async def _start_apis(self) -> None:
        await self.api.start()
        if self.dbus is not None:
            try:
                await self.dbus.start()
            except BaseException:
                # The APIs start as one part: a failed D-Bus start leaves no socket behind.
                await self.api.stop(0)
                raise

    async def _stop_apis(self) -> None:
        # Both at once: each drains its requests in flight within API_DRAIN_S.
        stops = [self.api.stop(API_DRAIN_S)]
        if self.dbus is not None:
            stops.append(self.dbus.stop(API_DRAIN_S))
        failures = [r for r in await asyncio.gather(*stops, return_exceptions=True) if r]
        if failures:
            raise ExceptionGroup("stopping the APIs failed", failures)

    def describe(self) -> str:
        """The one-line STATUS= shown by `systemctl status tilld`."""
        pending = self.till.status()["pending"]
        state = "stopping, no new sales" if self._stopping else "selling"
        return (
            f"{state}; mode {self.till.connectivity.mode.value}; pending "
            f"{pending['entries']} entries, {pending['tickets']} tickets, {pending['scans']} scans"
        )

    async def _reload_on_sighup(self) -> None:
        # SIGHUPs that arrive while a reload runs, or before it starts, set the
        # same event: any number of them becomes one more reload.
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            try:
                await self.reloader.reload("SIGHUP")
            except Refused:
                pass  # logged by the reloader; the running configuration stays
            except Exception:
                log.exception("reload failed; the running configuration stays")

    async def _apply_settings(self, new: Settings) -> None:
        """Put the live keys of a reloaded configuration into effect (see tilld/reload.py)."""
        self.settings = new
        set_level(new.log.level)
        await self.till.reconfigure(new)
        await self.monitor.reconfigure(
            internet_probes=new.connectivity.internet_probes,
            interval_s=new.connectivity.probe_interval_s,
            backoff_cap_s=new.connectivity.backoff_cap_s,
            probe_timeout_s=new.connectivity.probe_timeout_s,
        )
        self.sync.batch_size = new.sync.batch_size
        self.sync.catalog_refresh_s = new.sync.catalog_refresh_s
        self.sync.backoff_cap_s = new.connectivity.backoff_cap_s
        self.swish.poll_interval_s = new.swish.poll_interval_s
        self.swish.timeout_s = new.swish.timeout_s
        self.status_reporter.push()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_wanted.set)
        install_test_hooks(loop, self.notifier, self.settings.paths.state_dir)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR2):
            loop.remove_signal_handler(sig)

    def stop(self) -> None:
        self._stop.set()


def _started(start: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    """A part whose start() only creates its task, as the lifecycle awaits it."""

    async def started() -> None:
        start()

    return started
