"""Every D-Bus name tilld uses, in one place (CONTRACT.md, "D-Bus").

Like firewalld's ``config/dbus.py``: the bus name, object path, interface,
its property and signal names, the standard names tilld calls or answers,
and the two naming rules (operation -> method, refusal reason -> error) live
here so a rename is one edit and the docs can point at one file. Each
refusal reason carries the error name this rule makes (``tilld.errors.Reason``),
so this module imports nothing from tilld.
"""

from __future__ import annotations

BUS_NAME = "org.tilld.Till1"
OBJECT_PATH = "/org/tilld/Till1"
INTERFACE = "org.tilld.Till1.Till"
ERROR_PREFIX = "org.tilld.Till1.Error."
# Set on an options argument in the introspection XML: the keys it takes and their types.
OPTIONS_ANNOTATION = "org.tilld.Till1.Options"
# Set on a result whose keys are not the operation's (LastRefusal): the keys it has.
KEYS_ANNOTATION = "org.tilld.Till1.Keys"

# Properties of INTERFACE (read from status.get; PropertiesChanged on change).
MODE = "Mode"
MODE_SINCE = "ModeSince"
SERVER_REACHABLE = "ServerReachable"
INTERNET_REACHABLE = "InternetReachable"
PENDING_ENTRIES = "PendingEntries"
PENDING_TICKETS = "PendingTickets"
PENDING_SCANS = "PendingScans"
OLDEST_PENDING_SINCE = "OldestPendingSince"
LAST_SYNC_SUCCESS = "LastSyncSuccess"
OFFLINE_CARD_STORED = "OfflineCardStored"
OFFLINE_CARD_LIMIT = "OfflineCardLimit"

# Signals of INTERFACE: the contract's five, in their first shape. Every
# event kind (events.KINDS) also has a signal with all its facts, named by
# ``signal_name``; where that is one of these five and it lacks facts, the
# full one is named with DETAILS_SUFFIX.
MODE_CHANGED = "ModeChanged"
SCANNED = "Scanned"
SALE_COMPLETED = "SaleCompleted"
SYNC_PROGRESS = "SyncProgress"
DEVICE_STATUS = "DeviceStatus"
DETAILS_SUFFIX = "Details"

# A D-Bus-only method: the caller's last refusal with every detail the
# socket gives in its error's data (docs/api.md, "Refusal details").
LAST_REFUSAL = "LastRefusal"

# The message bus itself.
DBUS_NAME = "org.freedesktop.DBus"
DBUS_PATH = "/org/freedesktop/DBus"
DBUS_INTERFACE = "org.freedesktop.DBus"
PROPERTIES_INTERFACE = "org.freedesktop.DBus.Properties"
INTROSPECTABLE_INTERFACE = "org.freedesktop.DBus.Introspectable"
PEER_INTERFACE = "org.freedesktop.DBus.Peer"

# Members of the standard interfaces tilld calls, answers or emits.
ADD_MATCH = "AddMatch"
GET_CONNECTION_CREDENTIALS = "GetConnectionCredentials"
NAME_OWNER_CHANGED = "NameOwnerChanged"
INTROSPECT = "Introspect"
PING = "Ping"
GET_MACHINE_ID = "GetMachineId"
PROPERTIES_GET = "Get"
PROPERTIES_GET_ALL = "GetAll"
PROPERTIES_SET = "Set"
PROPERTIES_CHANGED = "PropertiesChanged"
EMITS_CHANGED_SIGNAL = "org.freedesktop.DBus.Property.EmitsChangedSignal"

# Standard errors tilld answers with (the D-Bus specification's names).
ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
UNKNOWN_INTERFACE = "org.freedesktop.DBus.Error.UnknownInterface"
UNKNOWN_PROPERTY = "org.freedesktop.DBus.Error.UnknownProperty"
PROPERTY_READ_ONLY = "org.freedesktop.DBus.Error.PropertyReadOnly"
FAILED = "org.freedesktop.DBus.Error.Failed"

# Operations D-Bus does not serve, and why (docs/api.md says the same).
SOCKET_ONLY = {"events.subscribe": "D-Bus clients receive signals instead"}


def _camel(words: str, separators: str) -> str:
    for sep in separators:
        words = words.replace(sep, " ")
    return "".join(word[:1].upper() + word[1:] for word in words.split())


def method_name(operation: str) -> str:
    """``sale.open`` -> ``SaleOpen``, ``admin.journal_verify`` -> ``AdminJournalVerify``."""
    return _camel(operation, "._-")


def signal_name(topic: str, kind: str) -> str:
    """``sale``/``line-added`` -> ``SaleLineAdded``."""
    return _camel(topic, "") + _camel(kind, "-_.")


def error_name(reason: str) -> str:
    """``card-brand-online-only`` -> ``org.tilld.Till1.Error.CardBrandOnlineOnly``.

    The rule ``tilld.errors.Reason`` names its error by; adapters take the
    name from the reason (``Refused.dbus_error``), not from here.
    """
    return ERROR_PREFIX + _camel(reason, "-_.")


def reason_of(error: str) -> str | None:
    """The refusal reason back from an error name (for clients and tests), or None."""
    if not error.startswith(ERROR_PREFIX):
        return None
    camel = error.removeprefix(ERROR_PREFIX)
    return "".join("-" + c.lower() if c.isupper() else c for c in camel).lstrip("-")
