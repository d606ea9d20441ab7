"""Drift detection delay and false alarms on the synthetic shopping workload.

For each seed: a workload whose tastes shift abruptly at --shift-at and a stationary one of the
same length (same seed: same catalogue, same events before the shift) are replayed as a worker
serves them (model.evaluation.synthetic.served_replay); the three observation streams (hit checks, served
list scores, interacted item vectors) are recorded once and fed to each candidate detector.

Reported per detector: the delay (events after the shift until the first detection at or after
it), detections before the shift on the shifted stream, and detections anywhere on the
stationary stream (false alarms).

    python benchmarks/drift_delay.py [--seeds 10] [--events 20000] [--shift-at 10000] [--hybrid]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from river import drift

from model.drift import CentroidShift, HitRateDrift, ScoreDrift, list_score
from model.evaluation.online_hybrid import OnlineHybrid
from model.evaluation.synthetic import ShoppingWorkload, served_replay, shopping_workload

from common import describe  # benchmarks/common.py


@dataclass
class Streams:
    """What a monitor sees, with the event index of each observation."""

    hits: list[tuple[int, bool]]
    lists: list[tuple[int, np.ndarray]]
    items: list[tuple[int, np.ndarray]]


def record(workload: ShoppingWorkload, hybrid: bool) -> Streams:
    model = OnlineHybrid(workload.index(), half_life_s=3600.0) if hybrid else None
    streams = Streams([], [], [])
    for step in served_replay(workload, model=model):
        if step.hit is not None:
            streams.hits.append((step.index, step.hit))
        streams.lists.append((step.index, step.scores))
        streams.items.append((step.index, step.item_vector))
    return streams


class RiverOn:
    """A plain river detector on a number derived from each observation (for comparison)."""

    def __init__(self, detector, to_number: Callable) -> None:
        self.detector, self.to_number = detector, to_number

    def update(self, x) -> bool:
        self.detector.update(self.to_number(x))
        return self.detector.drift_detected


# name -> (stream, factory). The first of each stream is the default of model.drift.
CANDIDATES: dict[str, tuple[str, Callable]] = {
    "hit_rate_adwin (delta 0.002, drops only)": ("hits", lambda: HitRateDrift()),
    "hit ADWIN both directions": ("hits", lambda: HitRateDrift(drops_only=False)),
    "hit ADWIN delta 0.0002": ("hits", lambda: HitRateDrift(delta=0.0002)),
    "hit DDM on misses (river defaults)": ("hits", lambda: RiverOn(drift.binary.DDM(), lambda h: not h)),
    "hit HDDM_A on misses (river defaults)": ("hits", lambda: RiverOn(drift.binary.HDDMA(), lambda h: not h)),
    "score_page_hinkley (z, down, lambda 200, delta 0.3)": ("lists", lambda: ScoreDrift()),
    "score PH z down lambda 100, delta 0.2": ("lists", lambda: ScoreDrift(threshold=100.0, delta=0.2)),
    "score PH z down lambda 50, delta 0.2": ("lists", lambda: ScoreDrift(threshold=50.0, delta=0.2)),
    "score PH z both directions lambda 200, delta 0.3": ("lists", lambda: ScoreDrift(mode="both")),
    "score PH z down lambda 200, delta 0.3, forgetting 0.995": ("lists", lambda: ScoreDrift(alpha=0.995)),
    "score PH raw, river defaults": ("lists", lambda: RiverOn(drift.PageHinkley(), list_score)),
    "score PH raw down, threshold 20, delta 0.005": (
        "lists",
        lambda: RiverOn(drift.PageHinkley(threshold=20.0, delta=0.005, mode="down"), list_score),
    ),
    "score ADWIN raw (delta 0.002)": ("lists", lambda: RiverOn(drift.ADWIN(), list_score)),
    "score KSWIN (river defaults)": ("lists", lambda: RiverOn(drift.KSWIN(seed=0), list_score)),
    "centroid_shift (200/5000 events, threshold 0.05)": ("items", lambda: CentroidShift()),
    "centroid threshold 0.03": ("items", lambda: CentroidShift(threshold=0.03)),
    "centroid threshold 0.1": ("items", lambda: CentroidShift(threshold=0.1)),
}


def fired_at(factory: Callable, observations: list[tuple[int, object]]) -> list[int]:
    detector = factory()
    return [index for index, x in observations if detector.update(x)]


def largest_distance(items: list[tuple[int, np.ndarray]]) -> float:
    """The largest centroid distance once the detector may fire (after its ``min_events``)."""
    detector, largest = CentroidShift(threshold=float("inf")), 0.0
    for _, vector in items:
        detector.update(vector)
        if detector.n >= detector.min_events:
            largest = max(largest, detector.distance)
    return largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    parser.add_argument("--events", type=int, default=20_000, help="events per workload (default 20,000)")
    parser.add_argument("--shift-at", type=int, default=10_000, help="event index of the taste shift (default 10,000)")
    parser.add_argument(
        "--hybrid",
        action="store_true",
        help="serve with the full hybrid (content + CF + trending) instead of the preference vector",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()

    started = time.perf_counter()
    results: dict[str, list[dict]] = {name: [] for name in CANDIDATES}
    centroid_peaks = []
    for seed in range(args.seeds):
        shifted = record(shopping_workload(args.events, args.shift_at, seed=seed), args.hybrid)
        stationary = record(shopping_workload(args.events, None, seed=seed), args.hybrid)
        for name, (stream, factory) in CANDIDATES.items():
            on_shift = fired_at(factory, getattr(shifted, stream))
            after = [i - args.shift_at for i in on_shift if i >= args.shift_at]
            results[name].append(
                {
                    "seed": seed,
                    "delay": after[0] if after else None,
                    "before_shift": sum(i < args.shift_at for i in on_shift),
                    "stationary": len(fired_at(factory, getattr(stationary, stream))),
                }
            )
        centroid_peaks.append((largest_distance(stationary.items), largest_distance(shifted.items)))
        print(f"seed {seed} done ({time.perf_counter() - started:.0f} s)", flush=True)

    served_by = "full hybrid (content 0.3 + CF 1.0 + trending 0.2)" if args.hybrid else "preference vector, cosine"
    print(
        f"\n{dt.date.today()} - {describe()} - {args.seeds} seeds, {args.events:,} events, "
        f"shift at {args.shift_at:,}, lists served by the {served_by}, {time.perf_counter() - started:.0f} s"
    )
    print(
        "\n| detector | delay per seed (events after the shift) | median | max | missed | "
        "fired before shift | fired on stationary |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        delays = [r["delay"] for r in rows if r["delay"] is not None]
        print(
            f"| {name} | {', '.join('-' if r['delay'] is None else str(r['delay']) for r in rows)} | "
            f"{int(np.median(delays)) if delays else '-'} | {max(delays) if delays else '-'} | "
            f"{sum(r['delay'] is None for r in rows)} | {sum(r['before_shift'] for r in rows)} | "
            f"{sum(r['stationary'] for r in rows)} |"
        )
    print(
        f"\nlargest centroid distance (after {CentroidShift().min_events} events), stationary / shifted stream: "
        + ", ".join(f"{a:.4f} / {b:.3f}" for a, b in centroid_peaks)
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"json": str(args.json)},
                    "results": results,
                    "centroid_stationary_peaks": centroid_peaks,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
