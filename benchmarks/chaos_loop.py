"""The chaos test (tests/integration/test_chaos.py) in a loop, at the issue's size by default:
20,000 events of 1,000 users per run, six disruptions, a new seed each run.

    .venv/bin/python benchmarks/chaos_loop.py [--runs 10] [--users 1000] [--per-user 20]

Prints each run's verdict and time, then runs clean / runs and what failed. Each run's pytest
output is kept in reports/chaos/run-<seed>.log.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

from common import describe  # benchmarks/common.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--per-user", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=1)
    args = parser.parse_args()
    reports = Path("reports/chaos")
    reports.mkdir(parents=True, exist_ok=True)
    print(f"{dt.date.today()}, {describe()}; {args.users * args.per_user:,} events of {args.users:,} users per run")
    failed: list[tuple[int, str]] = []
    for seed in range(args.first_seed, args.first_seed + args.runs):
        env = {
            **os.environ,
            "STREAMREC_CHAOS_USERS": str(args.users),
            "STREAMREC_CHAOS_PER_USER": str(args.per_user),
            "STREAMREC_CHAOS_SEED": str(seed),
        }
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "--timeout", "3000",
             "tests/integration/test_chaos.py"],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        (reports / f"run-{seed}.log").write_text(run.stdout + run.stderr)
        verdict = "clean" if run.returncode == 0 else "FAILED"
        reason = next((line for line in run.stdout.splitlines() if line.startswith("E ")), "")
        if not run.returncode:  # how many users the learner's adapter moved to another space meanwhile
            reason = next((line for line in run.stdout.splitlines() if line.startswith("chaos verifier:")), "")
        print(f"seed {seed}: {verdict} in {time.monotonic() - started:.0f} s {reason[:200]}", flush=True)
        if run.returncode:
            failed.append((seed, reason))
    print(f"{args.runs - len(failed)} / {args.runs} runs clean")
    for seed, reason in failed:
        print(f"  seed {seed}: {reason}")


if __name__ == "__main__":
    main()
