"""End-to-end replay benchmark: MovieLens-100K through broker + worker (+ learner).

One run of this script measures, one after the other on the same machine:
  1. full speed, with the learner: events/s end to end, worker peak RSS;
  2. paced at --rate (default 1000 events/s), alternating with and without the learner,
     --repeats times each: event-to-recommendation latency p50 / p95 / p99 (median over
     the repeats; every run listed).
Writes reports/bench-replay.json and prints the rows for docs/BENCHMARKS.md.

    .venv/bin/python benchmarks/replay.py [--events N] [--paced-events N] [--rate 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
from pathlib import Path

from rich.console import Console

from serving.demo import run_demo

from common import describe  # benchmarks/common.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=None, help="events of the full-speed run (default: all)")
    parser.add_argument("--paced-events", type=int, default=None, help="events of each paced run (default: all)")
    parser.add_argument("--rate", type=float, default=1000.0, help="pace of the latency runs (events/s)")
    parser.add_argument("--repeats", type=int, default=3, help="paced runs per configuration")
    parser.add_argument("--out", type=Path, default=Path("reports/bench-replay.json"))
    args = parser.parse_args()

    console = Console()
    quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115 - the quiet console is used for the whole run
    full = run_demo(events=args.events, with_api=False, console=console)
    paced: dict[str, list[dict]] = {"hybrid+learner": [], "content-only": []}
    for _ in range(args.repeats):
        for name, with_learner in (("hybrid+learner", True), ("content-only", False)):
            paced[name].append(
                run_demo(
                    events=args.paced_events, rate=args.rate, with_learner=with_learner, with_api=False, console=quiet
                )
            )
            lat = paced[name][-1]["latency_ms"]
            console.print(f"paced {name}: p50 {lat['p50']} / p95 {lat['p95']} / p99 {lat['p99']} ms")
    result = {"date": dt.date.today().isoformat(), "machine": describe(), "full_speed": full, "paced": paced}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    console.print(f"\n[bold]{result['date']} - {result['machine']}[/]")
    console.print(
        f"| full speed, hybrid + learner | {full['events_sent']:,} events | {full['events_per_s']:,.0f} events/s "
        f"| worker peak RSS {full['worker_peak_rss_mb']:.0f} MB | {full['recommendations_published']:,} lists |"
    )
    for name, runs in paced.items():
        med = {q: statistics.median(r["latency_ms"][q] for r in runs) for q in ("p50", "p95", "p99")}
        each = ", ".join(f"{r['latency_ms']['p99']:.0f}" for r in runs)
        hr = statistics.median(r["online_hit_rate_at_10"] for r in runs)
        console.print(
            f"| --rate {args.rate:.0f}, {name} | {runs[0]['events_sent']:,} events x {len(runs)} | "
            f"median p50 {med['p50']:.0f} / p95 {med['p95']:.0f} / p99 {med['p99']:.0f} ms "
            f"(p99 of each run: {each}) | online HR@10 {hr:.4f} |"
        )
    console.print(f"written to {args.out}")


if __name__ == "__main__":
    main()
