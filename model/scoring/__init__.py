"""How a list is scored: time decay (:mod:`.decay`), co-occurrence CF (:mod:`.cooccurrence`),
trending (:mod:`.trending`), the hybrid of them with the content term (:mod:`.hybrid`), top-k
(:mod:`.topk`), MMR diversity (:mod:`.diversity`), and the learner's global models
(:mod:`.global_learner`) with the snapshot it ships to workers (:mod:`.snapshot`)."""

__all__ = ["cooccurrence", "decay", "diversity", "global_learner", "hybrid", "snapshot", "topk", "trending"]
