"""How an item becomes text for the encoder."""

from __future__ import annotations

from collections.abc import Iterable


def render_item_text(
    title: str,
    category: str | None = None,
    description: str | None = None,
    tags: Iterable[str] | None = None,
) -> str:
    """Join the item's fields as ``"title. category. description. tags"``, skipping empty ones.

    >>> render_item_text("Toy Story (1995)", "Animation", None, ["Children's", "Comedy"])
    "Toy Story (1995). Animation. Children's, Comedy"
    """
    parts = [title.strip()]
    if category:
        parts.append(category.strip())
    if description:
        parts.append(description.strip())
    tag_text = ", ".join(t.strip() for t in (tags or []) if t and t.strip())
    if tag_text:
        parts.append(tag_text)
    return ". ".join(p for p in parts if p)
