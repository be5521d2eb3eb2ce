"""``tilld demo``: the embedded default, a till on a state folder of its own.

It runs the daemon with the demo catalog that ships in this package, on
``DIR/tilld.sock``, and prints how to talk to it. Nothing outside DIR is
touched, so deleting DIR resets the demo.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from importlib import resources
from pathlib import Path

from ..app import Daemon
from ..config import Settings

DEMO_CATALOG = "catalog.json"


def demo_settings(state_dir: Path) -> Settings:
    catalog = resources.files(__package__) / DEMO_CATALOG
    return Settings(
        till={
            "id": "demo-till",
            "seller_name": "Demomuseet AB",
            "org_number": "556000-0000",
            "address": "Museigatan 1, 111 11 Stockholm",
        },
        paths={"state_dir": state_dir},
        api={"socket_path": state_dir / "tilld.sock", "dbus": "none"},
        catalog={"file": str(catalog)},
    )


def run_demo(state_dir: Path) -> int:
    state_dir = state_dir.resolve()
    settings = demo_settings(state_dir)
    socket_path = settings.api.socket_path
    tillctl = shutil.which("tillctl") or str(Path(sys.executable).with_name("tillctl"))

    def announce() -> None:
        ctl = f"{tillctl} --socket {socket_path}"
        print(f"socket={socket_path}", flush=True)
        print(
            "\ntilld demo is running (Ctrl-C stops it). In another terminal try:\n"
            f"  {ctl} status\n"
            f"  {ctl} call catalog.search query=ost\n"
            f"  SALE=$({ctl} call sale.open --get sale_id)\n"
            f"  {ctl} call sale.add sale_id=$SALE plu=300\n"
            f"  {ctl} call sale.pay sale_id=$SALE method=cash amount:=5000\n"
            f"  {ctl} pending\n"
            f"  {ctl} journal verify\n"
            f"  {ctl} watch        # live events\n",
            flush=True,
        )

    asyncio.run(Daemon(settings).run(on_ready=announce))
    return 0
