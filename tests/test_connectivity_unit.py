"""Hysteresis of the connectivity monitor, as pure functions over values.

Its backoff is the shared one, tested in test_backoff.py.
"""

from __future__ import annotations

from tilld.connectivity import FAILURES_TO_FLIP, Fact


def test_a_single_lost_probe_does_not_flip_a_reachable_fact():
    fact = Fact("server")
    assert fact.record(True) is True and fact.up
    assert fact.record(False, "timed out") is False and fact.up
    assert fact.record(True) is False and fact.up


def test_consecutive_failures_flip_it_down_and_one_success_brings_it_back():
    fact = Fact("server")
    fact.record(True)
    flips = [fact.record(False, "refused") for _ in range(FAILURES_TO_FLIP)]
    assert flips[-1] is True and not fact.up and fact.last_error == "refused"
    assert fact.record(True) is True and fact.up


def test_a_fact_that_was_never_up_stays_down_without_flipping():
    fact = Fact("internet")
    assert [fact.record(False, "no route") for _ in range(5)] == [False] * 5
    assert not fact.up and fact.since


def test_no_mode_is_told_before_every_fact_answered_once():
    """A till starting online tells one mode, online: not no-internet, then server-unreachable."""
    import asyncio

    from tilld.connectivity import ConnectivityMonitor

    async def scenario() -> list[str]:
        async def accept(reader, writer):
            writer.close()

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        internet = await asyncio.start_server(accept, "127.0.0.1", 0)
        server_port = server.sockets[0].getsockname()[1]
        internet_port = internet.sockets[0].getsockname()[1]
        server_answers = asyncio.Event()

        async def probe_server() -> None:
            await server_answers.wait()  # the back-end answers after the internet probe
            _, writer = await asyncio.open_connection("127.0.0.1", server_port)
            writer.close()

        told: list[str] = []
        monitor = ConnectivityMonitor(
            server_probe=probe_server,
            internet_probes=[f"tcp://127.0.0.1:{internet_port}"],
            interval_s=0.05,
            backoff_cap_s=0.1,
            probe_timeout_s=5,
            on_change=lambda state: told.append(state.mode.value),
        )
        await monitor.start()
        try:
            async with asyncio.timeout(10):
                while not monitor.internet.answered:
                    await asyncio.sleep(0.01)
                assert told == [] and monitor.describe()["probing"] is True
                server_answers.set()
                while not told:
                    await asyncio.sleep(0.01)
            assert monitor.describe()["probing"] is False
        finally:
            await monitor.stop()
            server.close()
            internet.close()
        return told

    assert asyncio.run(scenario()) == ["online"]


def test_a_result_older_than_the_newest_counted_one_is_ignored():
    """Overlapping probes answer out of order: the newest evidence wins."""
    fact = Fact("server")
    assert fact.record(True, probe_no=1) is True and fact.up
    assert fact.record(True, probe_no=3) is False  # probe 3 answered before probe 2 timed out
    assert fact.record(False, "timed out", probe_no=2) is False
    assert fact.failures == 0 and fact.up
    fact.record(False, "timed out", probe_no=4)
    assert fact.record(False, "timed out", probe_no=5) is True and not fact.up
    assert fact.record(False, "refused") is False  # a real request (no number) always counts
    assert fact.failures == FAILURES_TO_FLIP + 1


def test_while_up_the_next_probe_starts_before_a_slow_one_has_answered():
    """A real HTTP back-end holding its health answers: probes overlap; a slow answer is fine."""
    import asyncio

    from aiohttp import web

    from tilld.backend import BackendClient
    from tilld.connectivity import ConnectivityMonitor

    async def scenario() -> tuple[int, list[str], bool]:
        hold = asyncio.Event()
        release = asyncio.Event()
        held: list[int] = []
        most_held = 0

        async def health(request: web.Request) -> web.Response:
            nonlocal most_held
            if hold.is_set():
                held.append(1)
                most_held = max(most_held, len(held))
                await release.wait()
                held.pop()
            return web.json_response({"status": "ok"})

        app = web.Application()
        app.router.add_get("/v1/health", health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        backend = BackendClient(f"http://127.0.0.1:{port}", "t1", token_file="", timeout_s=30)
        told: list[str] = []
        monitor = ConnectivityMonitor(
            server_probe=lambda: backend.health(30),
            internet_probes=[],
            interval_s=0.05,
            backoff_cap_s=0.1,
            probe_timeout_s=30,
            on_change=lambda state: told.append(state.mode.value),
        )
        await backend.start()
        await monitor.start()
        try:
            async with asyncio.timeout(20):
                while not monitor.server.up:
                    await asyncio.sleep(0.01)
                hold.set()
                while most_held < 2:  # a second probe went out while the first was unanswered
                    await asyncio.sleep(0.01)
                hold.clear()
                release.set()
                while held:
                    await asyncio.sleep(0.01)
            up = monitor.server.up
        finally:
            await monitor.stop()
            await backend.stop()
            await runner.cleanup()
        return most_held, told, up

    most_held, told, up = asyncio.run(scenario())
    assert most_held >= 2
    assert told == ["online"] and up  # slow answers within the timeout: no mode change


def test_a_fact_back_up_while_its_down_probe_hangs_goes_on_the_beat_at_once():
    """Seen in make bench's slow back-end: black-hole detection took 2.65-2.75 s.

    While down, a watch sends one probe at a time. If the fact comes back up
    another way (an older probe's late answer, or here a real request) while
    that probe hangs, the beat must start then: it used to wait out the hung
    probe's whole timeout plus an interval, and a server that went silent
    again right away was noticed that much later.
    """
    import asyncio

    from tilld.connectivity import ConnectivityMonitor

    async def scenario() -> tuple[int, bool]:
        behaviour = "answer"
        started: list[str] = []

        async def probe_server() -> None:
            started.append(behaviour)
            if behaviour == "refuse":
                raise ConnectionRefusedError("refused")
            if behaviour == "hang":
                await asyncio.sleep(3600)  # the probe's timeout ends it

        monitor = ConnectivityMonitor(
            server_probe=probe_server,
            internet_probes=[],
            interval_s=0.05,
            backoff_cap_s=0.05,
            probe_timeout_s=5,
            on_change=lambda state: None,
        )
        await monitor.start()
        try:
            async with asyncio.timeout(20):
                while not monitor.server.up:
                    await asyncio.sleep(0.01)
                behaviour = "refuse"
                while monitor.server.up:
                    await asyncio.sleep(0.01)
                behaviour = "hang"
                while "hang" not in started:  # the down watch's one probe now hangs
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.1)
                hung = len(started)
                behaviour = "answer"
                monitor.report_server(True, None)  # a real request answered
                assert monitor.server.up
                await asyncio.sleep(1.0)  # well inside the hung probe's 5 s timeout
                beat = started[hung:]
        finally:
            await monitor.stop()
        return len(beat), all(b == "answer" for b in beat)

    probes_after, all_answered = asyncio.run(scenario())
    # On the beat (0.05 s): about 20 probes in that second; none while it waited.
    assert probes_after >= 5 and all_answered
