"""HTTP API load benchmark: GET recommendations with 100k users in the view.

  1. starts a noida-db broker on loopback and writes --users synthetic lists (10 items with
     reasons, as a worker publishes them) to a fresh `recommendations` topic;
  2. starts `streamrec api` as its own process and times how long its view takes to load them
     (/readyz turns 200), and its RSS then;
  3. loads GET /v1/users/{random known user}/recommendations over keep-alive connections on
     loopback, with wrk (Debian package `wrk`) when it is on PATH, else a Python (httpx/asyncio)
     generator: requests/s and latency p50 / p90 / p99, once per --connections value.
Writes reports/bench-api.json and prints the rows for docs/BENCHMARKS.md.

    .venv/bin/python benchmarks/api_load.py [--users 100000] [--duration 10] [--connections 1,16]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from kafka import KafkaProducer

from stream.broker import EmbeddedBroker, free_port
from stream.config import Settings, topic_name
from stream.kafka.topics import create_topics

from common import describe, proc_status_mb

KEY = "bench-read-key"
WRK_SCRIPT = """
math.randomseed(%(seed)d)
request = function()
  local path = "/v1/users/u" .. math.random(0, %(users)d - 1) .. "/recommendations"
  return wrk.format("GET", path, {["Authorization"] = "Bearer %(key)s"})
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %%d, "duration_s": %%f, "errors": %%d, "non_2xx": %%d, ' ..
    '"p50_ms": %%f, "p90_ms": %%f, "p99_ms": %%f, "max_ms": %%f}\\n', summary.requests, summary.duration / 1e6,
    e.connect + e.read + e.write + e.timeout, e.status, latency:percentile(50) / 1e3,
    latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3))
end
"""


def fill_topic(settings: Settings, users: int, seed: int = 7) -> float:
    """Write one list per user (10 items, like the worker's) to `recommendations`; seconds taken."""
    rng = random.Random(seed)
    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap,
        linger_ms=20,
        batch_size=1024 * 1024,
        max_request_size=8 * 1024 * 1024,
        acks=1,
    )
    topic = topic_name(settings, "recommendations")
    start = time.perf_counter()
    for u in range(users):
        items = rng.sample(range(50_000), 10)
        value = {
            "user_id": f"u{u}",
            "model_version": "hybrid:000001700000000",
            "trigger_event_id": f"e{u}",
            "event_ts": 1_700_000_000_000,
            "published_ts": 1_700_000_000_020,
            "k": 10,
            "items": [
                {
                    "item_id": f"sku-{i}",
                    "score": round(3.0 - 0.1 * n, 4),
                    "reasons": [f"similar to Product {rng.randrange(50_000)}", "trending in shoes"],
                }
                for n, i in enumerate(items)
            ],
        }
        producer.send(topic, key=f"u{u}".encode(), value=json.dumps(value).encode())
    producer.flush()
    producer.close()
    return time.perf_counter() - start


def run_wrk(base: str, users: int, connections: int, duration_s: int, workdir: Path) -> dict:
    script = workdir / "api_load.lua"
    script.write_text(WRK_SCRIPT % {"seed": 7, "users": users, "key": KEY})
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "-s", str(script), base],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = json.loads(out.split("RESULT ", 1)[1])
    result["requests_per_s"] = result["requests"] / result["duration_s"]
    return result


def run_python(base: str, users: int, connections: int, duration_s: int) -> dict:
    """The same load from httpx/asyncio (when wrk is absent); the generator shares the CPU."""

    async def main() -> tuple[list[float], int]:
        latencies: list[float] = []
        failures = 0
        rng = random.Random(7)
        deadline = time.perf_counter() + duration_s
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(base_url=base, limits=limits, headers={"Authorization": f"Bearer {KEY}"}) as c:

            async def one_connection() -> None:
                nonlocal failures
                while time.perf_counter() < deadline:
                    start = time.perf_counter()
                    response = await c.get(f"/v1/users/u{rng.randrange(users)}/recommendations")
                    latencies.append(time.perf_counter() - start)
                    failures += response.status_code != 200

            await asyncio.gather(*(one_connection() for _ in range(connections)))
        return latencies, failures

    start = time.perf_counter()
    latencies, failures = asyncio.run(main())
    elapsed = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100)
    return {
        "requests": len(latencies),
        "duration_s": elapsed,
        "errors": 0,
        "non_2xx": failures,
        "p50_ms": q[49] * 1e3,
        "p90_ms": q[89] * 1e3,
        "p99_ms": q[98] * 1e3,
        "max_ms": max(latencies) * 1e3,
        "requests_per_s": len(latencies) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000, help="users with a list in the view")
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per run")
    parser.add_argument("--connections", default="1,16", help="comma-separated concurrent connections, one run each")
    parser.add_argument("--generator", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--out", type=Path, default=Path("reports/bench-api.json"))
    args = parser.parse_args()
    generator = args.generator if args.generator != "auto" else ("wrk" if shutil.which("wrk") else "python")

    workdir = Path(tempfile.mkdtemp(prefix="bench-api-"))
    broker = EmbeddedBroker("noida", data_dir=workdir / "broker").start()
    api = None
    try:
        settings = Settings(bootstrap=broker.bootstrap, topic_prefix="bench-api.", partitions=4)
        create_topics(settings)
        fill_s = fill_topic(settings, args.users)
        print(f"wrote {args.users:,} lists in {fill_s:.1f} s")

        port = free_port()
        env = {**os.environ, "STREAMREC_TOPIC_PREFIX": settings.topic_prefix, "STREAMREC_API_READ_KEYS": KEY}
        log = open(workdir / "api.log", "wb")  # noqa: SIM115 - the API child process writes to it for the whole run
        api = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "serving.cli",
                "api",
                "--bootstrap",
                broker.bootstrap,
                "--port",
                str(port),
                "--loglevel",
                "warning",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        start = time.perf_counter()
        while True:
            if api.poll() is not None:
                raise RuntimeError(f"the API exited; see {workdir / 'api.log'}")
            try:
                ready = httpx.get(f"{base}/readyz", timeout=5)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        load_s = time.perf_counter() - start
        view_users = ready.json()["view_users"]
        rss = proc_status_mb(api.pid)
        print(f"API ready in {load_s:.1f} s (process start + view of {view_users:,} users), RSS {rss:.0f} MB")

        runs = {}
        for connections in (int(c) for c in args.connections.split(",")):
            if generator == "wrk":
                runs[connections] = run_wrk(base, args.users, connections, args.duration, workdir)
            else:
                runs[connections] = run_python(base, args.users, connections, args.duration)
            r = runs[connections]
            print(
                f"{connections} connections: {r['requests_per_s']:,.0f} req/s, p50 {r['p50_ms']:.2f} / "
                f"p90 {r['p90_ms']:.2f} / p99 {r['p99_ms']:.2f} ms, non-2xx {r['non_2xx']}, errors {r['errors']}"
            )
    finally:
        if api is not None:
            api.terminate()
            api.wait(timeout=30)
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    result = {
        "date": dt.date.today().isoformat(),
        "machine": describe(),
        "generator": generator,
        "users": args.users,
        "view_users": view_users,
        "fill_topic_s": fill_s,
        "ready_s": load_s,
        "api_rss_mb": rss,
        "duration_s": args.duration,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{result['date']} - {result['machine']} - load generator: {generator}")
    print(f"| view | {view_users:,} users | ready {load_s:.1f} s after start | API RSS {rss:.0f} MB |")
    for connections, r in runs.items():
        print(
            f"| GET recommendations, {connections} connection(s) | {r['requests_per_s']:,.0f} req/s | "
            f"p50 {r['p50_ms']:.2f} / p90 {r['p90_ms']:.2f} / p99 {r['p99_ms']:.2f} ms | "
            f"{r['requests']:,} requests, {r['non_2xx']} non-2xx |"
        )


if __name__ == "__main__":
    main()
