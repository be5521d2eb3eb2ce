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
