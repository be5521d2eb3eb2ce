"""One lifecycle: parts start in order and stop in reverse, whatever fails on the way.

The first tests drive tilld/lifecycle.py with parts that record what happens
to them. The others run the daemon's own parts (app.py's Daemon, in this
process, on a temporary state directory) with one step made to fail: what
started before it must be stopped, last first, the socket file removed and
the journal closed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from pathlib import Path

import pytest
from inprocess import run, settings_for

from tilld.app import JOURNAL, Daemon
from tilld.lifecycle import Lifecycle, Part


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []

    def part(self, name: str, *, start_fails: bool = False, stop: str = "works") -> Part:
        async def start() -> None:
            if start_fails:
                raise OSError(f"{name} cannot start")
            self.events.append(f"start {name}")

        async def stopped() -> None:
            if stop == "hangs":
                await asyncio.Event().wait()
            if stop == "slow":
                await asyncio.sleep(0.3)  # a close with work to finish
            self.events.append(f"stop {name}")
            if stop == "raises":
                raise OSError(f"{name} cannot stop")

        return Part(name, start, stopped, 0.2)


def test_a_start_that_fails_half_way_stops_what_started_in_reverse() -> None:
    record = Recorder()
    parts = [record.part("a"), record.part("b"), record.part("c", start_fails=True)]
    parts.append(record.part("d"))
    lifecycle = Lifecycle()

    async def scenario() -> list[str]:
        with pytest.raises(OSError, match="c cannot start"):
            await lifecycle.start(parts)
        assert lifecycle.started == ["a", "b"]
        problems = await lifecycle.stop(time.monotonic() + 5)
        return [str(p) for p in problems]

    assert run(scenario()) == []
    # c raised in its own start, so it is not stopped; d never started.
    assert record.events == ["start a", "start b", "stop b", "stop a"]
    assert lifecycle.started == []


def test_a_stop_that_raises_or_hangs_does_not_skip_the_rest() -> None:
    record = Recorder()
    parts = [
        record.part("a"),
        record.part("b", stop="raises"),
        record.part("c", stop="hangs"),
        record.part("d"),
    ]
    lifecycle = Lifecycle()

    async def scenario() -> list[str]:
        await lifecycle.start(parts)
        return [str(p) for p in await lifecycle.stop(time.monotonic() + 5)]

    problems = run(scenario())
    assert problems == ["c: did not finish within 0.2 s", "b: OSError: b cannot stop"]
    assert record.events[4:] == ["stop d", "stop b", "stop a"]  # c hung and was cancelled


def test_a_second_stop_stops_nothing_twice() -> None:
    record = Recorder()
    lifecycle = Lifecycle()

    async def scenario() -> None:
        await lifecycle.start([record.part("a")])
        await lifecycle.stop(time.monotonic() + 5)
        await lifecycle.stop(time.monotonic() + 5)

    run(scenario())
    assert record.events == ["start a", "stop a"]


def test_the_journal_closes_last_with_the_time_kept_for_it() -> None:
    record = Recorder()
    journal = dataclasses.replace(record.part("journal", stop="slow"), reserved_s=1.0)
    lifecycle = Lifecycle()

    async def scenario() -> list[str]:
        await lifecycle.start([dataclasses.replace(journal, stop_limit_s=1.0)])
        await lifecycle.start([record.part("stuck", stop="hangs")])
        # The stuck part uses the deadline up; the journal still gets its second.
        return [str(p) for p in await lifecycle.stop(time.monotonic() + 0.2)]

    problems = run(scenario())
    assert [p.split(":")[0] for p in problems] == ["stuck"]
    assert record.events[-1] == "stop journal"


# -- the daemon's own parts ---------------------------------------------------------


def recording(daemon: Daemon, stopped: list[str], fail: str | None = None) -> list[Part]:
    """The daemon's parts, each noting its stop; ``fail``'s stop raises after stopping."""

    def noted(part: Part) -> Part:
        async def stop() -> None:
            await part.stop()
            stopped.append(part.name)
            if part.name == fail:
                raise RuntimeError(f"{part.name} failed to stop")

        return dataclasses.replace(part, stop=stop)

    return [noted(part) for part in daemon.parts]


def serves(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
        return True


def test_a_part_failing_after_the_socket_api_started_stops_everything_before_it(
    short_tmp: Path,
) -> None:
    settings = settings_for(short_tmp)
    daemon = Daemon(settings)
    stopped: list[str] = []
    parts = recording(daemon, stopped)
    apis = [p.name for p in parts].index("the APIs")
    seen_serving: list[bool] = []

    async def fails() -> None:
        # Any part after the APIs that raises in its start looks like this.
        seen_serving.append(serves(settings.api.socket_path))
        raise RuntimeError("the bus refused us")

    async def never() -> None:
        raise AssertionError("a part that did not start is not stopped")

    daemon.parts = [*parts[: apis + 1], Part("a failing part", fails, never, 0.25)]
    daemon.parts += parts[apis + 1 :]

    with pytest.raises(RuntimeError, match="the bus refused us"):
        run(daemon.run())
    assert seen_serving == [True]  # it did fail after the API served
    started = [p.name for p in parts[: apis + 1]]
    assert stopped == list(reversed(started))
    assert stopped[-1] == JOURNAL and daemon.journal_closed
    assert not settings.api.socket_path.exists()
    assert daemon.lifecycle.started == []


def test_a_stop_that_raises_does_not_keep_the_rest_from_stopping(short_tmp: Path) -> None:
    settings = settings_for(short_tmp)
    daemon = Daemon(settings)
    stopped: list[str] = []
    daemon.parts = recording(daemon, stopped, fail="the devices")
    names = [p.name for p in daemon.parts]

    async def scenario() -> None:
        task = asyncio.create_task(daemon.run(on_ready=daemon.stop))
        await task

    run(scenario())
    assert stopped == list(reversed(names))
    assert daemon.journal_closed
    assert not settings.api.socket_path.exists()


def test_ready_is_sent_once_the_api_serves_and_stopping_begins_the_stop(short_tmp: Path) -> None:
    settings = settings_for(short_tmp)
    daemon = Daemon(settings)
    at_ready: list[tuple[list[str], bool]] = []

    def on_ready() -> None:
        at_ready.append((list(daemon.lifecycle.started), serves(settings.api.socket_path)))
        daemon.stop()

    run(daemon.run(on_ready=on_ready))
    names = [p.name for p in daemon.parts]
    ready_at = names.index("readiness")
    # Everything but STATUS= reports has started, the APIs last, and the socket answers.
    assert at_ready == [(names[:ready_at], True)]
    assert names[ready_at - 1] == "the APIs" and names[ready_at + 1 :] == ["STATUS= reports"]


def test_a_d_bus_start_that_raises_leaves_no_socket_behind(short_tmp: Path) -> None:
    # A bus address nobody serves: the D-Bus service is built as configured.
    settings = settings_for(short_tmp, {"api": {"dbus": f"unix:path={short_tmp}/no-bus"}})
    daemon = Daemon(settings)
    assert daemon.dbus is not None
    stopped: list[str] = []
    daemon.parts = recording(daemon, stopped)
    names = [p.name for p in daemon.parts]
    seen_serving: list[bool] = []

    async def bus_start_raises() -> None:
        # The socket part of the APIs has started by now; D-Bus fails after it.
        seen_serving.append(serves(settings.api.socket_path))
        raise RuntimeError("the bus went away mid-handshake")

    daemon.dbus.start = bus_start_raises  # type: ignore[method-assign]

    with pytest.raises(RuntimeError, match="mid-handshake"):
        run(daemon.run())
    assert seen_serving == [True]
    # The APIs did not start as a whole, so the part cleaned up after itself...
    assert not settings.api.socket_path.exists()
    # ...and everything before it was stopped, last first.
    assert stopped == list(reversed(names[: names.index("the APIs")]))
    assert daemon.journal_closed
