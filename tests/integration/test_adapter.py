"""Fine-tuned adapters end to end: the learner trains and promotes one, a running worker swaps
its item space and rebuilds users' vectors, a corrupt version is refused, a rollback is followed."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from serving.sdk import EventProducer
from stream.config import topic_name
from stream.metrics import metric_sum
from stream.model_store import ModelStore
from tests.conftest import read_topic
from tests.integration.test_learner import wait_for_swaps
from tests.integration.test_worker import has_trigger, lists_for, publish_catalogue

pytestmark = pytest.mark.integration

# Shoppers who look at a pair of shoes go on to buy a kitchen item: a pattern text similarity
# cannot see, so a fine-tuned adapter wins on the holdout and is promoted.
PAIRS = [("s1", "k4"), ("s2", "k1"), ("s3", "k5"), ("s4", "k2")]


def adapter_versions(store: ModelStore) -> list[str]:
    return [v for v in store.versions() if store.manifest(v).kind == "adapter"]


def wait_for_adapters(store: ModelStore, n: int, learner, timeout_s: float = 150.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while len(adapter_versions(store)) < n:
        assert learner.alive(), f"the learner died; see {learner.log_path}"
        try:
            samples = learner.metrics()
        except OSError:  # still starting
            samples = []
        rejected = metric_sum(samples, "streamrec_finetune_cycles_total", outcome="rejected")
        failed = metric_sum(samples, "streamrec_finetune_cycles_total", outcome="failed")
        assert time.monotonic() < deadline, (
            f"{n} adapter versions not promoted in {timeout_s}s "
            f"(rejected {rejected}, failed {failed}); see {learner.log_path}"
        )
        time.sleep(0.5)
    return adapter_versions(store)


def cycles_counted(learner) -> float:
    """Fine-tune cycles the learner counted; 0 while its metrics endpoint does not answer in time
    (a niced learner on a loaded machine, busy loading the encoder for its first cycle)."""
    try:
        return metric_sum(learner.metrics(), "streamrec_finetune_cycles_total")
    except OSError:
        assert learner.alive(), f"the learner died; see {learner.log_path}"
        return 0.0


def shop(producer: EventProducer, round_: int, users: int = 12) -> None:
    for u in range(users):
        shoe, kitchen = PAIRS[u % len(PAIRS)]
        user = f"r{round_}u{u}"
        producer.send(event_id=f"{user}-v", user_id=user, item_id=shoe, type="view")
        producer.send(event_id=f"{user}-p", user_id=user, item_id=kitchen, type="purchase")
    producer.flush()


def served_version(settings, producer, user: str, item: str, event_id: str) -> str:
    producer.send(event_id=event_id, user_id=user, item_id=item, type="click")
    producer.flush()
    return lists_for(read_topic(settings, "recommendations", has_trigger(event_id)), user)[-1]["model_version"]


def test_a_promoted_adapter_is_served_a_corrupt_one_refused_and_a_rollback_followed(
    settings, start_worker, start_learner
):
    settings.finetune_min_examples = 10
    settings.finetune_every_events = 12
    settings.finetune_budget_s = 6.0
    settings.finetune_holdout = 0.25
    store = ModelStore(settings.model_store)
    with EventProducer(settings) as producer:
        publish_catalogue(producer)
        worker = start_worker(items=12)
        learner = start_learner()
        shop(producer, 0, users=16)
        first = wait_for_adapters(store, 1, learner)[0]
        manifest = store.manifest(first)
        holdout = manifest.metrics["holdout"]
        assert holdout["candidate"]["hr"] >= holdout["current"]["hr"]
        assert holdout["candidate"]["ndcg"] >= holdout["current"]["ndcg"]
        assert manifest.metrics["finetune"]["trainable_params"] == 2 * 32 * 384  # rank 32 on the projection
        wait_for_swaps(worker, "ok", 1)  # the global snapshot or the adapter, whichever came first
        deadline = time.monotonic() + 60
        while f"+adapter:{first}" not in (
            version := served_version(settings, producer, "alice", "s1", f"a{int(time.monotonic() * 1000)}")
        ):
            assert time.monotonic() < deadline, f"worker still serves {version}"
        # The user's vector lives in the new space: alice's next list comes from it.
        shop(producer, 1, users=16)
        second = wait_for_adapters(store, 2, learner)[-1]
        learner.stop()
        deadline = time.monotonic() + 60
        while f"+adapter:{second}" not in (
            version := served_version(settings, producer, "bob", "s2", f"b{int(time.monotonic() * 1000)}")
        ):
            assert time.monotonic() < deadline, f"worker still serves {version}"

        # A version whose adapter weights were altered after it was written is refused.
        tampered = f"{second}-tampered"
        shutil.copytree(f"{settings.model_store}/{second}", f"{settings.model_store}/{tampered}")
        with open(f"{settings.model_store}/{tampered}/adapter_model.safetensors", "r+b") as f:
            f.seek(200)
            f.write(b"\x00corrupted\x00")
        announcement = {
            "version": tampered,
            "kind": "adapter",
            "uri": f"{settings.model_store}/{tampered}",
            "sha256": store.manifest_sha256(tampered),
            "created_ts": 0,
            "metrics": {},
        }
        producer._producer.send(
            topic_name(settings, "model-updates"), key=b"adapter", value=json.dumps(announcement).encode()
        )
        producer.flush()
        wait_for_swaps(worker, "corrupt", 1)
        assert worker.alive()
        assert f"+adapter:{second}" in served_version(settings, producer, "carol", "s3", "c1")

        # A rollback to the first adapter is announced like a promotion; the worker follows.
        from typer.testing import CliRunner

        from serving.cli import app

        rolled = CliRunner().invoke(
            app,
            ["model", "rollback", first, "--model-store", settings.model_store, "--bootstrap", settings.bootstrap],
            env={"STREAMREC_TOPIC_PREFIX": settings.topic_prefix},
        )
        assert rolled.exit_code == 0, rolled.output
        deadline = time.monotonic() + 60
        while f"+adapter:{first}" not in (
            version := served_version(settings, producer, "dave", "s4", f"d{int(time.monotonic() * 1000)}")
        ):
            assert time.monotonic() < deadline, f"worker still serves {version} after the rollback"


def test_a_drift_signal_from_a_worker_triggers_a_fine_tune_cycle(settings, start_learner):
    settings.finetune_min_examples = 10
    settings.finetune_every_events = 1_000_000  # neither the event count...
    settings.finetune_every_s = 1e9  # ...nor the clock triggers a cycle here
    settings.finetune_budget_s = 4.0
    settings.finetune_holdout = 0.25
    store = ModelStore(settings.model_store)
    with EventProducer(settings) as producer:
        publish_catalogue(producer)
        learner = start_learner()
        shop(producer, 0, users=16)
        time.sleep(8.0)  # the learner has the examples: still no cycle
        assert adapter_versions(store) == []
        producer._producer.send(
            topic_name(settings, "drift-signals"),
            key=b"hit_rate_adwin",
            value=json.dumps({"detector": "hit_rate_adwin", "n": 4096, "statistic": 0.02, "ts": 0}).encode(),
        )
        producer.flush()
        deadline = time.monotonic() + 120
        while cycles_counted(learner) < 1:
            assert time.monotonic() < deadline, f"no cycle after the drift signal; see {learner.log_path}"
            time.sleep(0.5)
    samples = learner.metrics()
    assert metric_sum(samples, "streamrec_learner_drift_signals_total", detector="hit_rate_adwin") == 1
    assert "fine-tune cycle (drift: hit_rate_adwin)" in learner.log_path.read_text()
    for version in adapter_versions(store):  # a promoted version records what triggered it
        assert store.manifest(version).metrics["trigger"] == "drift: hit_rate_adwin"
