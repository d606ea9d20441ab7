"""Learner -> model store -> model-updates -> workers swap; corrupt versions are refused."""

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
from tests.integration.test_worker import KITCHEN, SHOES, has_trigger, lists_for, publish_catalogue

pytestmark = pytest.mark.integration


def wait_for_swaps(worker, outcome: str, at_least: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while metric_sum(worker.metrics(), "streamrec_model_swaps_total", outcome=outcome) < at_least:
        assert time.monotonic() < deadline, f"no {outcome} model swap within {timeout_s}s"
        time.sleep(0.2)


def test_the_learners_cf_reaches_the_workers_lists_and_a_corrupt_version_is_refused(
    settings, start_worker, start_learner
):
    with EventProducer(settings) as producer:
        publish_catalogue(producer)
        worker = start_worker(items=12)
        learner = start_learner()
        # Shoppers who buy trail running shoes also buy the cast iron skillet: a pairing no
        # text similarity would suggest.
        for u in range(6):
            producer.send(event_id=f"b{u}a", user_id=f"buyer{u}", item_id="s1", type="purchase")
            producer.send(event_id=f"b{u}b", user_id=f"buyer{u}", item_id="k4", type="purchase")
        producer.flush()
        wait_for_swaps(worker, "ok", 1)

        producer.send(event_id="n1", user_id="newbie", item_id="s1", type="click")
        producer.flush()
        recs = read_topic(settings, "recommendations", has_trigger("n1"))
        served = lists_for(recs, "newbie")[-1]
        assert served["model_version"].startswith("hybrid:")
        top = served["items"][0]
        assert top["item_id"] == "k4", served["items"][:3]
        assert any(r.startswith("often bought with Trail running shoes") for r in top["reasons"])
        good_version = served["model_version"]
        learner.stop()  # no newer good version from here on

        # A version whose artefact was altered after it was written is refused.
        store = ModelStore(settings.model_store)
        good = store.versions()[-1]
        tampered = f"{good}-tampered"
        shutil.copytree(f"{settings.model_store}/{good}", f"{settings.model_store}/{tampered}")
        with open(f"{settings.model_store}/{tampered}/global.npz", "r+b") as f:
            f.seek(100)
            f.write(b"\x00corrupted\x00")
        announcement = {
            "version": tampered,
            "uri": f"{settings.model_store}/{tampered}",
            "sha256": store.manifest_sha256(tampered),
            "created_ts": 0,
            "metrics": {},
        }
        updates = topic_name(settings, "model-updates")
        producer._producer.send(updates, key=b"global", value=json.dumps(announcement).encode())
        producer.flush()
        wait_for_swaps(worker, "corrupt", 1)
        missing = {**announcement, "uri": f"{settings.model_store}/nope"}
        producer._producer.send(updates, key=b"global", value=json.dumps(missing).encode())
        producer.flush()
        wait_for_swaps(worker, "missing", 1)

        producer.send(event_id="n2", user_id="newbie", item_id="s2", type="click")
        producer.flush()
    recs = read_topic(settings, "recommendations", has_trigger("n2"))
    after = lists_for(recs, "newbie")[-1]
    assert worker.alive()
    assert after["model_version"] == good_version  # still serving the last good version
    assert {i["item_id"] for i in after["items"][:3]} <= set(SHOES) | set(KITCHEN)
    # A worker started now finds the refused versions at the end of model-updates and falls
    # back to the newest usable one.
    worker.stop()
    late = start_worker(items=12)
    wait_for_swaps(late, "ok", 1)
    samples = late.metrics()
    assert metric_sum(samples, "streamrec_model_swaps_total", outcome="ok") == 1
    assert metric_sum(samples, "streamrec_model_swaps_total", outcome="missing") == 1
    assert metric_sum(samples, "streamrec_model_swaps_total", outcome="corrupt") == 1


def test_a_rollback_is_announced_like_a_promotion_and_workers_follow(settings, start_worker, start_learner):
    from typer.testing import CliRunner

    from serving.cli import app

    with EventProducer(settings) as producer:
        publish_catalogue(producer)
        worker = start_worker(items=12)
        learner = start_learner()
        for u in range(6):
            producer.send(event_id=f"a{u}", user_id=f"u{u}", item_id="s1", type="purchase")
        producer.flush()
        wait_for_swaps(worker, "ok", 1)
        for u in range(6):
            producer.send(event_id=f"b{u}", user_id=f"u{u}", item_id="k4", type="purchase")
        producer.flush()
        store = ModelStore(settings.model_store)
        deadline = time.monotonic() + 30
        while len(store.versions()) < 2:
            assert time.monotonic() < deadline, "the learner made no second version"
            time.sleep(0.2)
        learner.stop()
        wait_for_swaps(worker, "ok", 2)
        first = store.versions()[0]

        runner = CliRunner()
        listed = runner.invoke(app, ["model", "list", "--model-store", settings.model_store])
        assert listed.exit_code == 0 and first in listed.output and "events_learned=" in listed.output
        shown = runner.invoke(app, ["model", "show", first, "--model-store", settings.model_store])
        assert shown.exit_code == 0 and "global.npz" in shown.output
        rolled = runner.invoke(
            app,
            ["model", "rollback", first, "--model-store", settings.model_store, "--bootstrap", settings.bootstrap],
            env={"STREAMREC_TOPIC_PREFIX": settings.topic_prefix},
        )
        assert rolled.exit_code == 0, rolled.output
        wait_for_swaps(worker, "ok", 3)

        producer.send(event_id="c1", user_id="fresh", item_id="s2", type="click")
        producer.flush()
    recs = read_topic(settings, "recommendations", has_trigger("c1"))
    assert lists_for(recs, "fresh")[-1]["model_version"] == f"hybrid:{first}"
