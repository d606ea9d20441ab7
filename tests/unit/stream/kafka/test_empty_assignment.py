"""aiokafka's group join, as patched by stream.kafka.empty_assignment: a SyncGroup answer with
no assignment bytes makes the member join again instead of killing its coordinator task."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka.consumer.group_coordinator import CoordinatorGroupRebalance
from aiokafka.util import create_future

from stream.kafka.empty_assignment import install_rejoin_on_empty_assignment


class Coordinator:
    """The parts of aiokafka's GroupCoordinator a SyncGroup exchange uses; the broker's answer
    is ``member_assignment``."""

    def __init__(self, member_assignment: bytes) -> None:
        self.member_assignment = member_assignment
        self.generation, self.member_id = 7, "worker-2"
        self._rebalance_timeout_ms = 60_000
        self._rejoin_needed_fut = create_future()

    async def _send_req(self, request):
        return SimpleNamespace(error_code=0, member_assignment=self.member_assignment)

    def request_rejoin(self) -> None:
        if not self._rejoin_needed_fut.done():
            self._rejoin_needed_fut.set_result(None)


def sync_group(member_assignment: bytes) -> tuple[bytes | None, bool]:
    install_rejoin_on_empty_assignment()

    async def scenario():
        coordinator = Coordinator(member_assignment)
        rebalance = CoordinatorGroupRebalance(coordinator, "streamrec", 0, None, [], 6000, 100)
        answer = await rebalance._send_sync_group_request(request=None)
        return answer, coordinator._rejoin_needed_fut.done()

    return asyncio.run(scenario())


def test_no_assignment_bytes_means_join_again():
    assert sync_group(b"") == (None, True)


def test_an_assignment_is_passed_on_untouched():
    encoded = b"\x00\x00\x00\x00\x00\x01\x00\x06events\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x00"
    assert sync_group(encoded) == (encoded, False)
