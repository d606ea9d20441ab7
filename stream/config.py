"""Settings of every streamrec process, read from ``STREAMREC_*`` environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from model.finetune.cycle import FinetuneSchedule
from model.scoring.decay import DEFAULT_HALF_LIFE_S
from model.scoring.hybrid import CandidateSizes, HybridWeights
from model.scoring.policy import ServingPolicy
from stream.kafka.connection import KafkaConnection

_CYCLE = FinetuneSchedule()  # the defaults of the fine-tune fields below
_WEIGHTS = HybridWeights()  # and of the hybrid's betas
_SIZES = CandidateSizes()  # and of its candidate stage
_POLICY = ServingPolicy()  # and of what its lists may contain


class Settings(KafkaConnection):
    """One place for the knobs; each field is also an env var, e.g. ``STREAMREC_K``. The Kafka
    connection (``STREAMREC_BOOTSTRAP``, SSL, SASL) is :class:`~stream.kafka.connection.KafkaConnection`'s."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMREC_", extra="ignore", hide_input_in_errors=True, env_parse_none_str="null"
    )

    topic_prefix: str = Field("streamrec.", description="prefix of every topic name")
    partitions: int = Field(4, ge=1, description="partitions of the keyed topics (events, recommendations)")
    app_id: str = Field("streamrec-worker", description="Faust app id / consumer group of the workers")
    k: int = Field(10, ge=1, le=200, description="length of each published recommendation list")
    half_life_s: float = Field(DEFAULT_HALF_LIFE_S, gt=0, description="half-life of a user's past events")
    history_size: int = Field(50, ge=1, description="recent events kept per user")
    max_event_bytes: int = Field(64 * 1024, ge=256, description="larger events go to the DLQ as oversize")
    batch_max: int = Field(500, ge=1, description="events processed together per poll")
    batch_within_s: float = Field(0.02, gt=0, description="longest wait to fill a batch")
    metrics_host: str = Field("127.0.0.1", description="address of the Prometheus endpoint")
    log_level: str = Field("warning", description="log level of the worker (debug, info, warning, error)")
    metrics_enabled: bool = Field(True, description="Prometheus metrics on (off only to measure their cost)")
    metrics_port: int = Field(9108, ge=0, description="port of the Prometheus endpoint (0: none)")
    data_dir: str = Field(".streamrec/worker", description="local directory of the worker's table files")
    encoder_dir: str | None = Field(
        None, description="item encoder: minilm (default), smollm2, or a local Hugging Face model directory"
    )
    instance_id: str | None = Field(
        None,
        description="static consumer-group member id (Kafka group.instance.id): "
        "a worker restarted with the same id takes its partitions back at once",
    )
    session_timeout_s: float = Field(6.0, gt=0, description="Kafka group session timeout")
    standby_replicas: int = Field(
        1,
        ge=0,
        description="workers: other workers keeping a warm copy of each user-state partition, to take it over "
        "without replaying its changelog (0: none; a new owner then rebuilds it from the changelog)",
    )
    empty_fetch_backoff_s: float = Field(
        0.005, ge=0, description="pause after an empty fetch (see stream.kafka.fetch_backoff)"
    )
    model_store: str = Field(".streamrec/models", description="model store: a directory or any fsspec URI")
    snapshot_every_events: int = Field(50_000, ge=1, description="learner: snapshot after this many new events")
    learner_nice: int = Field(10, ge=0, le=19, description="learner: CPU priority below the workers (nice)")
    keep_versions: int = Field(20, ge=1, description="learner: model versions kept in the store")
    snapshot_every_s: float = Field(30.0, gt=0, description="learner: or after this long, if anything was learned")
    checkpoint_every_s: float = Field(
        60.0,
        ge=0,
        description="learner: save its state and topic positions this often, to resume from after a restart "
        "(0: never; a restarted learner then re-reads events from the start)",
    )
    trending_half_life_s: float = Field(DEFAULT_HALF_LIFE_S, gt=0, description="half-life of trending counts")
    weight_content: float = Field(_WEIGHTS.content, ge=0, description="hybrid beta of the content score")
    weight_cf: float = Field(_WEIGHTS.cf, ge=0, description="hybrid beta of the collaborative-filtering score")
    weight_trending: float = Field(_WEIGHTS.trending, ge=0, description="hybrid beta of the trending score")
    weight_repurchase: float = Field(
        _WEIGHTS.repurchase, ge=0, description="hybrid beta of the buy-again score of past purchases"
    )
    weight_category_trending: float = Field(
        _WEIGHTS.category_trending, ge=0, description="hybrid beta of trending within the user's categories"
    )
    mmr_lambda: float = Field(
        _POLICY.mmr_lambda, ge=0, le=1, description="MMR re-ranking: 1 = off, lower = more diverse"
    )
    recent_window_s: float = Field(
        _POLICY.recent_window_s, ge=0, description="items a user saw this recently are not served back to them"
    )
    due_threshold: float = Field(
        _POLICY.due_threshold,
        ge=0,
        le=1,
        description="a past purchase is served again once its buy-again score reaches this",
    )
    cf_neighbours: int = Field(
        100, ge=1, description="learner: CF neighbours per item in a snapshot (its size is O(items x this))"
    )
    candidates_content: int = Field(
        _SIZES.content, ge=0, description="worker: candidates from the nearest items to the user's vector"
    )
    candidates_cf: int = Field(
        _SIZES.cf, ge=0, description="worker: candidates from the CF neighbours of the user's recent items"
    )
    candidates_trending: int = Field(_SIZES.trending, ge=0, description="worker: candidates from the top trending")
    candidates_category_trending: int = Field(
        _SIZES.category_trending,
        ge=0,
        description="worker: candidates from the top trending of each of the user's 3 strongest categories",
    )
    item_vectors_float16: bool = Field(
        False, description="worker: keep item vectors as float16 (half the memory of a large catalogue)"
    )
    exact_search_below: int = Field(
        50_000, ge=0, description="worker: catalogues smaller than this are searched exactly, larger by an HNSW graph"
    )
    cf_min_item_count: float = Field(
        1.0,
        ge=0,
        description="learner: items seen fewer times (decayed) get no CF "
        "score and stay out of the snapshot's co-occurrence matrix",
    )
    user_ttl_s: float = Field(
        30 * 24 * 3600.0,
        ge=0,
        description="worker: users idle this long leave its state (0: never); a returning user starts afresh",
    )
    lag_interval_s: float = Field(5.0, gt=0, description="worker: how often consumer lag is exported")
    learner_metrics_port: int = Field(9109, ge=0, description="learner: port of its Prometheus endpoint (0: none)")
    finetune: bool = Field(True, description="learner: micro-fine-tune the encoder's LoRA adapter on recent behaviour")
    finetune_every_events: int = Field(
        _CYCLE.every_events, ge=1, description="learner: a fine-tune cycle after this many events"
    )
    finetune_every_s: float = Field(
        _CYCLE.every_s, gt=0, description="learner: or after this long, if examples came in"
    )
    finetune_min_examples: int = Field(
        _CYCLE.min_examples, ge=2, description="learner: no cycle with fewer training examples"
    )
    finetune_budget_s: float = Field(
        _CYCLE.budget_s, gt=0, description="learner: time box of one cycle's training steps"
    )
    finetune_max_steps: int | None = Field(
        _CYCLE.max_steps, ge=1, description="learner: most training steps of one cycle (none: the time box alone)"
    )
    finetune_batch_size: int = Field(_CYCLE.batch_size, ge=2, description="learner: examples per training step")
    finetune_buffer_size: int = Field(
        _CYCLE.buffer_size,
        ge=10,
        description="learner: recent training examples kept (each holds its prior: 2 bytes per catalogue item)",
    )
    finetune_holdout: float = Field(
        _CYCLE.holdout, gt=0, lt=1, description="learner: newest share of examples held out"
    )
    finetune_lr: float = Field(_CYCLE.lr, gt=0, description="learner: AdamW learning rate of the LoRA weights")
    finetune_temperature: float = Field(
        _CYCLE.temperature, gt=0, description="learner: softmax temperature of the fine-tune objective"
    )
    finetune_threads: int = Field(1, ge=1, description="learner: CPU threads for training (cuda is used when present)")
    catalogue_wait_s: float = Field(120.0, ge=0, description="how long events wait for the initial catalogue")

    def hybrid_weights(self) -> HybridWeights:
        return HybridWeights(
            self.weight_content,
            self.weight_cf,
            self.weight_trending,
            self.weight_repurchase,
            self.weight_category_trending,
        )

    def serving_policy(self) -> ServingPolicy:
        """What the worker's lists, and ``streamrec evaluate``'s, may contain."""
        return ServingPolicy(self.recent_window_s, self.due_threshold, self.mmr_lambda)

    def candidate_sizes(self) -> CandidateSizes:
        return CandidateSizes(
            self.candidates_content, self.candidates_cf, self.candidates_trending, self.candidates_category_trending
        )

    def finetune_schedule(self) -> FinetuneSchedule:
        """The fine-tune cycle these settings ask for: the learner's, and the replay's
        (``streamrec evaluate --models hybrid-finetuned``).

        >>> Settings(finetune_every_events=500).finetune_schedule().every_events
        500
        """
        return FinetuneSchedule(
            every_events=self.finetune_every_events,
            every_s=self.finetune_every_s,
            budget_s=self.finetune_budget_s,
            max_steps=self.finetune_max_steps,
            batch_size=self.finetune_batch_size,
            lr=self.finetune_lr,
            temperature=self.finetune_temperature,
            holdout=self.finetune_holdout,
            buffer_size=self.finetune_buffer_size,
            min_examples=self.finetune_min_examples,
            k=self.k,
        )

    def env(self) -> dict[str, str]:
        """These settings as STREAMREC_* variables for a child process (secrets in clear; None as "null").

        >>> Settings(finetune_max_steps=None).env()["STREAMREC_FINETUNE_MAX_STEPS"]
        'null'
        """
        out = {}
        for key, value in self.model_dump().items():
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            out[f"STREAMREC_{key.upper()}"] = "null" if text is None else str(text)
        return out


def topic_name(settings: Settings, name: str) -> str:
    return f"{settings.topic_prefix}{name}"
