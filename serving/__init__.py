"""What users touch: the HTTP API (:mod:`serving.api`), the client SDK (:mod:`.sdk`), the
``streamrec`` CLI (:mod:`.cli`), the demo (:mod:`.demo`) and the evaluation command
(:mod:`.evaluate`). Imports stream/ and model/."""

__all__ = ["api", "cli", "demo", "evaluate", "local_prometheus", "sdk"]
