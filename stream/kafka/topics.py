"""The topics of the wire contract, and their creation with explicit partitions and cleanup policy."""

from __future__ import annotations

from dataclasses import dataclass

from stream.config import Settings, topic_name


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool
    purpose: str


def contract_topics(settings: Settings) -> list[TopicSpec]:
    """Every topic of the wire contract (stream/schemas.py), with the configured prefix."""
    p = settings.partitions
    return [
        TopicSpec(topic_name(settings, "events"), p, False, "user events, key = user_id"),
        TopicSpec(topic_name(settings, "items"), p, True, "catalogue, key = item_id"),
        TopicSpec(topic_name(settings, "recommendations"), p, True, "top-K lists, key = user_id"),
        TopicSpec(topic_name(settings, "events.dlq"), p, False, "rejected records with a reason"),
        TopicSpec(topic_name(settings, "model-updates"), 1, False, "model version announcements"),
        TopicSpec(topic_name(settings, "drift-signals"), 1, False, "drift detections of the workers, for the learner"),
    ]


def create_topics(settings: Settings, timeout_s: float = 30.0) -> list[tuple[TopicSpec, str]]:
    """Create the contract topics; existing ones are kept. Returns (spec, "created" | "exists")."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(
        **settings.kafka_python_config(), client_id="streamrec-admin", request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        existing = set(admin.list_topics())
        outcome = []
        for spec in contract_topics(settings):
            if spec.name in existing:
                outcome.append((spec, "exists"))
                continue
            configs = {"cleanup.policy": "compact"} if spec.compacted else {}
            try:
                admin.create_topics([NewTopic(spec.name, spec.partitions, 1, topic_configs=configs)])
                outcome.append((spec, "created"))
            except TopicAlreadyExistsError:
                outcome.append((spec, "exists"))
        return outcome
    finally:
        admin.close()
