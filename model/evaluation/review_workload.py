"""A synthetic shop whose reviews carry the taste: item texts a language model can read, and
reviews without stars whose words say whether the user liked what they bought.

Catalogue: 12 categories x 5 products x 8 styles ("Premium frying pan", category "kitchen"),
480 items with real text. Users: each likes ``liked`` categories (hidden). Each event is, with
probability ``focus``, on an item of a liked category (view 0.55, click 0.3, purchase 0.15),
otherwise a view of any item (browsing). With probability ``mistakes`` a purchase is of an item
outside the user's taste (a gift, an impulse). Every purchase is followed by a review without
stars: on a liked category it reads like "Love this premium frying pan! Great kitchen stuff, I
want more like it.", on a mistake like "Disappointing sandals, cheap and broke within a week.
Not for me." A text-blind recommender can only count the review as one more positive event; one
that reads the text learns from it which purchases the user liked.
"""

from __future__ import annotations

import numpy as np

from model.embedding.item_index import ItemInfo
from model.evaluation.protocol import Interaction

PRODUCTS = {
    "shoes": ("sneakers", "boots", "sandals", "loafers", "running shoes"),
    "books": ("novel", "cookbook", "biography", "thriller", "poetry collection"),
    "kitchen": ("frying pan", "chef's knife", "blender", "kettle", "cutting board"),
    "garden": ("garden hose", "rake", "flower seeds", "planter", "pruning shears"),
    "toys": ("jigsaw puzzle", "doll", "toy car", "building blocks", "board game"),
    "electronics": ("headphones", "phone charger", "bluetooth speaker", "smartwatch", "tablet"),
    "sports": ("yoga mat", "dumbbells", "tennis racket", "football", "bike helmet"),
    "beauty": ("lipstick", "face cream", "shampoo", "perfume", "nail polish"),
    "music": ("guitar strings", "vinyl record", "digital piano", "drum sticks", "ukulele"),
    "office": ("stapler", "notebook", "desk lamp", "ballpoint pens", "office chair"),
    "pets": ("dog bed", "cat toy", "dog leash", "pet food", "fish tank"),
    "travel": ("suitcase", "travel pillow", "hiking backpack", "passport holder", "packing cubes"),
}
STYLES = ("classic", "premium", "compact", "deluxe", "everyday", "eco-friendly", "professional", "vintage")
PRAISE = (
    "Love this {title}! Great {category} stuff, I want more like it.",
    "Excellent {title}, exactly what I hoped for. Always happy with {category} things.",
    "Fantastic quality, my favourite {category} purchase this year. Highly recommend!",
)
COMPLAINTS = (
    "Disappointing {product}, cheap and broke within a week. Not for me.",
    "Terrible. The {product} was useless and I regret buying it.",
    "Awful {product}, returned it. Never again.",
)


def review_catalogue() -> list[ItemInfo]:
    """The 480 items, with titles and categories (their text is title + category)."""
    return [
        ItemInfo(f"{category}-{p}-{s}", f"{style.capitalize()} {product}", category)
        for category, products in PRODUCTS.items()
        for p, product in enumerate(products)
        for s, style in enumerate(STYLES)
    ]


def review_workload(
    n_events: int = 12_000,
    *,
    n_users: int = 300,
    liked: int = 2,
    focus: float = 0.5,
    mistakes: float = 0.4,
    seed: int = 0,
    start_ts: int = 1_700_000_000_000,
    interval_ms: int = 60_000,
) -> tuple[list[ItemInfo], list[Interaction]]:
    """The catalogue and a time-ordered log of the module docstring; deterministic given ``seed``.

    >>> items, events = review_workload(n_events=300, seed=1)
    >>> len(items), len(events) >= 300, {e.type for e in events} >= {"view", "purchase", "review"}
    (480, True, True)
    >>> all(e.text and e.value is None for e in events if e.type == "review")
    True
    """
    rng = np.random.default_rng(seed)
    items = review_catalogue()
    categories = list(PRODUCTS)
    rows_of = {c: [r for r, info in enumerate(items) if info.category == c] for c in categories}
    tastes = [rng.choice(len(categories), size=liked, replace=False) for _ in range(n_users)]
    activity = 1.0 / (np.arange(n_users) + 10.0)
    events: list[Interaction] = []
    ts = start_ts
    while len(events) < n_events:
        u = int(rng.choice(n_users, p=activity / activity.sum()))
        user = f"user-{u}"
        ts += interval_ms
        if rng.random() >= focus:  # browsing anything
            events.append(Interaction(user, items[int(rng.integers(len(items)))].item_id, ts, "view"))
            continue
        kind = rng.choice(3, p=[0.55, 0.3, 0.15])
        if kind < 2:
            category = categories[int(rng.choice(tastes[u]))]
            item = items[int(rng.choice(rows_of[category]))]
            events.append(Interaction(user, item.item_id, ts, "view" if kind == 0 else "click"))
            continue
        mistake = rng.random() < mistakes
        pool = [c for n, c in enumerate(categories) if (n in tastes[u]) != mistake]
        category = pool[int(rng.integers(len(pool)))]
        item = items[int(rng.choice(rows_of[category]))]
        events.append(Interaction(user, item.item_id, ts, "purchase"))
        product = item.title.split(" ", 1)[1]
        template = (COMPLAINTS if mistake else PRAISE)[int(rng.integers(3))]
        text = template.format(title=item.title.lower(), category=category, product=product)
        events.append(Interaction(user, item.item_id, ts + 1, "review", None, text))
    return items, events
