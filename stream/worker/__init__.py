"""The worker: a Faust app (:mod:`.app`) whose agent hands each batch to the ingest step
(:mod:`.ingest`: validate, dedupe, update users, score, publish), with the catalogue follower
(:mod:`.catalogue`) and the follower of model versions (:mod:`stream.model_updates`) beside it.
Run it with ``python -m stream.worker`` or ``streamrec worker``."""

__all__ = ["app", "catalogue", "ingest"]
