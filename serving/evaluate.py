"""``streamrec evaluate``: prequential replay of a time-ordered log through the hybrid and the
baselines, in process (no broker), with the same model code the worker serves with.

``hybrid-finetuned`` (the hybrid on a LoRA-adapted encoder, micro-fine-tuned inside the replay)
runs only when named in ``models``: its cycles train a transformer, minutes on a GPU, far longer
on a CPU (each cycle is time-boxed by ``FinetuneSchedule.budget_s``). Its cycle is the live
learner's: the same function (:func:`model.finetune.cycle.guarded_cycle`) with the same
schedule (``Settings.finetune_schedule()``)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import cast

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from model.embedding.encoder import TextEncoder
from model.embedding.item_index import ItemIndex, ItemInfo
from model.embedding.item_text import render_item_text
from model.evaluation.baselines import (
    FrequentPurchases,
    ItemKNN,
    PeriodicALS,
    PeriodicEASE,
    Popularity,
    RecentPopularity,
    RiverMF,
)
from model.evaluation.finetuned_hybrid import FinetunedHybrid
from model.evaluation.online_hybrid import OnlineHybrid
from model.evaluation.prequential import PrequentialResult, prequential
from model.evaluation.protocol import Interaction, Recommender
from model.evaluation.sasrec import PeriodicSASRec
from model.finetune.cycle import Cycle, FinetuneSchedule, cycles_markdown
from model.scoring.hybrid import HybridWeights
from model.user.review import ReviewReader
from stream.config import Settings


def load_log(dataset: str | None, events_file: Path | None, items_file: Path | None):
    """(events, items) where items are (item_id, title, category, tags, description)."""
    if events_file is not None:
        events = _read_events(events_file)
        items = _read_items(items_file) if items_file else []
        return events, items
    if dataset and dataset.partition(":")[0] == "completejourney":
        return _complete_journey(dataset.partition(":")[2])
    if dataset == "synthetic-reviews":
        from model.evaluation.review_workload import review_workload

        catalogue, events = review_workload()
        return events, [(i.item_id, i.title, i.category, [], None) for i in catalogue]
    if dataset != "movielens-100k":
        raise ValueError(
            f"unknown dataset {dataset!r}: use movielens-100k, completejourney[:N], synthetic-reviews or --events-file"
        )
    from model.evaluation.datasets import load_movies, load_ratings

    events = [Interaction(r.user_id, r.item_id, r.ts_ms, "rating", r.rating) for r in load_ratings()]
    items = [(m.item_id, m.display_title, m.category, m.tags, None) for m in load_movies()]
    return events, items


def _complete_journey(households: str) -> tuple[list[Interaction], list[tuple]]:
    """``completejourney``: a sample of DEFAULT_HOUSEHOLDS households; ``completejourney:N``:
    N of them; ``completejourney:all``: every household."""
    from model.evaluation.grocery import DEFAULT_HOUSEHOLDS, load_complete_journey

    if households not in ("", "all") and not households.isdigit():
        raise ValueError(f"completejourney:{households}: give a number of households or 'all'")
    n = None if households == "all" else int(households) if households else DEFAULT_HOUSEHOLDS
    events, products = load_complete_journey(n)
    return events, [(p.item_id, p.title, p.category or p.department, [], p.description) for p in products]


def _rows(path: Path) -> list[dict]:
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _read_events(path: Path) -> list[Interaction]:
    events = []
    for n, row in enumerate(_rows(path)):
        missing = {"user_id", "item_id", "ts"} - set(row)
        if missing:
            raise ValueError(f"{path}: row {n + 1} lacks {sorted(missing)} (needs user_id, item_id, ts)")
        value = row.get("value")
        events.append(
            Interaction(
                str(row["user_id"]),
                str(row["item_id"]),
                int(float(row["ts"])),
                str(row.get("type") or "rating"),
                float(value) if value not in (None, "") else None,
                str(row["text"]) if row.get("text") else None,
            )
        )
    events.sort(key=lambda e: e.ts)  # stable: ties keep file order
    return events


def _read_items(path: Path) -> list[tuple]:
    return [
        (
            str(r["item_id"]),
            str(r.get("title") or r["item_id"]),
            r.get("category") or None,
            [],
            r.get("description") or None,
        )
        for r in _rows(path)
    ]


@dataclass
class Catalogue:
    """The items embedded by the base encoder, with their texts (what fine-tuning re-embeds)."""

    index: ItemIndex
    texts: dict[str, str]
    encoder: TextEncoder | None  # None: an ID-only log, no text to embed


def id_only_catalogue(events: list[Interaction]) -> Catalogue:
    """The items of a log without item text: rows for the hybrid's CF, trending and buy-again
    terms, one constant vector each (the content term is off)."""
    ids = list(dict.fromkeys(e.item_id for e in events))
    index = ItemIndex(1, capacity=max(1, len(ids)))
    index.upsert([ItemInfo(i, i) for i in ids], np.ones((len(ids), 1), dtype=np.float32))
    return Catalogue(index, {}, None)


def embed_catalogue(items: list[tuple], encoder_dir: str | None, console: Console) -> Catalogue:
    encoder = TextEncoder(encoder_dir)
    texts = {
        item_id: render_item_text(title, category, description, tags)
        for item_id, title, category, tags, description in items
    }
    with _progress(console) as progress:
        task = progress.add_task(f"embedding {len(items)} items ({encoder.name})", total=len(items))
        vectors = encoder.encode([texts[item[0]] for item in items], progress=lambda n: progress.advance(task, n))
    index = ItemIndex(encoder.dim)
    index.upsert([ItemInfo(item_id, title, category) for item_id, title, category, _, _ in items], vectors)
    return Catalogue(index, texts, encoder)


#: EASE's settings, chosen on the first 30% of MovieLens-100K (docs/BENCHMARKS.md section 12).
EASE_LAMBDA = 150.0
EASE_HALF_LIFE_DAYS = 120.0
EASE_EVERY = 1_000
#: SASRec's, likewise.
SASREC_EVERY = 5_000
SASREC_EPOCHS = 60
SASREC_LEARNING_RATE = 2e-3

#: Models that run only when named: too slow for a default run on a CPU, or a control.
OPT_IN_MODELS = ("hybrid-finetuned", "hybrid-text-blind")


def model_factories(
    catalogue: Catalogue | None, settings: Settings | None = None, schedule: FinetuneSchedule | None = None
) -> dict[str, Callable[[], Recommender]]:
    """Every model of the harness by name. The hybrids take their betas and candidate sizes from
    ``settings`` (the workers' ``STREAMREC_WEIGHT_*``, ``STREAMREC_CANDIDATES_*``): they serve
    through the worker's two-stage path; ``hybrid-exact`` ranks the whole catalogue instead, to
    measure what the candidate stage costs. ``hybrid-finetuned`` runs the learner's fine-tune
    cycle (``settings.finetune_schedule()``, or ``schedule``)."""
    settings = settings or Settings()
    weights = settings.hybrid_weights()
    sizes = settings.candidate_sizes()
    policy = settings.serving_policy()
    schedule = schedule or settings.finetune_schedule()
    factories: dict[str, Callable[[], Recommender]] = {
        "popularity": Popularity,
        "frequent-purchases": FrequentPurchases,
        "trending-7d": lambda: RecentPopularity(half_life_days=7.0),
        "item-knn": lambda: ItemKNN(n_recent=20),
        "river-funkmf": lambda: RiverMF("funk", n_factors=32, learning_rate=0.05, n_negatives=3),
        "river-biasedmf": lambda: RiverMF("biased", n_factors=32, learning_rate=0.05, n_negatives=3),
        "implicit-als": lambda: PeriodicALS("als", retrain_every=10_000),
        "implicit-als-foldin": lambda: PeriodicALS("als", retrain_every=10_000, fold_in_users=True),
        "ease": lambda: PeriodicEASE(retrain_every=EASE_EVERY, regularization=EASE_LAMBDA),
        "ease-recency": lambda: PeriodicEASE(
            retrain_every=EASE_EVERY, regularization=EASE_LAMBDA, half_life_days=EASE_HALF_LIFE_DAYS
        ),
        "sasrec": lambda: PeriodicSASRec(
            retrain_every=SASREC_EVERY, epochs=SASREC_EPOCHS, learning_rate=SASREC_LEARNING_RATE
        ),
        "implicit-bpr": lambda: PeriodicALS(
            "bpr", retrain_every=10_000, factors=64, iterations=100, learning_rate=0.05
        ),
    }
    if catalogue is not None and catalogue.encoder is None:  # no item text: the hybrid without content
        index = catalogue.index
        weights = replace(weights, content=0.0)
        factories["hybrid"] = lambda: OnlineHybrid(index, weights, name="hybrid", policy=policy, sizes=sizes)
        factories["cf-only"] = lambda: OnlineHybrid(
            index, HybridWeights(content=0.0, cf=1.0, trending=0.0, repurchase=0.0), "cf-only", policy=policy
        )
    elif catalogue is not None:
        index = catalogue.index
        encoder = cast(TextEncoder, catalogue.encoder)  # not None here

        reviews = ReviewReader(encoder.encode)

        def hybrid(name: str, weights: HybridWeights) -> Callable[[], Recommender]:
            return lambda: OnlineHybrid(index, weights, name=name, policy=policy, sizes=sizes, reviews=reviews)

        only = HybridWeights(content=0.0, cf=0.0, trending=0.0, repurchase=0.0)
        factories["content-only"] = hybrid("content-only", replace(only, content=1.0))
        factories["cf-only"] = hybrid("cf-only", replace(only, cf=1.0))
        factories["hybrid"] = hybrid("hybrid", weights)
        factories["hybrid-exact"] = lambda: OnlineHybrid(
            index, weights, name="hybrid-exact", policy=policy, sizes=replace(sizes, exact=True), reviews=reviews
        )
        factories["hybrid-mmr"] = lambda: OnlineHybrid(
            index, weights, name="hybrid-mmr", policy=replace(policy, mmr_lambda=0.8), sizes=sizes, reviews=reviews
        )
        factories["hybrid-text-blind"] = lambda: OnlineHybrid(  # reviews count, their words do not
            index, weights, name="hybrid-text-blind", policy=policy, sizes=sizes
        )
        factories["hybrid-finetuned"] = lambda: FinetunedHybrid(index, catalogue.texts, encoder, weights, schedule)
    return factories


def run_evaluation(
    dataset: str | None = "movielens-100k",
    events_file: Path | None = None,
    items_file: Path | None = None,
    models: list[str] | None = None,
    k: int = 10,
    eval_every: int = 1,
    windows: int = 10,
    limit: int | None = None,
    json_path: Path | None = None,
    reports_dir: Path = Path("reports"),
    encoder_dir: str | None = None,
    console: Console | None = None,
    schedule: FinetuneSchedule | None = None,
    repeats: bool | None = None,
) -> PrequentialResult:
    """Replay the log through ``models`` (default: all but :data:`OPT_IN_MODELS`) and write the
    reports; ``schedule`` sets the fine-tune cycles of ``hybrid-finetuned`` (default: the live
    learner's, from ``STREAMREC_FINETUNE_*``). ``repeats`` scores events on items the user had
    before (re-orders; each model's own policy decides whether it serves them again), reported
    apart from first-time events; None: when the log has any."""
    console = console or Console()
    events, items = load_log(dataset, events_file, items_file)
    events = events[:limit] if limit else events
    if repeats is None:
        repeats = has_repeats(events)
    catalogue = embed_catalogue(items, encoder_dir, console) if items else id_only_catalogue(events)
    index = catalogue.index if catalogue else None
    factories = model_factories(catalogue, schedule=schedule)
    names = models or [n for n in factories if n not in OPT_IN_MODELS]
    unknown = [n for n in names if n not in factories]
    if unknown:
        hint = "" if catalogue.encoder is not None else " (content models need --items-file)"
        raise ValueError(f"unknown models {unknown}{hint}; choose from {sorted(factories)}")
    built = [factories[n]() for n in names]

    with _progress(console) as progress:
        task = progress.add_task("prequential replay", total=len(events))
        result = prequential(
            events,
            built,
            k=k,
            eval_every=eval_every,
            windows=windows,
            exclude_seen=not repeats,
            progress=lambda n, scored: progress.update(task, completed=n),
            # every item of the index has a vector (an ID-only log's are constant: no diversity to measure)
            item_vectors=None
            if index is None or catalogue.encoder is None
            else {i.item_id: cast(np.ndarray, index.vector_of(i.item_id)) for i in index.infos},
        )
    cycles = {m.name: m.cycles for m in built if isinstance(m, FinetunedHybrid)}
    write_reports(result, reports_dir, json_path, dataset or str(events_file), console, cycles)
    return result


def write_reports(
    result: PrequentialResult,
    reports_dir: Path,
    json_path: Path | None,
    source: str,
    console: Console,
    cycles: dict[str, list[Cycle]] | None = None,
) -> None:
    """evaluation.md (metrics, per-window HR, fine-tune cycles), the HR plot, and the JSON."""
    cycles = cycles or {}
    reports_dir.mkdir(parents=True, exist_ok=True)
    note = (
        f"Source: {source}; {result.n_events:,} events, {result.n_scored:,} scored "
        f"(every {result.eval_every}{'st' if result.eval_every == 1 else 'th'} event with prior history"
        f"{'; --eval-every subsamples the scored events, every event is still learned' if result.eval_every > 1 else ''}"
        f"), K={result.k}, {result.wall_s:.0f} s. Cold start: {result.cold_start.n_scored:,} scored events on items "
        f"first seen after event {result.cold_start.new_item_after:,} with < {result.cold_start.max_prior} prior "
        f"interactions."
    )
    markdown = f"# Prequential evaluation\n\n{note}\n\n{result.as_markdown()}\n"
    if result.paired:
        markdown += (
            f"\n## Paired differences from {result.model_names[0]}\n\nMean per-event difference on the "
            f"same {result.n_scored:,} scored events, its standard error and z.\n\n"
            f"{result.paired_markdown()}\n"
        )
    if result.repeats.n_repeat:
        markdown += (
            f"\n## Repeat and first-time events\n\n{result.repeats.n_repeat:,} scored events re-buy an item the "
            f"user had before, {result.repeats.n_first:,} are first-time.\n\n{repeats_markdown(result)}\n"
        )
    markdown += f"\n## HR@{result.k} per time window\n\n{result.windows_markdown('hr')}\n"
    for name, log in cycles.items():
        markdown += f"\n## Fine-tune cycles of {name}\n\n{_cycles_summary(log)}\n\n{cycles_markdown(log, result.k)}\n"
    (reports_dir / "evaluation.md").write_text(markdown)
    plot_hr_over_time(result, reports_dir / "hr_over_time.png")
    payload = {
        "models": {name: {key: _clean(v) for key, v in m.items()} for name, m in result.metrics.items()},
        "cold_start_hr": {n: _clean(v) for n, v in result.cold_start.hr.items()},
        "repeats": asdict(result.repeats),
        "events_per_s": {n: round(t.events_per_s, 1) for n, t in result.timings.items()},
        "k": result.k,
        "eval_every": result.eval_every,
        "n_events": result.n_events,
        "n_scored": result.n_scored,
        "windows": [asdict(w) for w in result.windows],
        "paired": {name: {metric: asdict(d) for metric, d in diffs.items()} for name, diffs in result.paired.items()},
        "finetune_cycles": {
            name: [{key: _clean(v) for key, v in asdict(c).items()} for c in log] for name, log in cycles.items()
        },
    }
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(payload, indent=2, default=_clean) + "\n")
    console.print(note)
    console.print(result.as_markdown())
    if result.paired:
        console.print(f"paired differences from {result.model_names[0]}:")
        console.print(result.paired_markdown())
    if result.repeats.n_repeat:
        console.print(f"repeat ({result.repeats.n_repeat:,}) and first-time ({result.repeats.n_first:,}) events:")
        console.print(repeats_markdown(result))
    for name, log in cycles.items():
        console.print(f"{name}: {_cycles_summary(log)}")
    console.print(
        f"reports: {reports_dir / 'evaluation.md'}, {reports_dir / 'hr_over_time.png'}"
        + (f", {json_path}" if json_path else "")
    )


def has_repeats(events: list[Interaction]) -> bool:
    """Does any user interact with the same item twice?"""
    seen: set[tuple[str, str]] = set()
    for e in events:
        key = (e.user_id, e.item_id)
        if key in seen:
            return True
        seen.add(key)
    return False


def repeats_markdown(result: PrequentialResult) -> str:
    k, split = result.k, result.repeats
    lines = [
        f"| model | repeat HR@{k} | repeat NDCG@{k} | first-time HR@{k} | first-time NDCG@{k} |",
        "|---|---|---|---|---|",
    ]
    for name in result.model_names:
        cells = [
            split.hr["repeat"][name],
            split.ndcg["repeat"][name],
            split.hr["first"][name],
            split.ndcg["first"][name],
        ]
        lines.append(f"| {name} | " + " | ".join("-" if v is None else f"{v:.4f}" for v in cells) + " |")
    return "\n".join(lines)


def _cycles_summary(cycles: list[Cycle]) -> str:
    """'N fine-tune cycles: P promoted, R rejected, S skipped; T s in cycles.'"""
    count = {outcome: sum(c.outcome == outcome for c in cycles) for outcome in ("promoted", "rejected", "skipped")}
    return (
        f"{len(cycles)} fine-tune cycles: {count['promoted']} promoted, {count['rejected']} rejected, "
        f"{count['skipped']} skipped; {sum(c.seconds for c in cycles):.0f} s in cycles"
        + (f" on {cycles[-1].device}" if cycles else "")
    )


def plot_hr_over_time(result: PrequentialResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from datetime import UTC, datetime

    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    mid = [datetime.fromtimestamp((w.first_ts + w.last_ts) / 2000, tz=UTC) for w in result.windows]
    for name in result.model_names:
        hr = [w.metrics[name]["hr"] for w in result.windows]
        # matplotlib's stubs leave out datetime x values (unit-converted) and None (a gap in the line)
        ax.plot(mid, hr, marker="o", linewidth=2.2 if "hybrid" in name else 1.2, label=name)  # type: ignore[arg-type]
    ax.set_title(f"Prequential HR@{result.k} per time window")
    ax.set_ylabel(f"HR@{result.k}")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )
