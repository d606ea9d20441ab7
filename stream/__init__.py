"""The streaming shell around model/: settings (:mod:`.config`), wire schemas (:mod:`.schemas`),
metrics, the model store, the embedded broker, child processes, and three packages:

- :mod:`stream.worker`: the Faust worker (``python -m stream.worker``): ingest, catalogue,
  model updates;
- :mod:`stream.learner`: the learner (``python -m stream.learner``): global models, snapshots,
  fine-tune cycles;
- :mod:`stream.kafka`: Kafka plumbing: following topics, topic creation, contiguous offsets and
  the other faust patches.

Imports model/, never serving/.
"""

__all__ = [
    "broker",
    "config",
    "kafka",
    "learner",
    "metrics",
    "model_store",
    "model_updates",
    "process",
    "schemas",
    "worker",
]
