"""Prequential ("test, then learn") replay of a time-ordered log through several recommenders.

For the i-th event (u, i*, t) of the log, with i counted from 0:

1. test: if i % eval_every == 0 and u has interacted before, every model serves a top-K list for
   u (without the items u already interacted with, when ``exclude_seen``) and the list is scored
   against i*, the item u really picked next. All models are tested before any of them learns
   the event, so no model can have seen the answer.
2. learn: every model learns the event (scored or not).

Metrics per scored event, averaged (see ``model.evaluation.metrics``): HR@K, NDCG@K, Recall@K,
Precision@K, MRR@K, AUC (the positive against every item the harness has seen in the log so
far and the user has not interacted with, or ``auc_negatives`` of them sampled, the same
sample for all models), catalogue coverage (items shown / items seen in the log) and
intra-list diversity (with ``item_vectors``). With one relevant item per event, Recall@K =
HR@K and Precision@K = HR@K / K.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from model.evaluation.metrics import (
    auc,
    catalogue_coverage,
    hr_at_k,
    intra_list_diversity,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
)
from model.evaluation.protocol import Interaction, Recommender

METRICS = ("hr", "ndcg", "recall", "precision", "mrr", "auc", "coverage", "diversity")
_PER_EVENT = ("hr", "ndcg", "recall", "precision", "mrr", "auc", "diversity")


@dataclass(frozen=True)
class ModelTiming:
    """Seconds a model spent learning (every event), serving lists and scoring items for AUC."""

    learn_s: float
    recommend_s: float
    score_s: float
    n_learned: int
    n_recommended: int

    @property
    def total_s(self) -> float:
        return self.learn_s + self.recommend_s + self.score_s

    @property
    def events_per_s(self) -> float:
        """Replay throughput of this model: events learned per second of its total time."""
        return self.n_learned / self.total_s if self.total_s > 0 else float("inf")


@dataclass(frozen=True)
class Window:
    """One of the equal-count windows of scored events, in replay order."""

    index: int
    first_ts: int
    last_ts: int
    n_scored: int
    metrics: dict[str, dict[str, float | None]]  # model name -> metric -> value


@dataclass(frozen=True)
class ColdStart:
    """HR@K / NDCG@K on cold-item events.

    A scored event is a cold-item event when its item is *new* (its first interaction in the log
    came after the first ``new_item_after`` events of the replay, so it was not part of the
    catalogue the replay started with) and had fewer than ``max_prior`` interactions before this
    event. ``n_unseen`` of them name an item with no prior interaction at all, which no purely
    collaborative model can rank.
    """

    new_item_after: int
    max_prior: int
    n_scored: int
    n_unseen: int
    hr: dict[str, float | None]
    ndcg: dict[str, float | None]


@dataclass(frozen=True)
class RepeatSplit:
    """HR@K / NDCG@K on *repeat* events (the user had interacted with the item before: a
    re-order on a grocery log) and on first-time events, scored only when repeats are
    (``exclude_seen=False``); without repeats scored both are empty."""

    n_repeat: int
    n_first: int
    hr: dict[str, dict[str, float | None]]  # "repeat" / "first" -> model -> value
    ndcg: dict[str, dict[str, float | None]]


@dataclass(frozen=True)
class PairedDifference:
    """A model's mean per-event difference from the reference model (the first one), on the same
    scored events, with its standard error: sd(d) / sqrt(n), d = metric(model) - metric(reference)."""

    reference: str
    metric: str
    mean: float
    standard_error: float
    n: int

    @property
    def z(self) -> float:
        return self.mean / self.standard_error if self.standard_error > 0 else 0.0


def paired_differences(
    reference: Sequence[float], other: Sequence[float], reference_name: str, metric: str
) -> PairedDifference:
    """How ``other`` differs from ``reference``, event by event (both in the same event order).

    >>> d = paired_differences([0, 1, 0, 1], [1, 1, 0, 1], "popularity", "hr")
    >>> d.mean, round(d.standard_error, 3), d.n
    (0.25, 0.25, 4)
    """
    d = np.asarray(other, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
    return PairedDifference(reference_name, metric, float(d.mean()) if len(d) else 0.0, se, len(d))


@dataclass(frozen=True)
class PrequentialResult:
    """What a prequential replay measured, per model."""

    k: int
    eval_every: int
    n_events: int
    n_scored: int
    n_skipped_repeats: int
    catalogue_size: int
    wall_s: float
    metrics: dict[str, dict[str, float | None]]  # model name -> metric -> value
    windows: list[Window]
    cold_start: ColdStart
    repeats: RepeatSplit
    timings: dict[str, ModelTiming]
    model_names: list[str] = field(default_factory=list)
    #: model name -> metric ("hr", "ndcg") -> difference from the first model, for the others
    paired: dict[str, dict[str, PairedDifference]] = field(default_factory=dict)

    def as_markdown(self) -> str:
        """A markdown table: one row per model, every metric, cold-start HR and throughput."""
        k = self.k
        header = (
            f"| model | HR@{k} | NDCG@{k} | Recall@{k} | Precision@{k} | MRR@{k} | AUC | coverage | ILD "
            f"| cold HR@{k} | learn s | serve s | AUC-score s | events/s |"
        )
        lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
        for name in self.model_names:
            m, t = self.metrics[name], self.timings[name]
            cells = [_fmt(m[key]) for key in METRICS] + [_fmt(self.cold_start.hr[name])]
            cells += [f"{t.learn_s:.1f}", f"{t.recommend_s:.1f}", f"{t.score_s:.1f}", f"{t.events_per_s:,.0f}"]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def paired_markdown(self) -> str:
        """A markdown table of each model's paired HR@K / NDCG@K difference from the first model."""
        if not self.paired:
            return ""
        reference = self.model_names[0]
        lines = [
            f"| model | HR@{self.k} - {reference} (SE, z) | relative | NDCG@{self.k} - {reference} (SE, z) "
            f"| relative |",
            "|---|---|---|---|---|",
        ]
        for name, diffs in self.paired.items():
            cells = []
            for metric in ("hr", "ndcg"):
                d, base = diffs[metric], self.metrics[reference][metric]
                cells += [
                    f"{d.mean:+.5f} ({d.standard_error:.5f}, z {d.z:+.1f})",
                    f"{100 * d.mean / base:+.2f}%" if base else "-",
                ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def windows_markdown(self, metric: str = "hr") -> str:
        """A markdown table of one metric per window (rows) and model (columns)."""
        lines = [
            "| window | scored | " + " | ".join(self.model_names) + " |",
            "|---|---|" + "---|" * len(self.model_names),
        ]
        for w in self.windows:
            cells = [_fmt(w.metrics[name][metric]) for name in self.model_names]
            lines.append(f"| {w.index + 1} | {w.n_scored} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.4f}"


class _Track:
    """Per-model accumulator: one row of per-event metrics per scored event, plus timers."""

    def __init__(self, model: Recommender) -> None:
        self.model = model
        self.rows: list[tuple[float, ...]] = []  # values in _PER_EVENT order
        self.lists: list[list[str]] = []
        self.learn_s = self.recommend_s = self.score_s = 0.0
        self.n_learned = 0


def prequential(
    events: Iterable[Interaction],
    models: Sequence[Recommender],
    k: int = 10,
    eval_every: int = 1,
    windows: int = 10,
    exclude_seen: bool = True,
    progress: Callable[[int, int], None] | None = None,
    progress_every: int = 1000,
    item_vectors: Mapping[str, np.ndarray] | None = None,
    auc_negatives: int | None = None,
    new_item_after: int = 10_000,
    cold_max_prior: int = 5,
    seed: int = 0,
) -> PrequentialResult:
    """Replay ``events`` (time-ordered) through ``models``, testing each scored event before any
    model learns it. See the module docstring for the protocol and the metrics.

    ``progress(n_events, n_scored)`` is called every ``progress_every`` events and at the end.
    ``auc_negatives=None`` ranks the positive against all eligible items; an int samples that
    many (with ``seed``; 0 turns AUC off). ``windows`` equal-count windows of scored events get
    their own metrics (coverage against the items seen by the window's end). The ``exclude`` set
    handed to ``recommend`` is the harness's own: read it, never change it.
    Events whose item the user already interacted with are not scored when
    ``exclude_seen`` (the served list could not contain them); they are counted in
    ``n_skipped_repeats`` and learned as usual.

    >>> from model.evaluation.baselines import Popularity
    >>> log = [Interaction(u, i, ts) for ts, (u, i) in enumerate(
    ...     [("a", "x"), ("b", "x"), ("b", "y"), ("c", "y"), ("c", "x"), ("a", "y")])]
    >>> result = prequential(log, [Popularity()], k=1, new_item_after=0)
    >>> result.n_scored, round(result.metrics["popularity"]["hr"], 4)  # b: [] (y unseen), c: [x], a: [y]
    (3, 0.6667)
    """
    if eval_every < 1 or k < 1:
        raise ValueError("k and eval_every must be >= 1")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique, got {names}")
    tracks = [_Track(m) for m in models]
    rng = random.Random(seed)

    seen_by_user: dict[str, set[str]] = defaultdict(set)
    seen_rows_by_user: dict[str, list[int]] = defaultdict(list)
    catalogue: list[str] = []
    row_of: dict[str, int] = {}
    catalogue_snapshot: tuple[str, ...] = ()
    prior_count: dict[str, int] = defaultdict(int)
    first_event_of_item: dict[str, int] = {}
    scored_ts: list[int] = []
    catalogue_at_scored: list[int] = []  # items seen in the log when each scored event came
    cold_flags: list[bool] = []
    repeat_flags: list[bool] = []
    n_unseen_cold = 0
    n_events = n_skipped = 0
    started = time.perf_counter()

    for index, event in enumerate(events):
        user, item = event.user_id, event.item_id
        history = seen_by_user[user]
        if index % eval_every == 0 and history:
            if exclude_seen and item in history:
                n_skipped += 1
            else:
                if len(catalogue_snapshot) != len(catalogue):
                    catalogue_snapshot = tuple(catalogue)
                negatives = _auc_negatives(
                    catalogue_snapshot,
                    row_of,
                    seen_rows_by_user[user] if exclude_seen else [],
                    item,
                    auc_negatives,
                    rng,
                )
                exclude = history if exclude_seen else set()
                for track in tracks:
                    _test(track, event, k, exclude, catalogue_snapshot, row_of, negatives, item_vectors)
                scored_ts.append(event.ts)
                catalogue_at_scored.append(len(catalogue))
                is_new = first_event_of_item.get(item, index) >= new_item_after
                cold = is_new and prior_count[item] < cold_max_prior
                cold_flags.append(cold)
                repeat_flags.append(item in history)
                n_unseen_cold += cold and prior_count[item] == 0
        for track in tracks:
            t0 = time.perf_counter()
            track.model.learn_one(event)
            track.learn_s += time.perf_counter() - t0
            track.n_learned += 1
        if item not in history:
            history.add(item)
            if item not in row_of:
                row_of[item] = len(catalogue)
                catalogue.append(item)
                first_event_of_item[item] = index
            seen_rows_by_user[user].append(row_of[item])
        prior_count[item] += 1
        n_events = index + 1
        if progress is not None and n_events % progress_every == 0:
            progress(n_events, len(scored_ts))
    if progress is not None:
        progress(n_events, len(scored_ts))

    n_scored = len(scored_ts)
    metrics = {t.model.name: _summarise(t, range(n_scored), len(catalogue)) for t in tracks}
    window_list = []
    bounds = np.array_split(np.arange(n_scored), max(1, min(windows, n_scored))) if n_scored else []
    for w, rows in enumerate(bounds):
        items_so_far = catalogue_at_scored[rows[-1]]
        window_list.append(
            Window(
                index=w,
                first_ts=scored_ts[rows[0]],
                last_ts=scored_ts[rows[-1]],
                n_scored=len(rows),
                metrics={t.model.name: _summarise(t, rows, items_so_far) for t in tracks},
            )
        )
    cold_rows = [r for r, cold in enumerate(cold_flags) if cold]
    cold_start = ColdStart(
        new_item_after=new_item_after,
        max_prior=cold_max_prior,
        n_scored=len(cold_rows),
        n_unseen=n_unseen_cold,
        hr={t.model.name: _mean([t.rows[r][0] for r in cold_rows]) for t in tracks},
        ndcg={t.model.name: _mean([t.rows[r][1] for r in cold_rows]) for t in tracks},
    )
    split = {
        kind: [r for r, repeat in enumerate(repeat_flags) if repeat == (kind == "repeat")]
        for kind in ("repeat", "first")
    }
    repeats = RepeatSplit(
        n_repeat=len(split["repeat"]) if not exclude_seen else 0,
        n_first=len(split["first"]) if not exclude_seen else 0,
        hr={kind: {t.model.name: _mean([t.rows[r][0] for r in rows]) for t in tracks} for kind, rows in split.items()}
        if not exclude_seen
        else {},
        ndcg={kind: {t.model.name: _mean([t.rows[r][1] for r in rows]) for t in tracks} for kind, rows in split.items()}
        if not exclude_seen
        else {},
    )
    timings = {t.model.name: ModelTiming(t.learn_s, t.recommend_s, t.score_s, t.n_learned, len(t.rows)) for t in tracks}
    paired = (
        {
            t.model.name: {
                metric: paired_differences(
                    [row[c] for row in tracks[0].rows], [row[c] for row in t.rows], tracks[0].model.name, metric
                )
                for c, metric in enumerate(_PER_EVENT[:2])
            }
            for t in tracks[1:]
        }
        if n_scored > 1
        else {}
    )
    return PrequentialResult(
        k=k,
        eval_every=eval_every,
        n_events=n_events,
        n_scored=n_scored,
        n_skipped_repeats=n_skipped,
        catalogue_size=len(catalogue),
        wall_s=time.perf_counter() - started,
        metrics=metrics,
        windows=window_list,
        cold_start=cold_start,
        repeats=repeats,
        timings=timings,
        model_names=names,
        paired=paired,
    )


def _auc_negatives(
    catalogue: tuple[str, ...],
    row_of: dict[str, int],
    seen_rows: list[int],
    positive: str,
    n_sampled: int | None,
    rng: random.Random,
) -> np.ndarray | list[str]:
    """Negatives for AUC: a boolean mask over ``catalogue`` (all eligible items), or a sampled list."""
    eligible = np.ones(len(catalogue), dtype=bool)
    if seen_rows:
        eligible[seen_rows] = False
    if positive in row_of:
        eligible[row_of[positive]] = False
    if n_sampled is None:
        return eligible
    rows = np.flatnonzero(eligible)
    picked = rng.sample(range(len(rows)), min(n_sampled, len(rows)))
    return [catalogue[rows[p]] for p in picked]


def _test(
    track: _Track,
    event: Interaction,
    k: int,
    exclude: set[str],
    catalogue: tuple[str, ...],
    row_of: dict[str, int],
    negatives: np.ndarray | list[str],
    item_vectors: Mapping[str, np.ndarray] | None,
) -> None:
    """Serve and score one list of one model, and the AUC of the event's item."""
    model, user, relevant = track.model, event.user_id, (event.item_id,)
    t0 = time.perf_counter()
    recommended = list(model.recommend(user, k, exclude))[:k]
    t1 = time.perf_counter()
    if isinstance(negatives, np.ndarray):  # all eligible items of the catalogue
        scores = np.asarray(model.score(user, catalogue), dtype=np.float64)
        row = row_of.get(event.item_id)
        positive = scores[row] if row is not None else float(model.score(user, relevant)[0])
        event_auc = auc(positive, scores[negatives])
    else:
        scores = np.asarray(model.score(user, (event.item_id, *negatives)), dtype=np.float64)
        event_auc = auc(scores[0], scores[1:])
    track.score_s += time.perf_counter() - t1
    track.recommend_s += t1 - t0
    diversity = intra_list_diversity(recommended, item_vectors)
    track.rows.append(
        (
            hr_at_k(recommended, relevant, k),
            ndcg_at_k(recommended, relevant, k),
            recall_at_k(recommended, relevant, k),
            precision_at_k(recommended, relevant, k),
            reciprocal_rank(recommended, relevant, k),
            event_auc,
            float("nan") if diversity is None else diversity,
        )
    )
    track.lists.append(recommended)


def _summarise(track: _Track, rows: Sequence[int] | np.ndarray, catalogue_size: int) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for column, name in enumerate(_PER_EVENT):
        out[name] = _mean([track.rows[r][column] for r in rows])
    out["coverage"] = catalogue_coverage((track.lists[r] for r in rows), catalogue_size) if len(rows) else None
    return {name: out[name] for name in METRICS}


def _mean(values: list[float]) -> float | None:
    """Mean over the finite values; None when there are none."""
    finite = [v for v in values if v == v]
    return float(np.mean(finite)) if finite else None
