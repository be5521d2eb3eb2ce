"""The D-Bus adapter: org.tilld.Till1 served from the operation table (docs/api.md, "D-Bus").

Why a low-level message handler and not dbus-fast's ``ServiceInterface``
(docs/architecture.md says the same): the methods come from a table, not
from decorated Python functions; every call needs the caller's unique name
to look up its credentials, which ``ServiceInterface`` methods never see;
and one handler is one place where any exception becomes a D-Bus error
without a traceback (dbus-fast's own fallback puts the traceback in the
reply).

D-Bus is an extra door, never a reason not to sell: with no bus, or a bus
that refuses the name, the daemon logs a warning, keeps serving the socket
and tries again in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

from dbus_fast import (
    BusType,
    Message,
    MessageFlag,
    MessageType,
    NameFlag,
    RequestNameReply,
    Variant,
)
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError

from drivers.backoff import Backoff

from ..errors import Refused
from ..events import EVENTS_PER_TURN, EventBus, Subscription
from ..till import Till
from . import dbus_names as names
from .calls import Forbidden, InternalFailure, InvalidParams, check_role, invoke
from .dbus_schema import (
    METHODS,
    PROPERTIES,
    PROPERTY_BY_NAME,
    dbus_words,
    introspect,
    params_of,
    signals_for,
)
from .dbus_types import to_vardict, to_variant, unwrap
from .operations import BY_NAME
from .roles import Caller, Role, RoleMap, proc_groups

log = logging.getLogger("tilld.api.dbus")

CONNECT_TIMEOUT_S = 5
RETRY_FIRST_S = 1
RETRY_CAP_S = 30
CREDENTIALS_CACHE = 4096
SLOW_CALL_S = 1.0
# In a burst of events, PropertiesChanged goes out after at least every this
# many turns of EVENTS_PER_TURN events each (and after the burst's last).
PROPERTIES_AFTER_TURNS = 8
# Logged with each slower call; the test suite fails on it (tests/conftest.py).
SLOW_CALL_WARNING = "screens time out on such waits"
NAME_OWNER_CHANGED = (
    f"type='signal',sender='{names.DBUS_NAME}',interface='{names.DBUS_INTERFACE}',"
    f"member='{names.NAME_OWNER_CHANGED}'"
)


class BusUnavailable(Exception):
    """No bus connection or no name: the message says why and what to do."""


class DBusService:
    def __init__(self, target: str, till: Till, events: EventBus, roles: RoleMap) -> None:
        self.target = target  # "system", "session" or a bus address
        self.till = till
        self.events = events
        self.roles = roles
        self.bus: MessageBus | None = None
        self._credentials: dict[str, Caller] = {}
        # Each connection's last refusal, for LastRefusal: keyed by the unique
        # name, so two screens never read each other's; gone when it leaves.
        self._refusals: dict[str, dict[str, Any]] = {}
        self._properties: dict[str, Any] = {}
        self._subscription: Subscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._last_failure = ""

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Try the bus once (bounded); on failure keep trying in the background."""
        self._subscription = self.events.subscribe()
        self._pump = asyncio.create_task(self._pump_events())
        connected = await self._try_connect()
        self._supervisor = asyncio.create_task(self._supervise(connected))

    async def stop(self, drain_timeout: float = 5.0) -> None:
        for task in (self._supervisor, self._pump):
            if task is not None:
                task.cancel()
        if self._subscription is not None:
            self.events.unsubscribe(self._subscription)
        if self._tasks:
            _, running = await asyncio.wait(set(self._tasks), timeout=drain_timeout)
            for task in running:
                task.cancel()
        if self.bus is not None:
            self.bus.disconnect()
            # dbus-fast cancels the disconnect future on a deliberate disconnect;
            # asyncio.wait only waits and never re-raises that cancellation here.
            gone = asyncio.ensure_future(self.bus.wait_for_disconnect())
            await asyncio.wait({gone}, timeout=drain_timeout)
            if gone.done() and not gone.cancelled():
                gone.exception()
            self.bus = None

    async def _supervise(self, connected: bool) -> None:
        backoff = Backoff(RETRY_FIRST_S, RETRY_CAP_S)  # jittered: tills do not return in step
        while True:
            if connected and self.bus is not None:
                backoff.reset()
                with contextlib.suppress(Exception):
                    await self.bus.wait_for_disconnect()
                self.bus = None
                self._credentials.clear()
                log.warning(
                    "lost the D-Bus connection; reconnecting (the socket API is unaffected)"
                )
            await asyncio.sleep(backoff.next_delay())
            connected = await self._try_connect()

    async def _try_connect(self) -> bool:
        try:
            self.bus = await self._connect()
        except BusUnavailable as exc:
            message = str(exc)
            # Say it once as a warning; repeating it every 30 s would bury the log.
            # The bus's text names our unique connection (":1.42"), new on each try.
            same = re.sub(r":\d+\.\d+", ":*", message)
            if same != self._last_failure:
                log.warning("%s; the socket API keeps serving and tilld will retry", message)
                self._last_failure = same
            else:
                log.debug("still no D-Bus: %s", message)
            return False
        self._last_failure = ""
        log.info("serving %s on %s", names.BUS_NAME, self._describe_target())
        return True

    def _describe_target(self) -> str:
        if self.target in ("system", "session"):
            return f"the {self.target} bus"
        return f"the bus at {self.target}"

    async def _connect(self) -> MessageBus:
        where = self._describe_target()
        bus: MessageBus | None = None
        try:
            # The constructor already opens the socket, so it belongs inside the try.
            if self.target == "system":
                bus = MessageBus(bus_type=BusType.SYSTEM)
            elif self.target == "session":
                bus = MessageBus(bus_type=BusType.SESSION)
            else:
                bus = MessageBus(bus_address=self.target)
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await bus.connect()
        except Exception as exc:
            # Anything from a missing socket to a failed handshake or a bad address
            # means the same here: no D-Bus for now, and the socket keeps selling.
            if bus is not None:
                with contextlib.suppress(Exception):
                    bus.disconnect()
            raise BusUnavailable(
                f"cannot connect to {where} ({exc or type(exc).__name__}); is dbus-daemon "
                'running? (api.dbus chooses the bus; "none" turns D-Bus off)'
            ) from None
        bus.add_message_handler(self._on_message)
        try:
            await self._call_bus(bus, names.ADD_MATCH, "s", [NAME_OWNER_CHANGED])
            reply = await bus.request_name(names.BUS_NAME, NameFlag.DO_NOT_QUEUE)
        except DBusError as exc:
            bus.disconnect()
            raise BusUnavailable(
                f"{where} refused {names.BUS_NAME} ({exc.type}: {exc.text}); install "
                "systemd/org.tilld.Till1.conf as /usr/share/dbus-1/system.d/org.tilld.Till1.conf "
                "and run tilld as user tilld"
            ) from None
        if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
            bus.disconnect()
            raise BusUnavailable(
                f"{names.BUS_NAME} is already owned on {where}: another tilld is running; "
                "stop it first"
            )
        self._properties = self._read_properties()
        return bus

    @staticmethod
    async def _call_bus(bus: MessageBus, member: str, signature: str, body: list[Any]) -> Any:
        reply = await bus.call(
            Message(
                destination=names.DBUS_NAME,
                path=names.DBUS_PATH,
                interface=names.DBUS_INTERFACE,
                member=member,
                signature=signature,
                body=body,
            )
        )
        assert reply is not None
        if reply.message_type is MessageType.ERROR:
            raise DBusError(reply.error_name or names.FAILED, str(reply.body[:1]))
        return reply.body

    # -- incoming messages ---------------------------------------------------

    def _on_message(self, msg: Message) -> Message | bool:
        """Called by dbus-fast for every message; True or a Message means "handled"."""
        if msg.message_type is MessageType.SIGNAL:
            if msg.member == names.NAME_OWNER_CHANGED and msg.sender == names.DBUS_NAME:
                name, _old, new = msg.body
                if not new:
                    self._credentials.pop(name, None)  # a client left; unique names never return
                    self._refusals.pop(name, None)
            return False
        if msg.message_type is not MessageType.METHOD_CALL:
            return False
        if msg.path != names.OBJECT_PATH:
            if msg.interface == names.INTROSPECTABLE_INTERFACE and msg.member == names.INTROSPECT:
                xml = introspect(msg.path or "/")
                return Message.new_method_return(msg, "s", [xml]) if xml else False
            return False
        if msg.interface == names.INTROSPECTABLE_INTERFACE:
            if msg.member == names.INTROSPECT:
                return Message.new_method_return(msg, "s", [introspect(names.OBJECT_PATH)])
            return False
        if msg.interface == names.PEER_INTERFACE:
            return False  # dbus-fast answers Ping and GetMachineId
        if msg.interface not in (names.INTERFACE, names.PROPERTIES_INTERFACE, None):
            return Message.new_error(
                msg, names.UNKNOWN_INTERFACE, f"{names.OBJECT_PATH} has no {msg.interface}"
            )
        task = asyncio.create_task(self._answer(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _answer(self, msg: Message) -> None:
        began = asyncio.get_running_loop().time()
        try:
            reply = await self._reply_to(msg)
        except Exception:
            # Never a traceback across the API: log it here, answer a stable name.
            log.exception("D-Bus call %s.%s failed", msg.interface, msg.member)
            reply = Message.new_error(
                msg, names.FAILED, f"internal error in {msg.member}; the tilld log has details"
            )
        took = asyncio.get_running_loop().time() - began
        if took > SLOW_CALL_S:
            # No method should wait on a person or a peer (docs/api.md): a bug to look at.
            log.warning("D-Bus call %s took %.1f s; %s", msg.member, took, SLOW_CALL_WARNING)
        if not msg.flags & MessageFlag.NO_REPLY_EXPECTED:
            self._send(reply)

    async def _reply_to(self, msg: Message) -> Message:
        try:
            caller = await self._caller(msg.sender)
        except DBusError as exc:
            return Message.new_error(
                msg, names.ACCESS_DENIED, f"cannot learn who is calling ({exc.text}); refused"
            )
        role = self.roles.role_of(caller)
        if msg.interface == names.PROPERTIES_INTERFACE:
            return self._properties_call(msg, caller, role)
        if msg.member == names.LAST_REFUSAL and msg.signature == "":
            refusal = self._refusals.get(msg.sender or "", {})
            return Message.new_method_return(msg, "a{sv}", [to_vardict(refusal)])
        method = METHODS.get(msg.member or "")
        if method is None:
            return Message.new_error(
                msg,
                names.UNKNOWN_METHOD,
                f"{names.INTERFACE} has no method {msg.member!r}; see docs/api.md",
            )
        try:
            check_role(method.operation, caller, role, self.roles)
            params = params_of(method, msg)
            result = await invoke(self.till, method.operation, params, caller, role, self.roles)
        except Forbidden as exc:
            return self._refuse(msg, names.ACCESS_DENIED, exc.message)
        except InvalidParams as exc:
            return self._refuse(msg, names.INVALID_ARGS, exc.message, errors=exc.problems)
        except Refused as refusal:
            # The body is the message alone: GLib and sd-bus clients show an error's
            # text only when its signature is "s". The reason is in the error name;
            # the details the socket gives in `data` are kept for LastRefusal.
            return self._refuse(
                msg,
                refusal.dbus_error,
                refusal.message,
                reason=str(refusal.reason),
                **refusal.details,
            )
        except InternalFailure as exc:
            return self._refuse(msg, names.FAILED, exc.message)
        return Message.new_method_return(msg, "a{sv}", [to_vardict(result)])

    def _refuse(self, msg: Message, error: str, message: str, **details: Any) -> Message:
        words = dbus_words(message)
        if msg.sender:
            if len(self._refusals) >= CREDENTIALS_CACHE:
                self._refusals.clear()  # only a missed NameOwnerChanged can fill it
            self._refusals[msg.sender] = {
                **details,
                "method": msg.member or "",
                "error": error,
                "message": words,
                "serial": msg.serial,
            }
        return Message.new_error(msg, error, words)

    async def _caller(self, sender: str | None) -> Caller:
        """The calling connection's uid and groups, from the bus (never from the caller)."""
        if sender is None:
            raise DBusError(names.FAILED, "a message without a sender")
        cached = self._credentials.get(sender)
        if cached is not None:
            return cached
        assert self.bus is not None
        (raw,) = await self._call_bus(self.bus, names.GET_CONNECTION_CREDENTIALS, "s", [sender])
        creds = unwrap(raw)
        pid = int(creds.get("ProcessID", 0))
        # dbus-daemon >= 1.11 sends UnixGroupIDs; before that /proc is the best source.
        gids = creds.get("UnixGroupIDs")
        if gids is None:
            gids = proc_groups(pid) if pid else []
        caller = Caller(pid=pid, uid=int(creds["UnixUserID"]), gids=frozenset(gids))
        if len(self._credentials) >= CREDENTIALS_CACHE:
            self._credentials.clear()  # only a missed NameOwnerChanged can fill it
        self._credentials[sender] = caller
        return caller

    # -- properties ----------------------------------------------------------

    def _properties_call(self, msg: Message, caller: Caller, role: Role) -> Message:
        # Properties tell what status.get tells, so they need its role.
        try:
            check_role(BY_NAME["status.get"], caller, role, self.roles)
        except Forbidden as exc:
            return Message.new_error(msg, names.ACCESS_DENIED, exc.message)
        member, body = msg.member, msg.body
        if member == names.PROPERTIES_GET_ALL and msg.signature == "s":
            if body[0] not in (names.INTERFACE, ""):
                return Message.new_method_return(msg, "a{sv}", [{}])
            props = self._read_properties()
            return Message.new_method_return(
                msg, "a{sv}", [{name: self._variant(name, v) for name, v in props.items()}]
            )
        if member == names.PROPERTIES_GET and msg.signature == "ss":
            prop = PROPERTY_BY_NAME.get(body[1])
            if body[0] not in (names.INTERFACE, "") or prop is None:
                return Message.new_error(
                    msg, names.UNKNOWN_PROPERTY, f"{body[0]} has no property {body[1]!r}"
                )
            value = self._read_properties()[prop.name]
            return Message.new_method_return(msg, "v", [self._variant(prop.name, value)])
        if member == names.PROPERTIES_SET and msg.signature == "ssv":
            return Message.new_error(
                msg, names.PROPERTY_READ_ONLY, f"{body[1]} is read-only; the till sets it"
            )
        return Message.new_error(
            msg, names.UNKNOWN_METHOD, f"{names.PROPERTIES_INTERFACE} has no {member}"
        )

    def _read_properties(self) -> dict[str, Any]:
        summary = self.till.summary()
        return {p.name: p.read(summary) for p in PROPERTIES}

    @staticmethod
    def _variant(name: str, value: Any) -> Variant:
        if PROPERTY_BY_NAME[name].signature == "x":
            return Variant("x", int(value))
        return to_variant(value)

    # -- events -> signals ---------------------------------------------------

    async def _pump_events(self) -> None:
        turns_without_properties = 0
        while True:
            assert self._subscription is not None
            if self._subscription.overflowed:
                # The bus never blocks us, so this means a burst; start over with fresh facts.
                log.warning("D-Bus event queue overflowed; re-reading the till's state")
                self.events.unsubscribe(self._subscription)
                self._subscription = self.events.subscribe()
            events = [await self._subscription.queue.get()]
            # What was published by the time this task runs goes out together,
            # up to EVENTS_PER_TURN: each event's signals in order, then the
            # properties once. A drain's `sync` events and a scan's come in
            # the same turn of the loop, and the till's summary is read once
            # for them all (its last value, so no change is lost); in a
            # longer burst, once after its last events.
            queue = self._subscription.queue
            while not queue.empty() and len(events) < EVENTS_PER_TURN:
                events.append(queue.get_nowait())
            if self.bus is None:
                continue
            for event in events:
                try:
                    for member, signature, body in signals_for(event):
                        self._emit(member, signature, body)
                except Exception:
                    log.exception(
                        "could not turn a %s event into D-Bus signals", event.get("topic")
                    )
            # A turn of the loop between the signals and the properties: the
            # socket's pumps, woken by the same events, write theirs before
            # this reads the till's summary (Till.summary).
            # A gate's `scanned` then waits for the signals alone.
            await asyncio.sleep(0)
            turns_without_properties += 1
            if queue.empty() or turns_without_properties >= PROPERTIES_AFTER_TURNS:
                turns_without_properties = 0
                try:
                    self._emit_changed_properties()
                except Exception:
                    log.exception("could not tell the D-Bus properties that changed")

    def _emit_changed_properties(self) -> None:
        current = self._read_properties()
        changed = {k: v for k, v in current.items() if self._properties.get(k) != v}
        self._properties = current
        if changed:
            body = [names.INTERFACE, {k: self._variant(k, v) for k, v in changed.items()}, []]
            self._send(
                Message.new_signal(
                    names.OBJECT_PATH,
                    names.PROPERTIES_INTERFACE,
                    names.PROPERTIES_CHANGED,
                    "sa{sv}as",
                    body,
                )
            )

    def _emit(self, member: str, signature: str, body: list[Any]) -> None:
        self._send(Message.new_signal(names.OBJECT_PATH, names.INTERFACE, member, signature, body))

    def _send(self, message: Message) -> None:
        if self.bus is None:
            return
        # A send that fails because the bus went away is noticed by the supervisor,
        # which reconnects; the caller of that moment gets no reply, as with any bus loss.
        try:
            sent = self.bus.send(message)
        except Exception as exc:
            log.debug("D-Bus send failed: %s", exc)
            return
        sent.add_done_callback(lambda f: f.cancelled() or f.exception())
