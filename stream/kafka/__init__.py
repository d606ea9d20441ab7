"""Kafka plumbing shared by the processes: following whole topics from their start
(:mod:`.follow`), creating the contract's topics (:mod:`.topics`), and the patches the worker
applies to faust / aiokafka: commits of contiguous offsets only (:mod:`.offsets`), a producer
flush that waits for every record (:mod:`.durable_flush`), a pause after empty fetches
(:mod:`.fetch_backoff`), a new join after an empty group assignment (:mod:`.empty_assignment`)."""

__all__ = ["durable_flush", "empty_assignment", "fetch_backoff", "follow", "offsets", "topics"]
