"""Operations started without waiting (tilld/jobs.py), in process with the real event bus."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tilld.errors import Refused
from tilld.events import EventBus
from tilld.jobs import Jobs


async def _next_job_event(listener, timeout: float = 10) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        return await listener.queue.get()


def test_an_operation_that_ends_at_once_answers_its_own_result():
    async def run() -> None:
        events = EventBus()
        listener = events.subscribe(["job"])

        async def quick() -> dict[str, Any]:
            return {"status": "completed"}

        assert await Jobs(events).start("sale.pay", quick()) == {"status": "completed"}
        assert listener.queue.empty()  # no job: the caller has the answer

    asyncio.run(run())


def test_a_refusal_at_once_is_the_calls_own_refusal():
    async def run() -> None:
        async def busy() -> dict[str, Any]:
            raise Refused("terminal-busy", "The card terminal is busy.")

        with pytest.raises(Refused) as refused:
            await Jobs(EventBus()).start("sale.pay", busy())
        assert refused.value.reason == "terminal-busy"

    asyncio.run(run())


def test_a_long_operation_answers_running_with_the_ids_it_made_known_then_ends_as_an_event():
    async def run() -> None:
        events = EventBus()
        listener = events.subscribe(["job"])
        customer = asyncio.Event()

        async def at_the_terminal() -> dict[str, Any]:
            events.publish("terminal", event="started", sale_id="s1", payment_id="p1")
            await customer.wait()
            return {"status": "completed", "receipt_no": 7}

        def ids(event: dict[str, Any]) -> dict[str, Any] | None:
            if event["topic"] == "terminal" and event.get("event") == "started":
                return {"payment_id": event["payment_id"]}
            return None

        jobs = Jobs(events)
        answer = await jobs.start("sale.pay", at_the_terminal(), ids)
        assert answer["status"] == "running" and answer["payment_id"] == "p1"
        customer.set()
        finished = await _next_job_event(listener)
        assert finished["event"] == "finished" and finished["job_id"] == answer["job_id"]
        assert finished["payment_id"] == "p1" and finished["result"]["receipt_no"] == 7

    asyncio.run(run())


def test_a_later_refusal_is_a_job_event_with_the_sockets_data():
    async def run() -> None:
        events = EventBus()
        listener = events.subscribe(["job"])
        customer = asyncio.Event()

        async def declined() -> dict[str, Any]:
            await customer.wait()
            raise Refused("card-declined", "The card was declined.", due=3500)

        answer = await Jobs(events).start("sale.pay", declined())
        assert answer["status"] == "running" and "payment_id" not in answer
        customer.set()
        refused = await _next_job_event(listener)
        assert refused["event"] == "refused" and refused["reason"] == "card-declined"
        assert refused["data"] == {
            "reason": "card-declined",
            "message": "The card was declined.",
            "due": 3500,
        }

    asyncio.run(run())
