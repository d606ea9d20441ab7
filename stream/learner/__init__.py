"""The learner: its own reader of every event (:mod:`.service`), keeping CF and trending fresh
and shipping them as snapshots, and running guarded fine-tune cycles in a thread
(:mod:`.adapter_training`). Run it with ``python -m stream.learner`` or ``streamrec learner``."""

__all__ = ["adapter_training", "service"]
