"""Join the group again when a broker answers SyncGroup with an empty assignment.

A group member whose SyncGroup answer carries no assignment bytes at all (not an encoded
empty assignment: zero bytes) cannot decode it: aiokafka 0.14 raises ``struct.error``
("unpack requires a buffer of 2 bytes") in ``_on_join_complete`` and its coordinator task
dies. The consumer stays open but never reads again, so the worker lives on without
partitions and never becomes ready. noida-db 0.2.3 sent such an answer to a worker restarted
during a rebalance (chaos seed 14: the run timed out waiting for that worker; nothing was lost).

Zero bytes mean the leader did not assign this member anything in that generation, usually
because it joined after the leader had computed the assignment. The member then asks for a
new rebalance and joins again after the retry backoff, as on any failed SyncGroup, so the
next leader sees it.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

_installed: list[bool] = []


def install_rejoin_on_empty_assignment() -> None:
    """Patch aiokafka's group rebalance once per process (idempotent)."""
    if _installed:
        return
    from aiokafka.consumer.group_coordinator import CoordinatorGroupRebalance

    send_sync_group_request = CoordinatorGroupRebalance._send_sync_group_request

    async def sync_group_or_rejoin(self, request):
        assignment = await send_sync_group_request(self, request)
        if assignment is not None and len(assignment) == 0:
            log.warning(
                "group %s: SyncGroup gave member %s no assignment bytes; joining again",
                self.group_id,
                self._coordinator.member_id,
            )
            self._coordinator.request_rejoin()
            return None  # the caller backs off and joins again
        return assignment

    CoordinatorGroupRebalance._send_sync_group_request = sync_group_or_rejoin
    _installed.append(True)
