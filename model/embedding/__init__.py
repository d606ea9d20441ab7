"""The embedding space of items: the text an item is embedded from (:mod:`.item_text`), the
encoder (:mod:`.encoder`: MiniLM or SmolLM2, mean pooling, L2) and the item index
(:mod:`.item_index`: vectors, availability and rows of every item)."""

__all__ = ["encoder", "item_index", "item_text"]
