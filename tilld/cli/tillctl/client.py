"""tillctl's JSON-RPC client for tilld's Unix socket, with every failure as one plain line.

A failure to reach the daemon is ``Unreachable`` (exit 3), a refusal or an
error answer is ``RpcError`` (exit 1); nothing else leaves this module, so no
socket error reaches the technician as a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import struct
from typing import Any

# What a technician types instead of a JSON-RPC parameter, for refusals that name one.
CLI_WORDS = {"(copy: true)": "(tillctl receipt print {receipt_no} --copy)"}


class Unreachable(Exception):
    pass


class RpcError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", "error"))
        self.error = error

    @property
    def reason(self) -> str | None:
        data = self.error.get("data")
        return data.get("reason") if isinstance(data, dict) else None

    def one_line(self) -> str:
        data = self.error.get("data") or {}
        message = (data.get("message") if isinstance(data, dict) else None) or self.error.get(
            "message"
        )
        message = str(message)
        number = data.get("receipt_no", "N") if isinstance(data, dict) else "N"
        for api_words, cli_words in CLI_WORDS.items():
            message = message.replace(api_words, cli_words.format(receipt_no=number))
        if self.reason:
            return f"refused ({self.reason}): {message}"
        return f"error {self.error.get('code')}: {message}"


def check_socket_path(path: str) -> None:
    """Say plainly when the path is there but is not a socket (a folder, a plain file)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # connect() says what is wrong with a missing path or a folder we cannot read
    if not stat.S_ISSOCK(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "a file"
        raise Unreachable(
            f"{path} is {what}, not tilld's socket; pass --socket with the socket's path "
            "(api.socket_path in tilld.toml, /run/tilld/tilld.sock by default)"
        )


class Client:
    def __init__(self, path: str, timeout: float | None = 60) -> None:
        self.path = path
        check_socket_path(path)
        self.sock = socket.socket(socket.AF_UNIX)
        # A blocking connect() waits for room in the daemon's accept queue,
        # which a burst of clients can fill; one with a Python timeout is
        # non-blocking and would fail at once (EAGAIN). SO_SNDTIMEO bounds the wait.
        if timeout is not None:
            seconds, fraction = divmod(timeout, 1)
            timeval = struct.pack("ll", int(seconds), int(fraction * 1e6))
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        try:
            self.sock.connect(path)
        except BlockingIOError:
            self.sock.close()
            raise Unreachable(
                f"tilld at {path} accepted no connection for {timeout:g} s (its queue is "
                "full: too many clients connecting, or the daemon is stuck); try again, "
                "or see journalctl -u tilld"
            ) from None
        except OSError as exc:
            self.sock.close()
            raise Unreachable(
                f"cannot reach tilld at {path}: {exc.strerror or exc}. Is it running? "
                "(systemctl status tilld; or pass --socket / set TILLD_SOCKET)"
            ) from None
        self.sock.settimeout(timeout)
        self.file = self.sock.makefile("rwb")
        self.next_id = 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
            self.sock.close()

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        self.next_id += 1
        request = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params or {}}
        try:
            self.file.write(json.dumps(request).encode() + b"\n")
            self.file.flush()
        except OSError as exc:
            # The daemon hung up first (it refused the connection, or is
            # stopping); its last words may still wait to be read.
            self._lost(exc)
        while True:
            reply = self.read()
            if reply.get("id") == self.next_id:
                break
            if reply.get("id") is None and "error" in reply:
                # About the connection, not one request: a refusal before a hang-up.
                raise RpcError(_error_record(reply["error"]))
        if "error" in reply:
            raise RpcError(_error_record(reply["error"]))
        if "result" not in reply:
            raise Unreachable(f"tilld at {self.path} answered something not JSON-RPC")
        return reply["result"]

    def read(self) -> dict[str, Any]:
        try:
            line = self.file.readline()
        except TimeoutError:
            raise  # the caller decides what waiting too long means
        except OSError as exc:
            raise Unreachable(self._hung_up(exc)) from None
        if not line:
            raise Unreachable(f"tilld at {self.path} closed the connection")
        try:
            reply = json.loads(line)
        except ValueError:
            raise Unreachable(f"tilld at {self.path} answered something not JSON-RPC") from None
        if not isinstance(reply, dict):
            raise Unreachable(f"tilld at {self.path} answered something not JSON-RPC")
        return reply

    def _lost(self, exc: OSError) -> None:
        """After a failed write: raise what the daemon said last, or that it hung up."""
        with contextlib.suppress(OSError, ValueError):
            self.sock.settimeout(1)  # its last words are already here, or never coming
            line = self.file.readline()
            reply = json.loads(line) if line else None
            if isinstance(reply, dict) and isinstance(reply.get("error"), dict):
                raise RpcError(reply["error"])
        raise Unreachable(self._hung_up(exc))

    def _hung_up(self, exc: OSError) -> str:
        if isinstance(exc, ConnectionResetError):
            what = "reset the connection"
        elif isinstance(exc, BrokenPipeError):
            what = "closed the connection"
        else:
            what = f"connection failed ({exc.strerror or exc})"
        return (
            f"tilld at {self.path} {what}; it may be restarting or refusing this user "
            "(journalctl -u tilld says why); try again"
        )


def _error_record(error: Any) -> dict[str, Any]:
    return error if isinstance(error, dict) else {"code": None, "message": str(error)}
