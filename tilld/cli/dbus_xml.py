"""``make dbus-xml``: write docs/dbus/ from what the running service answers to Introspect.

It starts a private bus (tilld/demo/bus.py) and the daemon on a throw-away
state folder, asks /org/tilld/Till1 for its introspection XML and writes:
- ``org.tilld.Till1.xml``: the whole object, every interface, as served;
- ``org.tilld.Till1.Till.xml``: tilld's own interface alone, the input for
  binding generators such as gdbus-codegen or sdbus-cpp's xml2cpp.
tests/test_dbus.py fails when the files differ from the running service.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from ..api import dbus_names as names
from ..api.dbus_schema import DOCTYPE
from ..app import Daemon
from ..config import Settings
from ..demo.bus import PrivateBus


def documents(object_xml: str) -> dict[str, str]:
    """The files of docs/dbus/ from the object's introspection XML."""
    root = ET.fromstring(object_xml.split("\n", 2)[2])
    own = ET.Element("node")
    own.extend(i for i in root.findall("interface") if i.get("name") == names.INTERFACE)
    ET.indent(own, "  ")
    return {
        f"{names.BUS_NAME}.xml": object_xml,
        f"{names.INTERFACE}.xml": DOCTYPE + ET.tostring(own, encoding="unicode") + "\n",
    }


async def introspect(address: str) -> str:
    bus = await MessageBus(bus_address=address).connect()
    try:
        reply = await bus.call(
            Message(
                destination=names.BUS_NAME,
                path=names.OBJECT_PATH,
                interface=names.INTROSPECTABLE_INTERFACE,
                member=names.INTROSPECT,
            )
        )
    finally:
        bus.disconnect()
    assert reply is not None
    if reply.message_type is MessageType.ERROR:
        raise RuntimeError(f"Introspect failed: {reply.error_name}: {reply.body}")
    return reply.body[0]


async def generate(output: Path) -> list[Path]:
    with tempfile.TemporaryDirectory(prefix="tilld-xml-") as tmp:
        state = Path(tmp)
        bus = PrivateBus(state)
        address = await bus.start()
        try:
            settings = Settings(
                paths={"state_dir": state / "state"},
                api={"socket_path": state / "tilld.sock", "dbus": address},
            )
            daemon = Daemon(settings)
            ready = asyncio.Event()
            running = asyncio.create_task(daemon.run(on_ready=ready.set))
            await ready.wait()
            try:
                xml = await introspect(address)
            finally:
                daemon.stop()
                await running
        finally:
            await bus.stop()
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in documents(xml).items():
        (output / name).write_text(text, encoding="utf-8")
        written.append(output / name)
    return written


def main() -> int:
    output = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/dbus")
    for path in asyncio.run(generate(output)):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
