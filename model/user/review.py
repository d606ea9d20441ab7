"""What a review's words add to a user's taste: the text embedded by the item encoder, and
stars read from the text when the review has none."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ReadReview:
    vector: np.ndarray  # the text's embedding, in the items' space (unit norm)
    stars: float  # the review's own stars, or the stars its text reads as (1..5)


class ReviewReader:
    """Reads reviews with the encoder that embeds the items, so a review moves the user's vector
    by its text as well as by its item:

        u <- decay * u + w * e_item + w * e_text,   w = event_weight("review", stars)

    with the review's stars, or for a review without stars the stars its text reads as,
    stars(text) = 3 + 2 * compound(text), where compound in [-1, 1] is VADER's polarity of
    the text (a lexicon and rules made for short reviews and posts: negations, "meh", "!!").
    So "terrible, broke after a week" pushes the user away from the item and from what the
    text talks about; "love it" pulls them towards both.

    >>> reader = ReviewReader(lambda texts: np.ones((len(texts), 2), dtype=np.float32) / np.sqrt(2))
    >>> [round(r.stars, 1) for r in reader.read(["Love it, perfect!", "Terrible, broke at once.", "Fine."], [None, None, 4])]
    [4.7, 1.6, 4.0]
    """

    def __init__(self, encode: Callable[[Sequence[str]], np.ndarray]) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.encode = encode
        self._polarity = SentimentIntensityAnalyzer()

    def stars_of(self, text: str) -> float:
        """The stars (1..5) a review text reads as."""
        return 3.0 + 2.0 * float(self._polarity.polarity_scores(text)["compound"])

    def read(self, texts: Sequence[str], stars: Sequence[float | None]) -> list[ReadReview]:
        """Each review's text vector and stars (its own, else read from its text), in one
        encoder call."""
        vectors = self.encode(list(texts)) if texts else np.zeros((0, 0), dtype=np.float32)
        return [
            ReadReview(vectors[n], float(s) if s is not None else self.stars_of(text))
            for n, (text, s) in enumerate(zip(texts, stars, strict=True))
        ]
