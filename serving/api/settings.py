"""Settings of the HTTP API (``STREAMREC_API_*``): where it listens, its keys and limits."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MAX_K = 200


class ApiSettings(BaseSettings):
    """Settings of the HTTP API from ``STREAMREC_API_*`` variables; the Kafka connection, topic
    prefix and K come from :class:`stream.config.Settings` (``STREAMREC_*``), as for every process.

    >>> api = ApiSettings(read_keys="r1, r2", write_keys="w1")
    >>> api.read_keys, api.max_batch
    (SecretStr('**********'), 500)
    """

    model_config = SettingsConfigDict(
        env_prefix="STREAMREC_API_", extra="ignore", hide_input_in_errors=True
    )  # inputs hold keys

    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0: every interface)")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on")
    read_keys: SecretStr = Field(SecretStr(""), description="API keys of the read scope, comma separated")
    write_keys: SecretStr = Field(SecretStr(""), description="API keys of the write scope, comma separated")
    allow_anonymous: bool = Field(False, description="no authentication at all (local development only)")
    max_batch: int = Field(500, ge=1, le=10_000, description="most events in one POST /v1/events:batch")
    max_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="largest body of a batch; a single event's "
        "body is limited by STREAMREC_MAX_EVENT_BYTES, as the workers limit it",
    )
    produce_timeout_s: float = Field(10.0, gt=0, description="longest wait for Kafka to acknowledge events")
    probe_interval_s: float = Field(2.0, gt=0, description="how often the broker's reachability is checked")
    empty_fetch_backoff_s: float = Field(
        0.01, ge=0, description="pause after an empty fetch (see stream.kafka.fetch_backoff)"
    )
