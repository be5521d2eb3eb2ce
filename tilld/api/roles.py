"""Who may call what: roles derived from the caller's uid and groups.

The socket reads them from the kernel (SO_PEERCRED and SO_PEERGROUPS), so a
client cannot claim a role it does not have.
"""

from __future__ import annotations

import grp
import logging
import socket
import struct
from dataclasses import dataclass
from enum import IntEnum

log = logging.getLogger("tilld.api")

# Linux socket option numbers (asm-generic/socket.h); Python names only SO_PEERCRED.
SO_PEERGROUPS = 59
MAX_GROUPS = 1024


class Role(IntEnum):
    NONE = 0
    CASHIER = 1
    TECH = 2  # root and tilld-tech: everything, including admin.*


@dataclass(frozen=True)
class Caller:
    pid: int
    uid: int
    gids: frozenset[int]

    def describe(self) -> str:
        return f"uid {self.uid} (pid {self.pid})"


def peer_caller(sock: socket.socket) -> Caller:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Caller(pid=pid, uid=uid, gids=frozenset({gid, *_peer_groups(sock, pid)}))


def _peer_groups(sock: socket.socket, pid: int) -> list[int]:
    """Supplementary groups as the kernel recorded them at connect time."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * MAX_GROUPS)
        return list(struct.unpack(f"{len(raw) // 4}I", raw))
    except OSError:
        pass
    # Kernels before 4.13 lack SO_PEERGROUPS; /proc is the next best source.
    return proc_groups(pid)


def proc_groups(pid: int) -> list[int]:
    """A process's supplementary groups from /proc, or [] if it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Groups:"):
                    return [int(g) for g in line.split()[1:]]
    except OSError:
        pass
    return []


class RoleMap:
    def __init__(self, cashier_group: str, tech_group: str) -> None:
        self.cashier_group = cashier_group
        self.tech_group = tech_group
        self.cashier_gid = _gid(cashier_group)
        self.tech_gid = _gid(tech_group)

    def role_of(self, caller: Caller) -> Role:
        if caller.uid == 0 or (self.tech_gid is not None and self.tech_gid in caller.gids):
            return Role.TECH
        if self.cashier_gid is not None and self.cashier_gid in caller.gids:
            return Role.CASHIER
        return Role.NONE


def _gid(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        log.info("group %s does not exist on this system; nobody has its role", name)
        return None
