"""Authorisation by peer credentials over the real socket, with clients running as other users.

The daemon runs as root with api.cashier_group = "nogroup" (gid 65534) and
api.tech_group = "users" (gid 100). Each client is a small stdlib-only Python
program started with another uid, primary group and supplementary groups
(subprocess's user=, group=, extra_groups=), so the kernel, not the client,
says who is calling.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import TillProcess

NOBODY = 65534
NOGROUP = 65534
DAEMON_GROUP = 1  # "daemon": no role
USERS_GROUP = 100  # "users": configured as the tech group below
FORBIDDEN = -32001

# A client that knows nothing of tilld: connect, send each call, collect each reply.
# "$SALE" in params stands for the sale_id of the last sale.open.
CLIENT = r"""
import json, os, socket, sys
path, calls = sys.argv[1], json.loads(sys.argv[2])
sock = socket.socket(socket.AF_UNIX)
sock.settimeout(20)
sock.connect(path)
stream = sock.makefile("rwb")
out = {"uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()), "replies": []}
sale_id = ""
for number, (method, params) in enumerate(calls, 1):
    params = {k: sale_id if v == "$SALE" else v for k, v in params.items()}
    request = {"jsonrpc": "2.0", "id": number, "method": method, "params": params}
    try:
        stream.write(json.dumps(request).encode() + b"\n")
        stream.flush()
    except BrokenPipeError:
        pass  # the daemon answered the connection and hung up; the answer waits below
    reply = json.loads(stream.readline())
    if method == "sale.open" and "result" in reply:
        sale_id = reply["result"]["sale_id"]
    out["replies"].append(reply)
print(json.dumps(out))
"""

SELL = [
    ("status.get", {}),
    ("catalog.search", {"query": "kaffe"}),
    ("sale.open", {}),
    ("sale.add", {"sale_id": "$SALE", "plu": "300"}),
    ("sale.pay", {"sale_id": "$SALE", "method": "cash", "amount": 5000}),
    ("sale.list", {}),
]
ADMIN = [
    ("admin.journal_verify", {}),
    ("admin.journal_export", {}),
    ("admin.report", {"kind": "x"}),
]


@pytest.fixture(scope="module")
def python_for_others() -> str:
    return python_other_users_may_run()


def python_other_users_may_run() -> str:
    """An interpreter other users may run (the venv's may live under /root, mode 0700)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run clients as other users")
    for name in ("/usr/bin/python3", "/usr/local/bin/python3", shutil.which("python3")):
        if name and Path(name).exists():
            probe = subprocess.run(
                [name, "-I", "-c", "pass"], user=NOBODY, group=NOGROUP, cwd="/", timeout=30
            )
            if probe.returncode == 0:
                return name
    pytest.skip("no python3 that uid 65534 may run")


@pytest.fixture
def till(short_tmp):
    """tilld as root, with existing groups named for the cashier and tech roles."""
    assert grp.getgrgid(NOGROUP).gr_name == "nogroup" and pwd.getpwuid(NOBODY)
    process = TillProcess(
        short_tmp,
        {"api": {"cashier_group": grp.getgrgid(NOGROUP).gr_name, "tech_group": "users"}},
    ).start()
    assert oct(short_tmp.stat().st_mode & 0o777) == "0o755"
    assert oct(process.socket_path.stat().st_mode & 0o777) == "0o666"
    yield process
    process.kill()


def run_client(
    python: str,
    till: TillProcess,
    calls: list[tuple[str, dict[str, Any]]],
    *,
    user: int | None,
    group: int | None,
    extra_groups: list[int] | None,
) -> dict[str, Any]:
    identity: dict[str, Any] = {}
    if user is not None:
        identity = {"user": user, "group": group, "extra_groups": extra_groups}
    result = subprocess.run(
        [python, "-I", "-c", CLIENT, str(till.socket_path), json.dumps(calls)],
        capture_output=True,
        text=True,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
        **identity,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    if user is not None:
        assert (out["uid"], out["gid"], out["groups"]) == (user, group, sorted(extra_groups or []))
    return out


def assert_forbidden(reply: dict[str, Any], method: str, uid: int) -> None:
    assert "result" not in reply, (method, reply)
    assert reply["error"]["code"] == FORBIDDEN, (method, reply)
    assert reply["error"]["message"] == "forbidden", (method, reply)
    assert f"uid {uid}" in reply["error"]["data"]["message"], reply


def assert_sold(out: dict[str, Any]) -> None:
    replies = dict(zip([m for m, _ in SELL], out["replies"], strict=True))
    for method, reply in replies.items():
        assert "result" in reply, (method, reply)
    assert replies["status.get"]["result"]["till_id"] == "till-test"
    paid = replies["sale.pay"]["result"]
    assert paid["status"] == "completed" and paid["change"] == 1500


def test_a_user_in_no_role_group_is_refused_everything(python_for_others, till):
    # Nothing is open to it, so the daemon answers its connection -32001 and
    # hangs up: a peer without a role never holds one of the api.max_clients.
    for method, params in SELL + ADMIN:
        out = run_client(
            python_for_others,
            till,
            [(method, params)],
            user=NOBODY,
            group=DAEMON_GROUP,
            extra_groups=[],
        )
        assert_forbidden(out["replies"][0], method, NOBODY)
    root = run_client(python_for_others, till, ADMIN[:1], user=None, group=None, extra_groups=None)
    assert root["replies"][0]["result"] == {
        "ok": True,
        "entries": 0,
        "integrity": {"state": "ok"},
    }  # nothing was sold


def test_primary_cashier_group_may_sell_but_not_administer(python_for_others, till):
    out = run_client(
        python_for_others, till, SELL + ADMIN, user=NOBODY, group=NOGROUP, extra_groups=[]
    )
    assert_sold({"replies": out["replies"][: len(SELL)]})
    for (method, _), reply in zip(ADMIN, out["replies"][len(SELL) :], strict=True):
        assert_forbidden(reply, method, NOBODY)


def test_a_forbidden_call_names_the_configured_groups(python_for_others, till):
    # api.cashier_group and api.tech_group, not the defaults tilld-cashier and tilld-tech.
    out = run_client(
        python_for_others, till, ADMIN[:1], user=NOBODY, group=NOGROUP, extra_groups=[]
    )
    message = out["replies"][0]["error"]["data"]["message"]
    assert "needs the tech role (group nogroup or users)" in message, message


def test_supplementary_cashier_group_counts(python_for_others, till):
    out = run_client(
        python_for_others,
        till,
        SELL + ADMIN,
        user=NOBODY,
        group=DAEMON_GROUP,
        extra_groups=[NOGROUP],
    )
    assert_sold({"replies": out["replies"][: len(SELL)]})
    for (method, _), reply in zip(ADMIN, out["replies"][len(SELL) :], strict=True):
        assert_forbidden(reply, method, NOBODY)


def test_tech_group_and_root_may_administer(python_for_others, till):
    tech = run_client(
        python_for_others,
        till,
        SELL + ADMIN,
        user=NOBODY,
        group=DAEMON_GROUP,
        extra_groups=[USERS_GROUP],
    )
    assert_sold({"replies": tech["replies"][: len(SELL)]})
    verify, export, report = (r["result"] for r in tech["replies"][len(SELL) :])
    assert verify == {"ok": True, "entries": 1, "integrity": {"state": "ok"}}
    assert export["count"] == 1 and report["sales"] == 1

    root = run_client(
        python_for_others, till, SELL + ADMIN, user=None, group=None, extra_groups=None
    )
    assert root["uid"] == 0
    assert_sold({"replies": root["replies"][: len(SELL)]})
    verify, export, report = (r["result"] for r in root["replies"][len(SELL) :])
    assert verify == {"ok": True, "entries": 2, "integrity": {"state": "ok"}}
    assert export["count"] == 2 and report["sales"] == 2
