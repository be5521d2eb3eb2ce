"""Operations started without waiting: the caller gets an id at once, the outcome comes later.

A card payment waits on a customer at the terminal, a sync on the back-end,
a test page on the printer: minutes, perhaps. A caller that says
``wait: false`` (D-Bus always does) gets an answer within ANSWER_WITHIN_S:
the operation's own result if it ended by then (a refusal too, as the
call's error), otherwise ``{"job_id", "status": "running", ...}`` with the
ids the operation made known meanwhile (a card payment's ``payment_id``, so
``sale.cancel_payment`` works at once). The end is then a ``job`` event:
``finished`` with the same ``result`` a waiting call answers, ``refused``
with the reason, message and ``data`` a waiting call's refusal carries, or
``failed`` (a bug; the log has it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import Refused
from .events import EventBus, Subscription

log = logging.getLogger("tilld.jobs")

# Long enough for an operation refused at once (a busy terminal, an amount
# over what is due) to answer as an error, short enough for a screen's call.
ANSWER_WITHIN_S = 0.3

# Picks the ids a caller needs out of an event the operation published (None: not ours).
IdsFrom = Callable[[dict[str, Any]], dict[str, Any] | None]


class Jobs:
    def __init__(self, events: EventBus) -> None:
        self.events = events
        self._running: set[asyncio.Task[dict[str, Any]]] = set()

    async def start(
        self,
        operation: str,
        work: Awaitable[dict[str, Any]],
        ids_from: IdsFrom | None = None,
    ) -> dict[str, Any]:
        job_id = str(uuid.uuid4())
        watch = self.events.subscribe() if ids_from is not None else None
        task = asyncio.ensure_future(work)
        ids: dict[str, Any] = {}
        try:
            ids = await self._first_answer(task, watch, ids_from)
        except BaseException:
            # The caller went (the API is stopping): the work goes on as a job,
            # so its outcome is still told and a stop still cancels it.
            self._follow(task, job_id, operation, ids)
            raise
        finally:
            if watch is not None:
                self.events.unsubscribe(watch)
        if task.done():
            return task.result()  # the operation's own answer (or its refusal)
        self._follow(task, job_id, operation, ids)
        return {"job_id": job_id, "operation": operation, "status": "running", **ids}

    def _follow(
        self,
        task: asyncio.Future[dict[str, Any]],
        job_id: str,
        operation: str,
        ids: dict[str, Any],
    ) -> None:
        self._running.add(task)  # type: ignore[arg-type]
        task.add_done_callback(lambda done: self._report(job_id, operation, ids, done))

    async def _first_answer(
        self,
        task: asyncio.Future[dict[str, Any]],
        watch: Subscription | None,
        ids_from: IdsFrom | None,
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ANSWER_WITHIN_S
        while not task.done():
            left = deadline - loop.time()
            if left <= 0:
                return {}
            if watch is None or ids_from is None:
                await asyncio.wait({task}, timeout=left)
                continue
            getter = asyncio.ensure_future(watch.queue.get())
            await asyncio.wait({task, getter}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
                continue
            ids = ids_from(getter.result())
            if ids is not None:
                return ids
        return {}

    def _report(
        self,
        job_id: str,
        operation: str,
        ids: dict[str, Any],
        task: asyncio.Task[dict[str, Any]],
    ) -> None:
        self._running.discard(task)
        if task.cancelled():
            return  # the till is stopping; the journal says what happened
        facts = {"job_id": job_id, "operation": operation, **ids}
        exc = task.exception()
        if isinstance(exc, Refused):
            data = {"reason": str(exc.reason), "message": exc.message, **exc.details}
            self.events.publish(
                "job",
                event="refused",
                reason=str(exc.reason),
                message=exc.message,
                data=data,
                **facts,
            )
        elif exc is not None:
            log.error("%s (job %s) failed", operation, job_id, exc_info=exc)
            self.events.publish(
                "job",
                event="failed",
                message=f"internal error in {operation}; the tilld log has details",
                **facts,
            )
        else:
            self.events.publish("job", event="finished", result=task.result(), **facts)

    async def stop(self) -> None:
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
