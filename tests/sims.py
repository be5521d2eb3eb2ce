"""The reference back-end and the fault proxy as real subprocesses, for outage tests."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from conftest import REPO

TOKEN = "test-token"


class Announcing:
    """A child process that prints key=value lines once it listens."""

    def __init__(self, argv: list[str], log_path: Path, keys: tuple[str, ...]) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, *argv], stdout=subprocess.PIPE, stderr=self._log, cwd=REPO, text=True
        )
        self.announced: dict[str, str] = {}
        deadline = time.monotonic() + 20
        while not all(k in self.announced for k in keys):
            assert time.monotonic() < deadline, f"{argv} did not start: {self.log()}"
            line = self.proc.stdout.readline()
            assert line, f"{argv} exited: {self.log()}"
            key, _, value = line.strip().partition("=")
            self.announced[key] = value

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Backend(Announcing):
    def __init__(self, base: Path, db: Path | None = None, *options: str) -> None:
        """``options`` are more command-line options, e.g. ``--answer-delay 0.2 0.9``."""
        self.token_file = base / "backend.token"
        self.token_file.write_text(TOKEN + "\n")
        super().__init__(
            [
                "-m",
                "tilld.sim.backend",
                "--listen",
                "127.0.0.1:0",
                "--db",
                str(db or base / "backend.sqlite"),
                "--token-file",
                str(self.token_file),
                "--seed",
                "demo",
                *options,
            ],
            base / "backend.log",
            ("listening",),
        )
        self.url = self.announced["listening"]
        self.address = self.url.removeprefix("http://")

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as response:
            return json.loads(response.read())

    def journal(self, till_id: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/v1/tills/{till_id}/journal?after_seq=0")["entries"]

    def ticket(self, code: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/tickets/{code}")

    def stats(self) -> dict[str, Any]:
        return self.request("GET", "/control/stats")


class Proxy(Announcing):
    def __init__(self, base: Path, name: str, target: str | None) -> None:
        argv = ["-m", "tilld.sim.faultproxy", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"]
        if target:
            argv += ["--target", target]
        super().__init__(argv, base / f"{name}.log", ("listening", "control"))
        self.address = self.announced["listening"]
        self.control = self.announced["control"]

    def set_mode(self, mode: str, **options: Any) -> None:
        req = urllib.request.Request(
            f"http://{self.control}/mode",
            data=json.dumps({"mode": mode, **options}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as response:
            assert response.status == 200


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def online_config(backend: Backend, server: Proxy, internet: Proxy | None) -> dict:
    return {
        "backend": {
            "url": f"http://{server.address}",
            "token_file": str(backend.token_file),
            "timeout_s": 2,
        },
        "connectivity": {
            "internet_probes": [f"tcp://{internet.address}"] if internet else [],
            "probe_interval_s": 0.2,
            "probe_timeout_s": 0.5,
            "backoff_cap_s": 1,
        },
        "sync": {"catalog_refresh_s": 0.5},
        "swish": {"poll_interval_s": 0.1, "timeout_s": 30},
    }


__all__ = ["Backend", "Proxy", "online_config", "urllib", "wait_for"]
_ = urllib.error


def post_json(address: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body if body is not None else {}).encode()
    req = urllib.request.Request(
        f"http://{address}{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as response:
        return json.loads(response.read())


def get_json(address: str, path: str) -> Any:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=10) as response:
        return json.loads(response.read())


class ScannerSim(Announcing):
    """`tilld sim scanner`: a serial scanner on a pty behind a stable symlink."""

    def __init__(self, base: Path, link: Path | None = None) -> None:
        self.link = link or base / "scanner"
        super().__init__(
            ["-m", "drivers.sim.scanner", "--link", str(self.link)],
            base / "scanner-sim.log",
            ("pty", "control"),
        )
        self.control = self.announced["control"]

    def scan(self, code: str) -> Any:
        return post_json(self.control, "/scan", {"code": code})

    def send_bytes(self, data: bytes) -> Any:
        return post_json(self.control, "/scan", {"hex": data.hex()})

    def unplug(self) -> Any:
        return post_json(self.control, "/unplug")

    def plug(self) -> Any:
        return post_json(self.control, "/plug")


class PrinterSim(Announcing):
    """`tilld sim printer`: a TCP ESC/POS printer that keeps each receipt as text."""

    def __init__(self, base: Path) -> None:
        self.out = base / "receipts"
        super().__init__(
            ["-m", "drivers.sim.printer", "--listen", "127.0.0.1:0", "--out", str(self.out)],
            base / "printer-sim.log",
            ("listening", "control"),
        )
        self.address = self.announced["listening"]
        self.control = self.announced["control"]

    def state(self) -> Any:
        return get_json(self.control, "/state")

    def set_state(self, state: str) -> Any:
        return post_json(self.control, "/state", {"state": state})

    def paper_out_after(self, n: int) -> Any:
        return post_json(self.control, "/paper-out-after", {"bytes": n})

    def pull(self) -> Any:
        return post_json(self.control, "/pull")

    def plug(self) -> Any:
        return post_json(self.control, "/plug")

    def receipts(self) -> list[dict[str, Any]]:
        return self.state()["receipts"]


class TerminalSim(Announcing):
    """`tilld sim terminal`: a ZVT card terminal over TCP (and a pty with `pty=True`), or
    with `protocol="nexo"` a nexo Retailer terminal over HTTP; the same control channel."""

    POI_ID = "SIM00001"

    def __init__(self, base: Path, pty: bool = False, protocol: str = "zvt") -> None:
        argv = ["-m", "drivers.sim.terminal", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"]
        argv += ["--protocol", protocol]
        keys = ("listening", "control", *(("pty",) if pty else ()))
        log = base / f"terminal-sim-{protocol}.log"
        super().__init__(argv + (["--pty"] if pty else []), log, keys)
        self.protocol = protocol
        self.address = self.announced["listening"]
        self.pty = self.announced.get("pty", "")
        self.control = self.announced["control"]

    def till_config(self) -> dict[str, Any]:
        """The till's [devices.terminal] section for this simulator."""
        if self.protocol == "nexo":
            return {
                "kind": "nexo",
                "address": self.address,
                "sale_id": "tilld-test",
                "poi_id": self.POI_ID,
            }
        if self.pty:
            return {"kind": "zvt-serial", "port": self.pty}
        return {"kind": "zvt-tcp", "address": self.address}

    def _control(self, request: dict[str, Any]) -> dict[str, Any]:
        import socket

        host, _, port = self.control.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(json.dumps(request).encode() + b"\n")
            answer = json.loads(sock.makefile("rb").readline())
        assert answer["ok"], answer
        return answer

    def set(self, **script: Any) -> dict[str, Any]:
        return self._control({"op": "set", **script})

    def state(self) -> dict[str, Any]:
        return self._control({"op": "state"})
