"""Pure recommender math, no Kafka and no HTTP: plain functions and small classes over numpy /
torch, each tested without a broker. Grouped by concept:

- :mod:`model.embedding`: item text, the text encoder, the item index (the embedding space);
- :mod:`model.user`: a user's preference vector and state (history, consumed items);
- :mod:`model.scoring`: decay, co-occurrence CF, trending, the hybrid scorer, top-k, MMR, the
  learner's global models and their snapshot;
- :mod:`model.finetune`: training examples, the LoRA adapter, its objective, training, the
  guard and the one guarded fine-tune cycle;
- :mod:`model.evaluation`: the replay protocol, prequential evaluation, ranking metrics,
  baselines, datasets, the synthetic shopping workload;
- :mod:`model.drift`: drift detectors (river) on the online hit rate and score statistics.
"""

__all__ = ["drift", "embedding", "evaluation", "finetune", "scoring", "user", "wheel_cache"]
