"""A CleanCash control unit on a pty, with faults on command.

    tilld sim controlunit --link DIR/controlunit [--protocol 2] [--control 127.0.0.1:0]

The pty's slave side is what tilld opens, through a stable symlink (as udev
gives a real unit /dev/tilld/controlunit). It speaks CCSP v2 (RR) or v1
(ST, RH, SQ) as chosen, answers SIQ and IQ, and registers receipts with
control codes it can prove it made. It prints ``pty=``, ``link=`` and
``control=`` lines once it is ready and stops on SIGTERM or SIGINT.

Control API (HTTP, JSON bodies):
    GET  /state                          identity, faults, messages arrived and handled
    GET  /registrations                  every registration, with its fields and code
    POST /verify {"control_code": C}     did this unit make C, and for what
    POST /unplug, POST /plug             the pty goes away / a new one behind the link
    POST /silent {"on": true}            keep the pty, answer nothing
    POST /delay {"seconds": 2.5}         wait before each answer (a slow unit)
    POST /nak {"code": "006", "times": 1, "scope": "register"|"any"}
    POST /storage {"state": "ok"|"warning"|"last"|"full"}   "last": one receipt fits
    POST /lose-answer {"times": 1}       register, then drop the answer
    POST /main-status {"status": "fatal-error"|null}   force SIR's main status
    POST /protocol {"version": 1|2}
    POST /reset                          every fault off (registrations are kept)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import tty
from collections import Counter
from pathlib import Path
from typing import Any

from ..controlunit.cleancash.errors import CcspProtocolError
from ..controlunit.cleancash.framing import Frame
from ..controlunit.cleancash.link import CcspLink, LinkClosed
from . import stop_requested
from .cleancash_unit import FaultError, SimUnit
from .control import announce, start_control

log = logging.getLogger("drivers.sim.controlunit")


class PtyLine:
    """A pty behind a stable symlink; unplugging closes it and removes the link."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master: int | None = None
        self._slave: int | None = None
        self.pty_path = ""

    @property
    def plugged(self) -> bool:
        return self.master is not None

    def plug(self) -> int:
        if self.master is not None:
            return self.master
        master, slave = os.openpty()
        # Raw mode: the line discipline must not turn CR into LF or echo frames back.
        tty.setraw(slave)
        # Holding the slave open ourselves means the master never reads EIO
        # while the driver closes and reopens the port.
        self.master, self._slave = master, slave
        self.pty_path = os.ttyname(slave)
        fresh = self.link.with_name(self.link.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            fresh.unlink()
        fresh.symlink_to(self.pty_path)
        fresh.replace(self.link)
        return master

    def unplug(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        for fd in (self.master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self._slave = None
        self.pty_path = ""


class ControlUnitSimulator:
    """Owns the pty line and the task answering on it, around one SimUnit."""

    def __init__(self, unit: SimUnit, link: Path) -> None:
        self.unit = unit
        self.line = PtyLine(link)
        self.silent = False
        self.delay_s = 0.0
        self.ignored = 0
        # Frames off the line by type, counted on arrival: before a delay,
        # and also while silent (what the unit handled is SimUnit.received).
        self.arrived: Counter[str] = Counter()
        self._link: CcspLink | None = None
        self._task: asyncio.Task[None] | None = None

    def plug(self) -> None:
        if self.line.plugged:
            return
        self._link = CcspLink(self.line.plug())
        self._task = asyncio.create_task(self._answer(self._link), name="control unit sim")

    async def unplug(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._link is not None:
            self._link.close("unplugged")
            self._link = None
        self.line.unplug()

    async def _answer(self, link: CcspLink) -> None:
        # One message at a time, in order, as a unit on a serial line answers.
        while True:
            try:
                event = await link.receive(3600)
            except TimeoutError:
                continue
            except LinkClosed:
                return
            if isinstance(event, Frame):
                self.arrived[event.message.split("#", 1)[0]] += 1
            else:
                self.arrived["(damaged)"] += 1
            if self.silent:
                self.ignored += 1
                continue
            if self.delay_s > 0:
                await asyncio.sleep(self.delay_s)
            if isinstance(event, Frame):
                reply = self.unit.answer(event.message)
            elif event.bad_lrc:
                reply = self.unit.answer_damaged_frame()
            else:
                log.info("damaged bytes ignored: %s", event.reason)
                continue
            if reply is not None:
                try:
                    await link.send(reply)
                except LinkClosed:
                    return

    def describe(self) -> dict[str, Any]:
        return {
            **self.unit.describe(),
            "plugged": self.line.plugged,
            "pty": self.line.pty_path,
            "link": str(self.line.link),
            "silent": self.silent,
            "delay_s": self.delay_s,
            "ignored": self.ignored,
            "arrived": dict(self.arrived),
        }

    def routes(self) -> dict[str, Any]:
        unit = self.unit

        async def unplug(_body: dict[str, Any]) -> dict[str, Any]:
            await self.unplug()
            return self.describe()

        def plug(_body: dict[str, Any]) -> dict[str, Any]:
            self.plug()
            return self.describe()

        def silent(body: dict[str, Any]) -> dict[str, Any]:
            self.silent = bool(body.get("on", True))
            return self.describe()

        def delay(body: dict[str, Any]) -> dict[str, Any]:
            seconds = float(body["seconds"])
            if seconds < 0:
                raise FaultError("seconds must be 0 or more")
            self.delay_s = seconds
            return self.describe()

        def nak(body: dict[str, Any]) -> dict[str, Any]:
            unit.set_nak(
                str(body["code"]), int(body.get("times", 1)), body.get("scope", "register")
            )
            return self.describe()

        def storage(body: dict[str, Any]) -> dict[str, Any]:
            unit.set_storage(str(body["state"]))
            return self.describe()

        def lose_answer(body: dict[str, Any]) -> dict[str, Any]:
            unit.lose_answers = int(body.get("times", 1))
            return self.describe()

        def main_status(body: dict[str, Any]) -> dict[str, Any]:
            unit.set_main_status(body.get("status"))
            return self.describe()

        def protocol(body: dict[str, Any]) -> dict[str, Any]:
            unit.set_protocol(int(body["version"]))
            return self.describe()

        def reset(_body: dict[str, Any]) -> dict[str, Any]:
            unit.reset_faults()
            self.silent, self.delay_s = False, 0.0
            return self.describe()

        def verify(body: dict[str, Any]) -> dict[str, Any]:
            record = unit.verify(str(body["control_code"]))
            if record is None:
                return {"issued": False}
            return {"issued": True, "journal_no": record.journal_no, "receipt": record.receipt}

        return {
            "unplug": unplug,
            "plug": plug,
            "silent": silent,
            "delay": delay,
            "nak": nak,
            "storage": storage,
            "lose-answer": lose_answer,
            "main-status": main_status,
            "protocol": protocol,
            "reset": reset,
            "verify": verify,
        }


async def serve(args: argparse.Namespace) -> None:
    unit = SimUnit(unit_id=args.unit_id, firmware=args.firmware, protocol=args.protocol)
    simulator = ControlUnitSimulator(unit, args.link)
    simulator.plug()
    runner, control = await start_control(
        args.control,
        simulator.routes(),
        simulator.describe,
        {"registrations": lambda: {"registrations": unit.registrations_as_dicts()}},
    )
    announce(pty=simulator.line.pty_path, link=args.link, control=control)
    try:
        await stop_requested()
    finally:
        await simulator.unplug()
        await runner.cleanup()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the API table
    parser.add_argument("--link", type=Path, required=True, help="stable path to the pty")
    parser.add_argument("--control", default="127.0.0.1:0", help="HOST:PORT of the control API")
    parser.add_argument("--protocol", type=int, choices=(1, 2), default=2, help="CCSP version")
    parser.add_argument(
        "--unit-id", default="TILLDSIM00000001", help="the manufacturing number it reports"
    )
    parser.add_argument("--firmware", default="tilld-sim-1.0", help="the firmware it reports")
    parser.add_argument("--log-level", default="info", help="debug, info, warning, error")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(name)s: %(message)s"
    )
    try:
        SimUnit(unit_id=args.unit_id, firmware=args.firmware, protocol=args.protocol)
    except CcspProtocolError as exc:
        log.critical("--unit-id and --firmware must be printable ASCII without '#': %s", exc)
        return os.EX_CONFIG
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args))
    except OSError as exc:
        log.critical("cannot start the control unit simulator (is --link's folder there?): %s", exc)
        return os.EX_CANTCREAT
    return os.EX_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tilld sim controlunit", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
