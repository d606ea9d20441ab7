"""Learner checkpoints: what the learner has learned and where it stands in its topics, saved to
the model store as one version of kind ``checkpoint`` every ``checkpoint_every_s``. A learner
that restarts loads the newest checkpoint whose checksums pass and resumes from its positions.
It does not re-read the events topic from the start of its retention.

Atomic: a version counts only once its manifest is written, which happens last, so a learner killed
while saving leaves the previous checkpoint the newest. State and positions are taken together
between two polls. Everything before the positions is in the state, nothing after them. The
dedupe window travels with the state, so a record read again after a restart changes nothing.
The store is the learner's own and checksummed; the state is a pickle, loaded only from there.
"""

from __future__ import annotations

import logging
import pickle
import time
from dataclasses import dataclass

from model.finetune.examples import NextItemExamples
from model.scoring.global_learner import GlobalLearner
from stream.model_store import ModelStore, SnapshotError

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "learner.pickle"
KIND = "checkpoint"


@dataclass
class LearnerCheckpoint:
    """The learner's whole state between two polls."""

    learner: GlobalLearner
    examples: NextItemExamples
    catalogue: dict[str, str]  # item_id -> text, as the workers embed it
    positions: dict[tuple[str, int], int]  # (topic, partition) -> the next offset to read
    cycle_events: int = 0  # events learned when the last fine-tune cycle started
    cycle_requested: str | None = None  # a drift detector's request not yet served


def save_checkpoint(store: ModelStore, checkpoint: LearnerCheckpoint, keep: int = 2) -> tuple[str, int, float]:
    """Store ``checkpoint`` as a new version; keep the newest ``keep`` checkpoints. Returns the
    version, its bytes and the seconds it took."""
    started = time.perf_counter()
    data = pickle.dumps(checkpoint, protocol=pickle.HIGHEST_PROTOCOL)
    manifest = store.save(
        {CHECKPOINT_FILE: data},
        metrics={"events_learned": checkpoint.learner.events, "bytes": len(data)},
        kind=KIND,
    )
    store.prune(keep=keep, kind=KIND)
    return manifest.version, len(data), time.perf_counter() - started


def newest_checkpoint(store: ModelStore) -> tuple[str, LearnerCheckpoint] | None:
    """The newest checkpoint whose checksums pass (older ones when it is damaged), or None."""
    for version in reversed(store.versions()):
        try:
            if store.manifest(version).kind != KIND:
                continue
            checkpoint = pickle.loads(store.load(version)[CHECKPOINT_FILE])
        except (SnapshotError, KeyError, pickle.UnpicklingError, EOFError) as err:
            log.warning("checkpoint %s unusable (%s): trying an older one", version, err)
            continue
        if isinstance(checkpoint, LearnerCheckpoint):
            return version, checkpoint
    return None
