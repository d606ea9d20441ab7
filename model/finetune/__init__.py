"""Micro-fine-tuning of a LoRA adapter on the item encoder, trained so a user's history points at
the item the user picked next where the rest of the hybrid does not already.

- :mod:`.examples`: (history -> next item) examples with their CF + trending prior, in a
  bounded, recency-weighted buffer;
- :mod:`.adapter`: the adapted encoder (peft LoRA on an identity projection after the frozen
  transformer by default);
- :mod:`.objective`: the worker's user vector rebuilt differentiably, the hybrid's ranking loss;
- :mod:`.training`: time-boxed AdamW steps;
- :mod:`.guard`: holdout HR / NDCG of a space, ranked as the worker serves;
- :mod:`.cycle`: the one guarded cycle (split -> clone -> train -> judge -> promote) and its
  schedule, run by the live learner and the offline replay alike.
"""

__all__ = ["adapter", "cycle", "examples", "guard", "objective", "training"]
