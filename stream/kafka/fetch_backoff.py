"""Pause after an empty fetch, for brokers that ignore ``fetch.max.wait.ms``.

noida-db 0.2.3 answers a Fetch at once even when there is nothing to return, so an idle
aiokafka consumer re-fetches in a tight loop: about 3,000 requests/s and most of a core per
consumer (measured: 8,657 fetches in 3 s on an empty topic; tansu: 6). Every consumer in a
worker (Faust's, the catalogue follower's) did this while competing with the agent for the
GIL. After a fetch that brought no records, this waits ``backoff_s`` before the next one:
at most one extra backoff of latency, a few hundred idle requests/s instead of thousands.

A consumer that stops cancels its pending fetch tasks and awaits them unguarded (aiokafka
0.14's ``Fetcher.close``): the pause ends quietly on cancellation, its fetch already done, so a
stopping worker is not left with a dead consumer thread it waits for forever.
"""

from __future__ import annotations

import asyncio
import contextlib

_installed: list[float] = []


def install_fetch_backoff(backoff_s: float = 0.005) -> None:
    """Patch aiokafka's fetcher once per process (idempotent)."""
    if _installed or backoff_s <= 0:
        return
    from aiokafka.consumer import fetcher

    original = fetcher.Fetcher._proc_fetch_request

    async def proc_fetch_request_with_backoff(self, assignment, node_id, request):
        got_records = await original(self, assignment, node_id, request)
        if not got_records:
            with contextlib.suppress(asyncio.CancelledError):  # stopping: the fetch is complete
                await asyncio.sleep(backoff_s)
        return got_records

    fetcher.Fetcher._proc_fetch_request = proc_fetch_request_with_backoff
    _installed.append(backoff_s)
