"""Offline evaluation on replayed logs: the protocol every model follows (:mod:`.protocol`),
the prequential test-then-learn replay (:mod:`.prequential`), ranking metrics (:mod:`.metrics`),
the system's own models in process (:mod:`.online_hybrid`, :mod:`.finetuned_hybrid`), peers
(:mod:`.baselines`), real logs (:mod:`.datasets`) and a synthetic shopping workload
(:mod:`.synthetic`)."""

__all__ = [
    "baselines",
    "datasets",
    "finetuned_hybrid",
    "metrics",
    "online_hybrid",
    "prequential",
    "protocol",
    "synthetic",
]
