"""A user as a worker keeps them: the decayed preference vector (:mod:`.preference`) and the
state around it, history and consumed items, with its compact encoding (:mod:`.state`)."""

__all__ = ["preference", "state"]
