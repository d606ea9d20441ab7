"""End-to-end replay benchmark: the full MovieLens-100K replay through broker + worker.

Runs the demo twice, one after the other on the same machine:
  1. full speed: events/s end to end and the worker's peak RSS;
  2. paced at --rate 1000: event-to-recommendation latency p50 / p95 / p99.
Writes reports/bench-replay.json and prints the rows for docs/BENCHMARKS.md.

    .venv/bin/python benchmarks/replay.py [--events N] [--rate 1000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
from pathlib import Path

from rich.console import Console

from serving.demo import run_demo


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {mem_gb:.0f} GiB RAM, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=None, help="replay only the first N ratings")
    parser.add_argument("--rate", type=float, default=1000.0, help="pace of the latency run (events/s)")
    parser.add_argument("--out", type=Path, default=Path("reports/bench-replay.json"))
    args = parser.parse_args()

    console = Console()
    full = run_demo(events=args.events, console=console)
    paced = run_demo(events=args.events, rate=args.rate, console=console)
    result = {"date": dt.date.today().isoformat(), "machine": machine(), "full_speed": full, "paced": paced}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"\n[bold]{result['date']} - {result['machine']}[/]")
    console.print(f"| full speed | {full['events_sent']:,} events | {full['events_per_s']:,.0f} events/s | "
                  f"worker peak RSS {full['worker_peak_rss_mb']:.0f} MB | {full['recommendations_published']:,} lists |")
    lat = paced["latency_ms"]
    console.print(f"| --rate {args.rate:.0f} | {paced['events_sent']:,} events | {paced['events_per_s']:,.0f} events/s | "
                  f"latency p50 {lat['p50']:.0f} / p95 {lat['p95']:.0f} / p99 {lat['p99']:.0f} ms | "
                  f"online HR@10 {paced['online_hit_rate_at_10']} |")
    console.print(f"written to {args.out}")


if __name__ == "__main__":
    main()
